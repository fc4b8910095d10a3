// dequantize_row against gguf-py, and the 8-bit quantizers. Fixtures: tests/kernels/data/*.bin,
// written by scripts/gen_dequant_fixtures.py (random blocks with sane random scales).
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/quantize.h"
#include "tensor/dtype.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"

namespace cvllm::cpu {
namespace {

struct Fixture {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

// Layout: uint32 num_elements, uint32 num_bytes, then bytes and f32 values (values first when
// `values_first`, as in the quantization fixture).
Fixture load_fixture(const std::string& name, bool values_first = false) {
  const std::string path = std::string(CVLLM_SOURCE_DIR) + "/tests/kernels/data/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  uint32_t n = 0, nbytes = 0;
  in.read(reinterpret_cast<char*>(&n), 4);
  in.read(reinterpret_cast<char*>(&nbytes), 4);
  Fixture f;
  f.bytes.resize(nbytes);
  f.values.resize(n);
  auto read_values = [&] { in.read(reinterpret_cast<char*>(f.values.data()), 4 * n); };
  if (values_first) read_values();
  in.read(reinterpret_cast<char*>(f.bytes.data()), nbytes);
  if (!values_first) read_values();
  EXPECT_TRUE(in.good()) << "truncated fixture " << path;
  return f;
}

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// Fixture files are named after the dtype in lower case: dequant_q4_k.bin.
std::string fixture_name(DType dtype) {
  std::string name(dtype_name(dtype));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return "dequant_" + name + ".bin";
}

class DequantizeTest : public testing::TestWithParam<DType> {};

// Every operation follows gguf-py's order (same f32 products and differences), so the results
// are bit-identical; F16/BF16 fixtures include infinities, NaNs and subnormals.
TEST_P(DequantizeTest, MatchesGgufPyBitForBit) {
  const DType dtype = GetParam();
  const Fixture f = load_fixture(fixture_name(dtype));
  ASSERT_EQ(f.bytes.size(), row_size(dtype, static_cast<int64_t>(f.values.size())));
  std::vector<float> out(f.values.size() + 1, 12345.0f);  // one sentinel past the end
  dequantize_row(dtype, f.bytes.data(), out.data(), static_cast<int64_t>(f.values.size()));
  for (size_t i = 0; i < f.values.size(); ++i) {
    ASSERT_EQ(bits_of(out[i]), bits_of(f.values[i]))
        << dtype_name(dtype) << " element " << i << ": got " << out[i] << ", gguf-py "
        << f.values[i];
  }
  EXPECT_EQ(out.back(), 12345.0f);
}

// Dequantizing block by block gives the same values as the whole row at once.
TEST_P(DequantizeTest, BlockByBlockEqualsWholeRow) {
  const DType dtype = GetParam();
  const Fixture f = load_fixture(fixture_name(dtype));
  const DTypeTraits& t = traits(dtype);
  const int64_t n = static_cast<int64_t>(f.values.size());
  std::vector<float> whole(n), pieces(n);
  dequantize_row(dtype, f.bytes.data(), whole.data(), n);
  for (int64_t b = 0; b < n / t.block_size; ++b) {
    dequantize_row(dtype, f.bytes.data() + b * t.type_size, pieces.data() + b * t.block_size,
                   t.block_size);
  }
  EXPECT_EQ(std::memcmp(whole.data(), pieces.data(), n * sizeof(float)), 0);
}

std::string dtype_param_name(const testing::TestParamInfo<DType>& info) {
  return std::string(dtype_name(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeTest,
                         testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0,
                                         DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                                         DType::kQ8_1, DType::kQ2_K, DType::kQ3_K, DType::kQ4_K,
                                         DType::kQ5_K, DType::kQ6_K, DType::kQ8_K),
                         dtype_param_name);

TEST(DequantizeErrors, UnsupportedDTypeThrows) {
  int32_t data[32] = {};
  float out[32];
  EXPECT_THROW(dequantize_row(DType::kI32, data, out, 32), Error);
  EXPECT_THROW(dequantize_row(static_cast<DType>(99), data, out, 32), Error);
}

TEST(DequantizeErrors, PartialBlockThrows) {
  BlockQ4_0 blocks[2] = {};
  float out[64];
  EXPECT_THROW(dequantize_row(DType::kQ4_0, blocks, out, 48), Error);
}

// gguf-py's Q8_0 quantizer is bit-exact with ggml's; ours must write the same bytes (rounding
// half away from zero, f16 scale rounded to nearest even), including an all-zero block and ties.
TEST(Quantize, Q8_0MatchesGgufPy) {
  const Fixture f = load_fixture("quant_q8_0.bin", /*values_first=*/true);
  const int64_t n = static_cast<int64_t>(f.values.size());
  std::vector<BlockQ8_0> blocks(n / kQK8_0);
  quantize_row_q8_0(f.values.data(), blocks.data(), n);
  ASSERT_EQ(f.bytes.size(), blocks.size() * sizeof(BlockQ8_0));
  EXPECT_EQ(std::memcmp(blocks.data(), f.bytes.data(), f.bytes.size()), 0);
}

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

// Round trips lose at most half a quantization step (plus the f16 rounding of the stored scale).
TEST(Quantize, Q8_1AndQ8_KRoundTripWithinHalfAStep) {
  const int64_t n = 512;
  const std::vector<float> x = random_floats(n, 7);
  std::vector<BlockQ8_1> q81(n / 32);
  std::vector<BlockQ8_K> q8k(n / 256);
  quantize_row_q8_1(x.data(), q81.data(), n);
  quantize_row_q8_k(x.data(), q8k.data(), n);
  std::vector<float> y81(n), y8k(n);
  dequantize_row(DType::kQ8_1, q81.data(), y81.data(), n);
  dequantize_row(DType::kQ8_K, q8k.data(), y8k.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    float amax32 = 0, amax256 = 0;
    for (int64_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) {
      amax32 = std::max(amax32, std::fabs(x[j]));
    }
    for (int64_t j = i / 256 * 256; j < i / 256 * 256 + 256; ++j) {
      amax256 = std::max(amax256, std::fabs(x[j]));
    }
    EXPECT_LE(std::fabs(y81[i] - x[i]), amax32 / 127 * 0.5f + amax32 * 1e-3f) << i;
    EXPECT_LE(std::fabs(y8k[i] - x[i]), amax256 / 127 * 0.5001f) << i;
  }
  // The precomputed sums match the values.
  for (const BlockQ8_K& b : q8k) {
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b.qs[16 * g + j];
      EXPECT_EQ(b.bsums[g], sum);
    }
  }
  for (const BlockQ8_1& b : q81) {
    int sum = 0;
    for (int8_t q : b.qs) sum += q;
    const float expected = static_cast<float>(sum) * f16_to_f32(b.d);
    EXPECT_NEAR(f16_to_f32(b.s), expected, std::fabs(expected) * 1e-3f + 1e-6f);
  }
}

// The fast matmul's activation format: per 32 elements d = max|x| / 127, values within half a
// step, the largest magnitude kept exactly at +-127 steps.
TEST(Quantize, ActivationRoundTripWithinHalfAStep) {
  const int64_t n = 1024;
  std::vector<float> x = random_floats(n, 11);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block stays zero
  std::vector<float> y(n);
  round_trip_q8_activations(x.data(), y.data(), n);
  for (int64_t b = 0; b < n; b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.0f;
    for (int j = 0; j < 32; ++j) {
      EXPECT_LE(std::fabs(y[b + j] - x[b + j]), d * 0.5f * (1 + 1e-5f)) << b + j;
      if (std::fabs(x[b + j]) == amax) {
        EXPECT_EQ(std::fabs(y[b + j]), d * 127.0f);
      }
    }
  }
}

}  // namespace
}  // namespace cvllm::cpu
