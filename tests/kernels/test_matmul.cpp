// matmul() for every weight dtype and every ISA this machine has, at odd sizes. Three oracles:
//  (a) the fast path equals the reference path applied to the activations rounded through the
//      8-bit format (round_trip_q8_activations): proves the integer kernels exact up to f32
//      rounding (1e-5 of sum|w*x|);
//  (b) the fast path is within the error 8-bit activations allow of the plain f32 reference:
//      |dy| <= sum_i |w_i| * d_i / 2, d_i the activation step of x_i's 32-block;
//  (c) the reference path equals a double-precision dot of dequantized rows (1e-5 of sum|w*x|).
// Every call checks that the floats after the output are untouched; one and two threads give
// identical bits; an output row has the same bits whatever batch its token was computed in
// (batch invariance); an empty batch writes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quantize.h"
#include "tensor/dtype.h"
#include "tensor/half.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

constexpr float kSentinel = -7.125e30f;
constexpr int kNumSentinels = 19;

bool is_float(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

// Byte offsets of the f16 scale fields of a block (random bytes elsewhere are valid codes).
std::vector<int> f16_scale_offsets(DType dtype) {
  switch (dtype) {
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K:
      return {80, 82};
    case DType::kQ3_K:
      return {108};
    case DType::kQ6_K:
      return {208};
    case DType::kQ8_K:
      return {};  // f32 scale, set separately
    default:
      return {0};
  }
}

// Random weights [rows, cols]: random bytes with sane random scales for block types, values
// ~N(0, 0.5) rounded to the type for plain ones.
std::vector<uint8_t> random_weights(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t bytes = row_size(dtype, cols) * rows;
  std::vector<uint8_t> w(bytes + 64);  // slack so an empty matrix still has a valid pointer
  std::normal_distribution<float> normal(0.0f, 0.5f);
  if (is_float(dtype)) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = normal(rng);
      if (dtype == DType::kF32) {
        std::memcpy(w.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(w.data() + 2 * i, &h, 2);
      }
    }
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < bytes; i += 4) {
    const uint32_t v = static_cast<uint32_t>(rng());
    std::memcpy(w.data() + i, &v, 4);  // w has 64 bytes of slack
  }
  const DTypeTraits& t = traits(dtype);
  std::uniform_real_distribution<float> mag(0.002f, 0.05f);
  for (size_t b = 0; b < bytes / t.type_size; ++b) {
    uint8_t* block = w.data() + b * t.type_size;
    for (int off : f16_scale_offsets(dtype)) {
      const float s = (byte(rng) & 1 ? 1.0f : -1.0f) * mag(rng);
      const uint16_t h = f32_to_f16(s);
      std::memcpy(block + off, &h, 2);
    }
    if (dtype == DType::kQ8_K) {
      const float s = mag(rng);
      std::memcpy(block, &s, 4);
    }
  }
  return w;
}

std::vector<float> random_activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  // A few outliers, as real hidden states have, so blocks have different scales.
  for (int64_t i = 0; i < n; i += 97) x[i] *= 20.0f;
  return x;
}

struct Problem {
  DType dtype;
  int64_t rows, cols, num_tokens;
  std::vector<uint8_t> w;
  std::vector<float> x;      // [num_tokens, cols]
  std::vector<float> w_f32;  // dequantized weights [rows, cols]

  Problem(DType d, int64_t r, int64_t c, int64_t t, uint32_t seed)
      : dtype(d),
        rows(r),
        cols(c),
        num_tokens(t),
        w(random_weights(d, r, c, seed)),
        x(random_activations(t * c, seed + 1)),
        w_f32(r * c) {
    const size_t rb = row_size(d, c);
    for (int64_t i = 0; i < r; ++i) dequantize_row(d, w.data() + i * rb, w_f32.data() + i * c, c);
  }
  WeightView view() const { return {w.data(), dtype, rows, cols}; }

  // Runs matmul with sentinels after y and checks them.
  std::vector<float> run(const std::vector<float>& input, MatmulPath path, ThreadPool& pool) const {
    std::vector<float> y(num_tokens * rows + kNumSentinels, kSentinel);
    matmul(view(), input.data(), num_tokens, y.data(), pool, path);
    for (int i = 0; i < kNumSentinels; ++i) {
      EXPECT_EQ(y[num_tokens * rows + i], kSentinel) << "write past the output, " << describe();
    }
    y.resize(num_tokens * rows);
    return y;
  }

  // sum_i |w_i * x_i| for output (t, r): the scale f32 rounding errors are relative to.
  double abs_dot(const std::vector<float>& input, int64_t t, int64_t r) const {
    double s = 0;
    for (int64_t i = 0; i < cols; ++i)
      s += std::fabs(double(w_f32[r * cols + i]) * input[t * cols + i]);
    return s;
  }

  std::string describe() const {
    return cat(dtype_name(dtype), " rows=", rows, " cols=", cols, " tokens=", num_tokens,
               " isa=", active_isa());
  }
};

std::vector<int64_t> cols_for(DType dtype) {
  if (is_float(dtype)) return {1, 7, 32, 33, 576, 1536};
  if (traits(dtype).block_size == 256) return {256, 512, 768, 1536};
  return {32, 64, 96, 576, 1536};
}

// All the sizes the brief asks for, with smaller sweeps at the largest sizes to bound run time.
template <typename Fn>
void for_each_problem(DType dtype, const Fn& fn) {
  uint32_t seed = 1;
  for (int64_t rows : {1, 3, 17, 257}) {
    for (int64_t num_tokens : {1, 2, 3, 4, 5, 17, 64}) {
      for (int64_t cols : cols_for(dtype)) {
        if (rows * num_tokens * cols > 257 * 17 * 1536) continue;
        fn(Problem(dtype, rows, cols, num_tokens, seed++));
      }
    }
  }
}

std::string dtype_lower(DType dtype) {
  std::string s(dtype_name(dtype));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const std::vector<DType> kAllDTypes = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,
                                       DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                                       DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,
                                       DType::kQ6_K, DType::kQ8_K};

// ---------------------------------------------------------------------------------------------
// Fast path, per (dtype, ISA).

class MatmulFastTest : public testing::TestWithParam<std::tuple<DType, Isa>> {
 protected:
  void SetUp() override {
    if (std::get<1>(GetParam()) > detected_isa()) GTEST_SKIP() << "CPU lacks this ISA";
    saved_ = current_isa();
    set_isa(std::get<1>(GetParam()));
  }
  void TearDown() override {
    if (std::get<1>(GetParam()) <= detected_isa()) set_isa(saved_);
  }
  DType dtype() const { return std::get<0>(GetParam()); }

  ThreadPool pool1_{1};
  ThreadPool pool2_{2};
  Isa saved_ = Isa::kScalar;
};

TEST_P(MatmulFastTest, EqualsReferenceOnQuantizedActivations) {
  for_each_problem(dtype(), [&](const Problem& p) {
    std::vector<float> x_q(p.x.size());
    if (is_float(p.dtype)) {
      x_q = p.x;  // plain weights: f32 FMA, activations not quantized
    } else {
      round_trip_q8_activations(p.x.data(), x_q.data(), static_cast<int64_t>(p.x.size()));
    }
    const std::vector<float> fast = p.run(p.x, MatmulPath::kFast, pool1_);
    const std::vector<float> ref = p.run(x_q, MatmulPath::kReference, pool1_);
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      for (int64_t r = 0; r < p.rows; ++r) {
        const double tol = 1e-5 * p.abs_dot(x_q, t, r) + 1e-30;
        ASSERT_NEAR(fast[t * p.rows + r], ref[t * p.rows + r], tol)
            << p.describe() << " token " << t << " row " << r;
      }
    }
  });
}

TEST_P(MatmulFastTest, WithinActivationQuantizationErrorOfF32Reference) {
  for_each_problem(dtype(), [&](const Problem& p) {
    const std::vector<float> fast = p.run(p.x, MatmulPath::kFast, pool1_);
    const std::vector<float> ref = p.run(p.x, MatmulPath::kReference, pool1_);
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      // Half an activation step per 32-block (zero for plain weights, which are not quantized).
      std::vector<double> half_step(p.cols / 32 + 1, 0.0);
      if (!is_float(p.dtype)) {
        for (int64_t b = 0; b < p.cols / 32; ++b) {
          float amax = 0;
          for (int j = 0; j < 32; ++j)
            amax = std::max(amax, std::fabs(p.x[t * p.cols + b * 32 + j]));
          half_step[b] = amax / 127.0 / 2;
        }
      }
      for (int64_t r = 0; r < p.rows; ++r) {
        double bound = 1e-5 * p.abs_dot(p.x, t, r) + 1e-30;
        for (int64_t i = 0; i < p.cols; ++i)
          bound += std::fabs(p.w_f32[r * p.cols + i]) * half_step[i / 32];
        ASSERT_NEAR(fast[t * p.rows + r], ref[t * p.rows + r], bound)
            << p.describe() << " token " << t << " row " << r;
      }
    }
  });
}

TEST_P(MatmulFastTest, OneAndTwoThreadsGiveIdenticalBits) {
  for (int64_t num_tokens : {1, 3, 17, 64}) {
    const int64_t cols = cols_for(dtype()).back();
    const Problem p(dtype(), 257, cols, num_tokens, 99);
    const std::vector<float> one = p.run(p.x, MatmulPath::kFast, pool1_);
    const std::vector<float> two = p.run(p.x, MatmulPath::kFast, pool2_);
    ASSERT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0) << p.describe();
  }
}

TEST_P(MatmulFastTest, EmptyBatchWritesNothing) {
  const Problem p(dtype(), 17, cols_for(dtype()).front(), 0, 5);
  std::vector<float> y(8, kSentinel);
  matmul(p.view(), nullptr, 0, y.data(), pool2_, MatmulPath::kFast);
  matmul(p.view(), nullptr, 0, y.data(), pool2_, MatmulPath::kReference);
  for (float v : y) EXPECT_EQ(v, kSentinel);
}

std::string fast_param_name(const testing::TestParamInfo<std::tuple<DType, Isa>>& info) {
  return dtype_lower(std::get<0>(info.param)) + "_" +
         std::string(isa_name(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulFastTest,
                         testing::Combine(testing::ValuesIn(kAllDTypes),
                                          testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512)),
                         fast_param_name);

// ---------------------------------------------------------------------------------------------
// Batch invariance: the bits of output row t depend only on x[t] and W, never on how many other
// tokens share the call, where t sits in the batch, or which kernel (GEMV for a few tokens, tiled
// GEMM and its remainder micro-kernels for more) handled it. Without it a request's greedy text
// would change with server load, since the next layer re-quantizes activations and amplifies
// 1-ulp differences.

class MatmulBatchInvariance : public testing::TestWithParam<std::tuple<DType, Isa>> {
 protected:
  void SetUp() override {
    if (std::get<1>(GetParam()) > detected_isa()) GTEST_SKIP() << "CPU lacks this ISA";
    saved_ = current_isa();
    set_isa(std::get<1>(GetParam()));
  }
  void TearDown() override {
    if (std::get<1>(GetParam()) <= detected_isa()) set_isa(saved_);
  }
  Isa saved_ = Isa::kScalar;
};

// Sizes that reach every tail: 40 rows (one 32-row tile plus 8, GEMV blocks of 16 plus 8); 608
// columns = 19 legacy blocks (a scale group of 16 plus 3, ending on an odd 32-element chunk);
// 611 float columns (a partial 16-lane vector); two K-quant super-blocks.
int64_t invariance_cols(DType dtype) {
  if (is_float(dtype)) return 611;
  return traits(dtype).block_size == 256 ? 512 : 608;
}

TEST_P(MatmulBatchInvariance, EveryRowEqualsTheSameTokenComputedAlone) {
  const DType dtype = std::get<0>(GetParam());
  constexpr int64_t kNumDistinct = 64;
  const Problem p(dtype, 40, invariance_cols(dtype), kNumDistinct, 77);
  const int64_t rows = p.rows, cols = p.cols;
  ThreadPool pool1(1), pool2(2);
  for (MatmulPath path : {MatmulPath::kFast, MatmulPath::kReference}) {
    for (ThreadPool* pool : {&pool1, &pool2}) {
      const std::string where =
          cat(p.describe(), path == MatmulPath::kFast ? " fast" : " reference",
              " threads=", pool->num_threads());
      // Each distinct token alone.
      std::vector<float> alone(kNumDistinct * rows);
      for (int64_t t = 0; t < kNumDistinct; ++t) {
        matmul(p.view(), p.x.data() + t * cols, 1, alone.data() + t * rows, *pool, path);
      }
      // Batches of every size the kernels treat differently, each a different selection and
      // order of the tokens, so a token lands at different indices in different batches.
      std::mt19937 rng(static_cast<uint32_t>(cols));
      for (int64_t num_tokens : {1, 2, 3, 4, 5, 7, 8, 17, 64}) {
        std::vector<int64_t> ids(kNumDistinct);
        for (int64_t i = 0; i < kNumDistinct; ++i) ids[i] = i;
        std::shuffle(ids.begin(), ids.end(), rng);
        ids.resize(num_tokens);
        std::vector<float> x(num_tokens * cols);
        for (int64_t i = 0; i < num_tokens; ++i) {
          std::copy_n(p.x.data() + ids[i] * cols, cols, x.data() + i * cols);
        }
        std::vector<float> y(num_tokens * rows + kNumSentinels, kSentinel);
        matmul(p.view(), x.data(), num_tokens, y.data(), *pool, path);
        for (int i = 0; i < kNumSentinels; ++i) ASSERT_EQ(y[num_tokens * rows + i], kSentinel);
        for (int64_t i = 0; i < num_tokens; ++i) {
          const float* got = y.data() + i * rows;
          const float* want = alone.data() + ids[i] * rows;
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_EQ(std::memcmp(&got[r], &want[r], sizeof(float)), 0)
                << where << ": row " << r << " of token " << ids[i] << " at index " << i << " of "
                << num_tokens << " is " << got[r] << ", alone " << want[r];
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulBatchInvariance,
                         testing::Combine(testing::ValuesIn(kAllDTypes),
                                          testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512)),
                         fast_param_name);

// ---------------------------------------------------------------------------------------------
// Reference path, per dtype (it does not depend on the ISA).

class MatmulReferenceTest : public testing::TestWithParam<DType> {
 protected:
  ThreadPool pool1_{1};
  ThreadPool pool2_{2};
};

TEST_P(MatmulReferenceTest, EqualsDoublePrecisionDotOfDequantizedRows) {
  for_each_problem(GetParam(), [&](const Problem& p) {
    const std::vector<float> ref = p.run(p.x, MatmulPath::kReference, pool1_);
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      for (int64_t r = 0; r < p.rows; ++r) {
        double exact = 0;
        for (int64_t i = 0; i < p.cols; ++i) {
          exact += double(p.w_f32[r * p.cols + i]) * p.x[t * p.cols + i];
        }
        ASSERT_NEAR(ref[t * p.rows + r], exact, 1e-5 * p.abs_dot(p.x, t, r) + 1e-30)
            << p.describe() << " token " << t << " row " << r;
      }
    }
  });
}

TEST_P(MatmulReferenceTest, OneAndTwoThreadsGiveIdenticalBits) {
  const Problem p(GetParam(), 257, cols_for(GetParam()).back(), 5, 42);
  const std::vector<float> one = p.run(p.x, MatmulPath::kReference, pool1_);
  const std::vector<float> two = p.run(p.x, MatmulPath::kReference, pool2_);
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
}

std::string ref_param_name(const testing::TestParamInfo<DType>& info) {
  return dtype_lower(info.param);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulReferenceTest, testing::ValuesIn(kAllDTypes),
                         ref_param_name);

// ---------------------------------------------------------------------------------------------
// matmul_many: several weights sharing one input give exactly what separate calls give.

class MatmulManyTest : public testing::TestWithParam<Isa> {};

TEST_P(MatmulManyTest, EqualsSeparateMatmulsBitForBit) {
  if (GetParam() > detected_isa()) GTEST_SKIP() << "CPU lacks this ISA";
  const Isa saved = current_isa();
  set_isa(GetParam());
  ThreadPool pool(2);
  const int64_t cols = 512;
  const DType dtypes[] = {DType::kQ4_1, DType::kQ6_K, DType::kF16, DType::kQ8_0};
  const int64_t rows[] = {17, 64, 5, 40};
  for (int64_t num_tokens : {1, 3, 17}) {
    std::vector<Problem> problems;
    for (int i = 0; i < 4; ++i) problems.emplace_back(dtypes[i], rows[i], cols, num_tokens, 10 + i);
    const std::vector<float> x = problems[0].x;
    std::vector<WeightView> views;
    std::vector<std::vector<float>> ys;
    for (const Problem& p : problems) {
      views.push_back(p.view());
      ys.emplace_back(num_tokens * p.rows + kNumSentinels, kSentinel);
    }
    std::vector<float*> y_ptrs;
    for (auto& y : ys) y_ptrs.push_back(y.data());
    matmul_many(views, x.data(), num_tokens, y_ptrs, pool);
    for (int i = 0; i < 4; ++i) {
      const std::vector<float> single = problems[i].run(x, MatmulPath::kFast, pool);
      ASSERT_EQ(std::memcmp(single.data(), ys[i].data(), single.size() * sizeof(float)), 0)
          << problems[i].describe();
      for (int j = 0; j < kNumSentinels; ++j) EXPECT_EQ(ys[i][single.size() + j], kSentinel);
    }
  }
  set_isa(saved);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, MatmulManyTest,
                         testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const testing::TestParamInfo<Isa>& info) {
                           return std::string(isa_name(info.param));
                         });

TEST(MatmulErrors, ManyWeightsMustShareCols) {
  ThreadPool pool(1);
  std::vector<uint8_t> w(4096);
  std::vector<float> x(64), y0(64), y1(64);
  const WeightView views[] = {{w.data(), DType::kQ4_0, 1, 32}, {w.data(), DType::kQ4_0, 1, 64}};
  float* ys[] = {y0.data(), y1.data()};
  EXPECT_THROW(matmul_many(views, x.data(), 1, ys, pool), Error);
}

// ---------------------------------------------------------------------------------------------

TEST(MatmulErrors, UnsupportedDTypeAndPartialBlocksThrow) {
  ThreadPool pool(1);
  std::vector<uint8_t> w(4096);
  std::vector<float> x(64), y(64);
  EXPECT_THROW(matmul({w.data(), DType::kI32, 2, 32}, x.data(), 1, y.data(), pool), Error);
  EXPECT_THROW(matmul({w.data(), DType::kQ4_0, 2, 48}, x.data(), 1, y.data(), pool), Error);
  EXPECT_THROW(matmul({w.data(), DType::kQ4_K, 2, 32}, x.data(), 1, y.data(), pool), Error);
}

TEST(CpuFeatures, IsaNamesParseAndCannotExceedTheCpu) {
  EXPECT_EQ(parse_isa("scalar"), Isa::kScalar);
  EXPECT_EQ(parse_isa("avx2"), Isa::kAvx2);
  EXPECT_EQ(parse_isa("avx512"), Isa::kAvx512);
  EXPECT_EQ(parse_isa("sse9"), std::nullopt);
  EXPECT_EQ(isa_name(Isa::kAvx512), "avx512_vnni");
  const Isa saved = current_isa();
  set_isa(Isa::kScalar);
  EXPECT_EQ(active_isa(), "scalar");
  set_isa(saved);
  if (detected_isa() < Isa::kAvx512) {
    EXPECT_THROW(set_isa(Isa::kAvx512), ValueError);
  }
}

}  // namespace
}  // namespace cvllm::cpu
