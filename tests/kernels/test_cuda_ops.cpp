// Backend-ops style tests for the CUDA backend (llama.cpp's test-backend-ops is the model): every
// CudaBackend op against the CPU backend (its reference kernels) on fresh random inputs at odd
// sizes, single-row and empty batches included, every weight dtype, both RoPE layouts, GQA,
// sliding windows, softcaps and paged KV caches with shuffled block tables. Device outputs start
// poisoned (NaN sentinels), so an element a kernel forgot to write fails the comparison.
//
// Tolerances: ops computed in f32 on both sides (norms, RoPE, activations, attention over an f32
// cache) agree to ~1e-6 relative (different summation orders and libm ulps), checked at 1e-5 /
// 1e-4. Linear layers use bf16 operands (8 significant bits: a relative rounding of 2^-9 per
// operand), so against the f32 CPU product they are checked by relative Frobenius error <= 1e-2,
// and against a double-precision product of the same bf16-rounded operands to 3e-5 (the f32
// accumulation itself). Dequantization is bit-exact: both sides compute the same f32 value.
//
// Without a GPU (CI) every test skips, saying why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cuda/cuda_allocator.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/op_test_util.h"
#include "layers/sampler.h"
#include "tensor/half.h"
#include "tensor/tensor.h"

namespace cvllm::cuda {
namespace {

using test::is_sentinel;
using test::sentinel;

constexpr char kNoGpu[] = "no CUDA GPU available (CUDA op tests need one; CI has none)";

class CudaOps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Batch-invariant GEMMs, so LinearRowsDoNotDependOnBatch holds bit for bit; the default
    // per-batch-size choice is checked by LinearWithPerBatchSizeAlgorithms.
    if (cuda_device_available()) gpu_ = new CudaBackend(0, 2, /*batch_invariant_gemm=*/true);
  }
  static void TearDownTestSuite() {
    delete gpu_;
    gpu_ = nullptr;
  }
  // Fresh random inputs every run; CVLLM_TEST_SEED replays a failure's seed (printed on failure).
  void SetUp() override {
    if (gpu_ == nullptr) GTEST_SKIP() << kNoGpu;
    const char* fixed = std::getenv("CVLLM_TEST_SEED");
    seed_ = fixed ? static_cast<unsigned>(std::stoul(fixed)) : std::random_device{}();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure()) std::cout << "[ seed ] CVLLM_TEST_SEED=" << seed_ << "\n";
  }

  CudaBackend& gpu() { return *gpu_; }

  std::vector<float> normal(int64_t n, float stddev = 1.0f) { return test::random_normal(n, rng_, stddev); }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  static Tensor host(const std::vector<float>& v, std::vector<int64_t> shape) {
    Tensor t = Tensor::empty(DType::kF32, std::move(shape));
    if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(float));
    return t;
  }
  Tensor dev(const std::vector<float>& v, std::vector<int64_t> shape) { return gpu().upload(v, std::move(shape)); }
  // A device tensor full of NaN sentinels.
  Tensor poisoned(std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return dev(std::vector<float>(n, sentinel()), std::move(shape));
  }
  std::vector<float> back(const Tensor& t) { return gpu().to_host(t); }
  // The token ids sample_on_device draws.
  std::vector<int32_t> draw(Tensor& logits, const std::vector<DeviceSampleRow>& rows) {
    std::vector<int32_t> ids;
    for (const DeviceSample& s : gpu().sample_on_device(logits, rows)) ids.push_back(s.token_id);
    return ids;
  }
  static std::vector<float> values(const Tensor& t) {
    return std::vector<float>(t.data_as<float>(), t.data_as<float>() + t.numel());
  }

  static inline CudaBackend* gpu_ = nullptr;
  cpu::CpuBackend cpu_{2, cpu::MatmulPath::kReference};
  std::mt19937 rng_;
  unsigned seed_ = 0;
};

// Every element written (no sentinel left) and |got - ref| <= atol + rtol |ref|.
::testing::AssertionResult close(const std::vector<float>& got, const std::vector<float>& ref,
                                 double atol, double rtol) {
  if (got.size() != ref.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (is_sentinel(got[i])) return ::testing::AssertionFailure() << "element " << i << " never written";
  }
  std::vector<double> r(ref.begin(), ref.end());
  return test::all_close(got.data(), r, atol, rtol);
}

// ||got - ref|| / ||ref|| <= tol, every element written and finite.
::testing::AssertionResult rel_close(const std::vector<float>& got, const std::vector<double>& ref,
                                     double tol) {
  if (got.size() != ref.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  }
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return ::testing::AssertionFailure() << "element " << i << " is " << got[i];
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  double rel = den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
  if (rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << rel << " > " << tol;
}

::testing::AssertionResult rel_close(const std::vector<float>& got, const std::vector<float>& ref,
                                     double tol) {
  return rel_close(got, std::vector<double>(ref.begin(), ref.end()), tol);
}

float bf16_round(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// ---- weights: dequantization ------------------------------------------------------------------

// Byte offsets of the f16 scale fields of each block type (tensor/quant_blocks.h): random bytes
// there could be Inf/NaN, so tests write finite scales.
std::vector<int> half_fields(DType t) {
  switch (t) {
    case DType::kQ4_0: case DType::kQ5_0: case DType::kQ8_0: return {0};
    case DType::kQ4_1: case DType::kQ5_1: case DType::kQ8_1: case DType::kQ4_K: case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K: return {80, 82};
    case DType::kQ3_K: return {108};
    case DType::kQ6_K: return {208};
    default: return {};
  }
}

// Random weight bytes of `dtype` for a [rows, cols] matrix, with finite scales.
std::vector<uint8_t> random_weight(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  const DTypeTraits& t = traits(dtype);
  std::vector<uint8_t> bytes(row_size(dtype, cols) * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> value(0.0f, 1.0f);
  if (dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      float v = value(rng);
      if (dtype == DType::kF32) std::memcpy(bytes.data() + 4 * i, &v, 4);
      uint16_t h = dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
      if (dtype != DType::kF32) std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
    return bytes;
  }
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  for (size_t blk = 0; blk < bytes.size() / t.type_size; ++blk) {
    uint8_t* p = bytes.data() + blk * t.type_size;
    for (int off : half_fields(dtype)) {
      uint16_t h = f32_to_f16(std::uniform_real_distribution<float>(-0.05f, 0.05f)(rng));
      std::memcpy(p + off, &h, 2);
    }
    if (dtype == DType::kQ8_K) {
      float d = std::uniform_real_distribution<float>(-0.05f, 0.05f)(rng);
      std::memcpy(p, &d, 4);
    }
  }
  return bytes;
}

const DType kWeightTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                              DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ8_1, DType::kQ2_K,
                              DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ8_K};

TEST_F(CudaOps, DequantizeEveryWeightTypeBitExact) {
  for (DType dtype : kWeightTypes) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    const int64_t block = traits(dtype).block_size;
    const int64_t rows = 7, cols = block == 1 ? 75 : 2 * block;
    std::vector<uint8_t> bytes = random_weight(dtype, rows, cols, rng_);
    Tensor w = Tensor::view(bytes.data(), dtype, {rows, cols});
    std::vector<float> ref(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      cpu::dequantize_row(dtype, bytes.data() + r * row_size(dtype, cols), ref.data() + r * cols, cols);
    }
    // A matrix becomes bf16: read it back through gather_rows (exact bf16 -> f32).
    Tensor wd = gpu().prepare_weight(w);
    ASSERT_EQ(wd.dtype(), DType::kBF16);
    std::vector<int32_t> all(rows);
    std::iota(all.begin(), all.end(), 0);
    Tensor out = poisoned({rows, cols});
    gpu().gather_rows(wd, all, out);
    std::vector<float> got = back(out);
    std::vector<float> want(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) want[i] = bf16_round(ref[i]);
    EXPECT_TRUE(test::same_bits(got.data(), want.data(), static_cast<int64_t>(want.size())));
    // A vector stays f32, bit for bit.
    Tensor v = Tensor::view(bytes.data(), dtype, {cols});
    Tensor vd = gpu().prepare_weight(v);
    ASSERT_EQ(vd.dtype(), DType::kF32);
    std::vector<float> got_v = back(vd);
    EXPECT_TRUE(test::same_bits(got_v.data(), ref.data(), cols));
  }
}

TEST_F(CudaOps, EmbeddingAndGatherRows) {
  for (int64_t num_tokens : {0, 1, 13}) {
    const int64_t vocab = 37, hidden = 72;
    std::vector<float> table_f32 = normal(vocab * hidden);
    std::vector<uint16_t> table_bf16(table_f32.size());
    for (size_t i = 0; i < table_f32.size(); ++i) table_bf16[i] = f32_to_bf16(table_f32[i]);
    Tensor table = Tensor::view(table_bf16.data(), DType::kBF16, {vocab, hidden});
    Tensor table_dev = gpu().prepare_weight(table);

    ForwardBatch batch;
    for (int64_t t = 0; t < num_tokens; ++t) {
      batch.input_ids.push_back(uniform_int(0, vocab - 1));
      batch.positions.push_back(uniform_int(0, static_cast<int>(vocab) - 3));
    }
    batch.slot_mapping.assign(num_tokens, -1);
    batch.query_start_loc = {0, static_cast<int32_t>(num_tokens)};
    batch.seq_lens = {static_cast<int32_t>(num_tokens)};
    batch.block_table = {0};
    batch.max_blocks_per_req = 1;
    auto step_gpu = gpu().prepare_step(batch);
    auto step_cpu = cpu_.prepare_step(batch);
    Tensor out = poisoned({num_tokens, hidden});
    gpu().embedding(table_dev, *step_gpu, out);
    Tensor ref = cpu_.alloc(DType::kF32, {num_tokens, hidden});
    cpu_.embedding(table, *step_cpu, ref);
    std::vector<float> got = back(out), want = values(ref);
    EXPECT_TRUE(test::same_bits(got.data(), want.data(), num_tokens * hidden)) << num_tokens << " tokens";

    // Learned position embeddings (OPT's offset of 2) read the device positions.
    Tensor pos_out = poisoned({num_tokens, hidden});
    gpu().position_embedding(table_dev, *step_gpu, 2, pos_out);
    Tensor pos_ref = cpu_.alloc(DType::kF32, {num_tokens, hidden});
    cpu_.position_embedding(table, *step_cpu, 2, pos_ref);
    std::vector<float> got_pos = back(pos_out), want_pos = values(pos_ref);
    EXPECT_TRUE(test::same_bits(got_pos.data(), want_pos.data(), num_tokens * hidden));
    if (num_tokens > 0) {  // a position past the table: a clear error, before any launch
      EXPECT_THROW(gpu().position_embedding(table_dev, *step_gpu, vocab, pos_out), Error);
    }

    // gather_rows from an f32 device tensor (the logits_indices gather), repeated rows included.
    Tensor src = dev(table_f32, {vocab, hidden});
    std::vector<int32_t> rows = {5, 5, 0, static_cast<int32_t>(vocab - 1)};
    rows.resize(static_cast<size_t>(std::min<int64_t>(num_tokens, 4)));
    Tensor g = poisoned({static_cast<int64_t>(rows.size()), hidden});
    gpu().gather_rows(src, rows, g);
    std::vector<float> got_g = back(g);
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_TRUE(test::same_bits(got_g.data() + i * hidden, table_f32.data() + rows[i] * hidden, hidden));
    }
  }
}

// The graph pool hands a request the smallest cached block that holds it, of any size class, and
// keeps freed blocks (recorded graphs point at them); the eager allocator takes only a block of
// the request's own size class.
TEST_F(CudaOps, GraphPoolReusesLargerBlocks) {
  auto pool = DeviceAllocator::create(/*graph_pool=*/true);
  void* big = nullptr;
  {
    std::shared_ptr<void> a = pool->allocate(1 << 20);
    big = a.get();
  }
  EXPECT_EQ(pool->cached_bytes(), DeviceAllocator::size_class(1 << 20));
  std::shared_ptr<void> small = pool->allocate(1000);
  EXPECT_EQ(small.get(), big);  // the 1 MiB block, not a fresh 1 KiB one
  EXPECT_EQ(pool->cached_bytes(), 0u);
  small.reset();

  auto eager = DeviceAllocator::create();
  void* first = nullptr;
  {
    std::shared_ptr<void> a = eager->allocate(1 << 20);
    first = a.get();
  }
  std::shared_ptr<void> other = eager->allocate(1000);
  EXPECT_NE(other.get(), first);
  EXPECT_EQ(eager->cached_bytes(), DeviceAllocator::size_class(1 << 20));
}

// ---- linear ---------------------------------------------------------------------------------

// x W^T with bf16-rounded operands, in double: what the GPU must reproduce up to f32 accumulation.
std::vector<double> bf16_product(const std::vector<float>& x, const std::vector<float>& w_f32,
                                 int64_t t, int64_t in, int64_t out) {
  std::vector<double> y(t * out, 0.0);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t o = 0; o < out; ++o) {
      double s = 0.0;
      for (int64_t k = 0; k < in; ++k) {
        s += static_cast<double>(bf16_round(x[i * in + k])) * bf16_round(w_f32[o * in + k]);
      }
      y[i * out + o] = s;
    }
  }
  return y;
}

// Each output against the f32 product, within what rounding both operands to bf16 can move it:
// each term x_k w_k changes by a relative error of at most 2^-8 (std ~1.6e-3), so the sum moves
// by ~1.6e-3 * sqrt(sum_k (x_k w_k)^2); the bound is 10x that (a cancelling sum can be far smaller
// than its terms, so the error is not relative to the result).
::testing::AssertionResult within_bf16_rounding(const std::vector<float>& got,
                                                const std::vector<float>& ref,
                                                const std::vector<float>& x,
                                                const std::vector<float>& w, int64_t t, int64_t in,
                                                int64_t out) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size mismatch";
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t o = 0; o < out; ++o) {
      double rss = 0.0;
      for (int64_t k = 0; k < in; ++k) {
        double term = static_cast<double>(x[i * in + k]) * w[o * in + k];
        rss += term * term;
      }
      const double bound = 1.6e-2 * std::sqrt(rss) + 1e-6;
      const double diff = std::fabs(static_cast<double>(got[i * out + o]) - ref[i * out + o]);
      if (!(diff <= bound)) {
        return ::testing::AssertionFailure() << "row " << i << " col " << o << ": got " << got[i * out + o]
                                             << " want " << ref[i * out + o] << " (bound " << bound << ")";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_F(CudaOps, LinearEveryWeightTypeAndShape) {
  struct Shape {
    int64_t t, out;
  };
  for (DType dtype : kWeightTypes) {
    if (dtype == DType::kQ8_1) continue;  // an activation type: the CPU matmul takes no Q8_1 weights
    const int64_t block = traits(dtype).block_size;
    const int64_t in = block == 1 ? 77 : 2 * block;
    for (Shape s : {Shape{0, 5}, Shape{1, 1}, Shape{1, 130}, Shape{7, 45}, Shape{33, 64}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " t=" << s.t << " in=" << in << " out=" << s.out);
      std::vector<uint8_t> bytes = random_weight(dtype, s.out, in, rng_);
      Tensor w = Tensor::view(bytes.data(), dtype, {s.out, in});
      std::vector<float> w_f32(s.out * in);
      for (int64_t r = 0; r < s.out; ++r) {
        cpu::dequantize_row(dtype, bytes.data() + r * row_size(dtype, in), w_f32.data() + r * in, in);
      }
      std::vector<float> x = normal(s.t * in);
      std::vector<float> bias = normal(s.out);
      Tensor wd = gpu().prepare_weight(w);
      Tensor bias_dev = dev(bias, {s.out});
      Tensor y = poisoned({s.t, s.out});
      gpu().linear(dev(x, {s.t, in}), wd, &bias_dev, y);
      std::vector<float> got = back(y);

      Tensor ref = cpu_.alloc(DType::kF32, {s.t, s.out});
      Tensor bias_host = host(bias, {s.out});
      cpu_.linear(host(x, {s.t, in}), w, &bias_host, ref);
      EXPECT_TRUE(within_bf16_rounding(got, values(ref), x, w_f32, s.t, in, s.out)) << "vs the f32 CPU product";
      std::vector<double> exact = bf16_product(x, w_f32, s.t, in, s.out);
      for (int64_t i = 0; i < s.t * s.out; ++i) exact[i] += bias[i % s.out];
      EXPECT_TRUE(rel_close(got, exact, 3e-5)) << "vs the bf16-operand product in double";
    }
  }
}

TEST_F(CudaOps, LinearManySharesOneInput) {
  const int64_t t = 9, in = 64;
  const int64_t outs[] = {64, 16, 16};
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<Tensor> host_w, dev_w, ys, refs;
  for (int64_t o : outs) {
    bytes.push_back(random_weight(DType::kQ8_0, o, in, rng_));
    host_w.push_back(Tensor::view(bytes.back().data(), DType::kQ8_0, {o, in}));
    dev_w.push_back(gpu().prepare_weight(host_w.back()));
    ys.push_back(poisoned({t, o}));
    refs.push_back(cpu_.alloc(DType::kF32, {t, o}));
  }
  std::vector<float> x = normal(t * in);
  const Tensor* wp[] = {&dev_w[0], &dev_w[1], &dev_w[2]};
  Tensor* yp[] = {&ys[0], &ys[1], &ys[2]};
  gpu().linear_many(dev(x, {t, in}), wp, yp);
  Tensor xh = host(x, {t, in});
  for (int i = 0; i < 3; ++i) {
    cpu_.linear(xh, host_w[i], nullptr, refs[i]);
    EXPECT_TRUE(rel_close(back(ys[i]), values(refs[i]), 1e-2)) << "output " << i;
  }
}

TEST_F(CudaOps, LinearRowsDoNotDependOnBatch) {
  // Batch invariance: a row's product is the same bits alone or among many rows.
  struct Shape {
    int64_t out, in;
  };
  for (Shape s : {Shape{1536, 576}, Shape{300, 128}, Shape{64, 256}, Shape{2048, 2048}}) {
    SCOPED_TRACE(::testing::Message() << "out " << s.out << " in " << s.in);
    std::vector<uint8_t> bytes = random_weight(DType::kBF16, s.out, s.in, rng_);
    Tensor wd = gpu().prepare_weight(Tensor::view(bytes.data(), DType::kBF16, {s.out, s.in}));
    const int64_t max_rows = 300;
    std::vector<float> x = normal(max_rows * s.in);
    Tensor y_all = poisoned({max_rows, s.out});
    gpu().linear(dev(x, {max_rows, s.in}), wd, nullptr, y_all);
    std::vector<float> all = back(y_all);
    for (int64_t t : {1, 2, 5, 37, 130}) {
      Tensor y = poisoned({t, s.out});
      gpu().linear(dev(std::vector<float>(x.begin(), x.begin() + t * s.in), {t, s.in}), wd, nullptr, y);
      std::vector<float> part = back(y);
      EXPECT_TRUE(test::same_bits(part.data(), all.data(), t * s.out)) << "first " << t << " rows";
    }
  }
}

TEST_F(CudaOps, LinearWithPerBatchSizeAlgorithms) {
  CudaBackend per_n(0, 1, /*batch_invariant_gemm=*/false);
  const int64_t in = 576, out = 1536;
  std::vector<uint8_t> bytes = random_weight(DType::kBF16, out, in, rng_);
  std::vector<float> w_f32(out * in);
  cpu::dequantize_row(DType::kBF16, bytes.data(), w_f32.data(), out * in);
  Tensor wd = per_n.prepare_weight(Tensor::view(bytes.data(), DType::kBF16, {out, in}));
  for (int64_t t : {1, 3, 64, 300}) {
    std::vector<float> x = normal(t * in);
    Tensor y = per_n.upload(std::vector<float>(t * out, sentinel()), {t, out});
    per_n.linear(per_n.upload(x, {t, in}), wd, nullptr, y);
    EXPECT_TRUE(rel_close(per_n.to_host(y), bf16_product(x, w_f32, t, in, out), 3e-5)) << t << " rows";
  }
}

TEST_F(CudaOps, LinearDecodeSizedMatrixVector) {
  // 1..kGemvMaxTokens tokens take the matrix-vector kernel (per-batch-size backend), k % 8 != 0
  // falls back to cuBLASLt; tall, wide, odd and tiny weights. Rows of k >= 8192 are split over two
  // warps (77 x 14336: a last block with one row; 9 x 8200: parts of unequal iterations).
  CudaBackend per_n(0, 1, /*batch_invariant_gemm=*/false);
  struct Shape {
    int64_t out, in;
  };
  struct Case {
    int64_t out, in;
    DType dtype;
  };
  for (Case s : {Case{4099, 4096, DType::kBF16}, Case{77, 14336, DType::kBF16},
                 Case{9, 8200, DType::kBF16}, Case{3, 8, DType::kBF16},
                 Case{130, 12, DType::kBF16}, Case{1, 264, DType::kBF16}, Case{300, 256, DType::kQ8_0},
                 Case{384, 256, DType::kQ4_1}, Case{256, 512, DType::kQ4_K}}) {
    std::vector<uint8_t> bytes = random_weight(s.dtype, s.out, s.in, rng_);
    std::vector<float> w_f32(s.out * s.in);
    for (int64_t r = 0; r < s.out; ++r) {
      cpu::dequantize_row(s.dtype, bytes.data() + r * row_size(s.dtype, s.in), w_f32.data() + r * s.in, s.in);
    }
    Tensor wd = per_n.prepare_weight(Tensor::view(bytes.data(), s.dtype, {s.out, s.in}));
    for (int64_t t = 1; t <= kGemvMaxTokens + 1; ++t) {
      SCOPED_TRACE(::testing::Message() << dtype_name(s.dtype) << " out " << s.out << " in " << s.in
                                        << " tokens " << t);
      std::vector<float> x = normal(t * s.in);
      Tensor y = per_n.upload(std::vector<float>(t * s.out, sentinel()), {t, s.out});
      per_n.linear(per_n.upload(x, {t, s.in}), wd, nullptr, y);
      std::vector<float> got = per_n.to_host(y);
      for (float v : got) ASSERT_FALSE(is_sentinel(v));
      EXPECT_TRUE(rel_close(got, bf16_product(x, w_f32, t, s.in, s.out), 3e-5));
    }
  }
  // Several weights sharing one input go out in launches of up to kGemvMaxOutputs (q/k/v,
  // gate/up): 6 weights of different heights, so two launches.
  const int64_t in = 264;
  const int64_t outs[] = {64, 16, 16, 300, 1, 40};
  std::vector<std::vector<float>> w_f32;
  std::vector<Tensor> wd, ys;
  for (int64_t o : outs) {
    std::vector<uint8_t> bytes = random_weight(DType::kBF16, o, in, rng_);
    w_f32.emplace_back(o * in);
    cpu::dequantize_row(DType::kBF16, bytes.data(), w_f32.back().data(), o * in);
    wd.push_back(per_n.prepare_weight(Tensor::view(bytes.data(), DType::kBF16, {o, in})));
  }
  for (int64_t t : {int64_t{1}, kGemvMaxTokens}) {
    std::vector<float> x = normal(t * in);
    ys.clear();
    std::vector<const Tensor*> wp;
    std::vector<Tensor*> yp;
    for (size_t i = 0; i < wd.size(); ++i) ys.push_back(per_n.upload(std::vector<float>(t * outs[i], sentinel()), {t, outs[i]}));
    for (size_t i = 0; i < wd.size(); ++i) {
      wp.push_back(&wd[i]);
      yp.push_back(&ys[i]);
    }
    per_n.linear_many(per_n.upload(x, {t, in}), wp, yp);
    for (size_t i = 0; i < wd.size(); ++i) {
      EXPECT_TRUE(rel_close(per_n.to_host(ys[i]), bf16_product(x, w_f32[i], t, in, outs[i]), 3e-5))
          << "output " << i << " tokens " << t;
    }
  }
}

TEST_F(CudaOps, GatedLinearMatchesTheTwoProductsAndTheActivation) {
  // Decode-sized batches take one matrix-vector pass for gate, up and the activation; it must give
  // bit for bit what the two products (matrix-vector kernels too) and the element-wise kernel
  // give. Larger batches run the GEMMs with bf16 outputs (as vLLM's activations): equal up to
  // that rounding. Either way the bf16 copy left for the next linear layer must be right.
  CudaBackend be(0, 1, /*batch_invariant_gemm=*/false);
  for (GatedActivation act : {GatedActivation::kSilu, GatedActivation::kGeluTanh}) {
    for (auto [ffn, hidden] : {std::pair<int64_t, int64_t>{1000, 264}, {37, 8}, {5632, 2048}}) {
      std::vector<uint8_t> wg = random_weight(DType::kBF16, ffn, hidden, rng_);
      std::vector<uint8_t> wu = random_weight(DType::kBF16, ffn, hidden, rng_);
      std::vector<uint8_t> wdown = random_weight(DType::kBF16, 24, ffn, rng_);
      std::vector<float> wdown_f32(24 * ffn);
      cpu::dequantize_row(DType::kBF16, wdown.data(), wdown_f32.data(), 24 * ffn);
      for (int64_t t = 1; t <= kGemvMaxTokens + 1; ++t) {
        SCOPED_TRACE(::testing::Message() << "act " << static_cast<int>(act) << " ffn " << ffn
                                          << " hidden " << hidden << " tokens " << t);
        std::vector<float> x = normal(t * hidden);
        auto run = [&](bool fused) {
          Tensor wgd = be.prepare_weight(Tensor::view(wg.data(), DType::kBF16, {ffn, hidden}));
          Tensor wud = be.prepare_weight(Tensor::view(wu.data(), DType::kBF16, {ffn, hidden}));
          Tensor gate = be.upload(std::vector<float>(t * ffn, sentinel()), {t, ffn});
          Tensor up = be.alloc(DType::kF32, {t, ffn});
          Tensor xd = be.upload(x, {t, hidden});
          if (fused) {
            be.gated_linear(xd, wgd, wud, act, gate, up, gate);
          } else {
            be.Backend::gated_linear(xd, wgd, wud, act, gate, up, gate);  // the unfused ops
          }
          Tensor wdd = be.prepare_weight(Tensor::view(wdown.data(), DType::kBF16, {24, ffn}));
          Tensor down = be.upload(std::vector<float>(t * 24, sentinel()), {t, 24});
          be.linear(gate, wdd, nullptr, down);
          return std::pair{be.to_host(gate), be.to_host(down)};
        };
        auto [fused, fused_down] = run(true);
        auto [plain, plain_down] = run(false);
        ASSERT_EQ(fused.size(), plain.size());
        for (float v : fused) ASSERT_FALSE(is_sentinel(v));
        if (t <= kGemvMaxTokens) {
          for (size_t i = 0; i < fused.size(); ++i) ASSERT_EQ(fused[i], plain[i]) << "element " << i;
        } else {
          EXPECT_TRUE(rel_close(fused, plain, 1e-2));
        }
        // The down projection read the fused op's bf16 copy: the same as converting its output.
        EXPECT_TRUE(rel_close(fused_down, bf16_product(fused, wdown_f32, t, ffn, 24), 3e-5));
      }
    }
  }
}

TEST_F(CudaOps, LinearInputWrittenByNormOrActivationIsNeverStale) {
  // Norms and silu_mul leave a bf16 copy of their output for the next linear layer; any later
  // write to that output must make the linear convert again. The reference is the product of the
  // bf16-rounded current input, read back from the device.
  const int64_t t = 6, in = 96, out = 40;
  std::vector<uint8_t> bytes = random_weight(DType::kBF16, out, in, rng_);
  std::vector<float> w_f32(out * in);
  cpu::dequantize_row(DType::kBF16, bytes.data(), w_f32.data(), out * in);
  Tensor wd = gpu().prepare_weight(Tensor::view(bytes.data(), DType::kBF16, {out, in}));
  auto check_linear = [&](const Tensor& x, const char* what) {
    Tensor y = poisoned({t, out});
    gpu().linear(x, wd, nullptr, y);
    EXPECT_TRUE(rel_close(back(y), bf16_product(back(x), w_f32, t, in, out), 3e-5)) << what;
  };
  Tensor x = dev(normal(t * in), {t, in}), w = dev(normal(in), {in});
  Tensor residual = dev(normal(t * in), {t, in});
  Tensor y = gpu().alloc(DType::kF32, {t, in});
  gpu().add_rms_norm(x, residual, w, 1e-6f, y, 0.0f);
  check_linear(y, "after add_rms_norm");
  gpu().add(dev(normal(t * in), {t, in}), y);
  check_linear(y, "after an add into the norm output");
  gpu().rms_norm(x, w, 1e-6f, y, 0.0f);
  gpu().silu_mul(y, x, y);
  check_linear(y, "after silu_mul in place");
  gpu().rms_norm(x, w, 1e-6f, y, 0.0f);
  Tensor y_rows = y.slice_rows(0, 3);  // same start, fewer elements: must not reuse the copy
  Tensor part = poisoned({3, out});
  gpu().linear(y_rows, wd, nullptr, part);
  std::vector<float> y_host = back(y);
  y_host.resize(3 * in);
  EXPECT_TRUE(rel_close(back(part), bf16_product(y_host, w_f32, 3, in, out), 3e-5)) << "row slice";
  gpu().rms_norm(x, w, 1e-6f, y, 0.0f);
  std::vector<float> inv_freq(in / 2, 0.01f);
  ForwardBatch batch;
  batch.input_ids.assign(t, 0);
  for (int64_t i = 0; i < t; ++i) batch.positions.push_back(static_cast<int32_t>(100 + i));
  batch.slot_mapping.assign(t, -1);
  batch.query_start_loc = {0, static_cast<int32_t>(t)};
  batch.seq_lens = {static_cast<int32_t>(t)};
  batch.block_table = {0};
  batch.max_blocks_per_req = 1;
  Tensor k = dev(normal(t * in), {t, in});
  gpu().rotary(y, k, *gpu().prepare_step(batch), RopeParams{in, in, RopeStyle::kNeox, inv_freq.data(), 1.0f});
  check_linear(y, "after rotary in place");
}

// ---- norms, rotary, activations -------------------------------------------------------------

TEST_F(CudaOps, RmsNormAndFusedResidual) {
  for (int64_t rows : {0, 1, 5}) {
    for (int64_t n : {1, 64, 577, 2048, 4096, 8192, 8196}) {  // 16-byte rows up to 8192: vector path
      for (float offset : {0.0f, 1.0f}) {
        SCOPED_TRACE(::testing::Message() << rows << "x" << n << " offset " << offset);
        std::vector<float> x = normal(rows * n, 3.0f), w = normal(n), res = normal(rows * n);
        Tensor y = poisoned({rows, n});
        gpu().rms_norm(dev(x, {rows, n}), dev(w, {n}), 1e-6f, y, offset);
        Tensor ref = cpu_.alloc(DType::kF32, {rows, n});
        cpu_.rms_norm(host(x, {rows, n}), host(w, {n}), 1e-6f, ref, offset);
        EXPECT_TRUE(close(back(y), values(ref), 1e-5, 1e-5));

        Tensor res_dev = dev(res, {rows, n});
        Tensor y2 = poisoned({rows, n});
        gpu().add_rms_norm(dev(x, {rows, n}), res_dev, dev(w, {n}), 1e-5f, y2, offset);
        Tensor res_host = host(res, {rows, n});
        Tensor ref2 = cpu_.alloc(DType::kF32, {rows, n});
        cpu_.add_rms_norm(host(x, {rows, n}), res_host, host(w, {n}), 1e-5f, ref2, offset);
        EXPECT_TRUE(close(back(y2), values(ref2), 1e-5, 1e-5)) << "normed";
        EXPECT_TRUE(close(back(res_dev), values(res_host), 0.0, 0.0)) << "residual";
      }
    }
  }
}

TEST_F(CudaOps, LayerNormWithAndWithoutBias) {
  for (int64_t rows : {0, 1, 6}) {
    for (int64_t n : {3, 768, 1001}) {
      std::vector<float> x = normal(rows * n, 2.0f), w = normal(n), b = normal(n);
      for (float& v : x) v += 4.0f;  // a mean far from zero
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(::testing::Message() << rows << "x" << n << " bias " << with_bias);
        Tensor b_dev = dev(b, {n}), b_host = host(b, {n});
        Tensor y = poisoned({rows, n});
        gpu().layer_norm(dev(x, {rows, n}), dev(w, {n}), with_bias ? &b_dev : nullptr, 1e-5f, y);
        Tensor ref = cpu_.alloc(DType::kF32, {rows, n});
        cpu_.layer_norm(host(x, {rows, n}), host(w, {n}), with_bias ? &b_host : nullptr, 1e-5f, ref);
        EXPECT_TRUE(close(back(y), values(ref), 1e-4, 1e-4));
      }
    }
  }
}

TEST_F(CudaOps, RotaryBothLayoutsPartialAndScaled) {
  struct Case {
    int64_t num_heads, num_kv_heads, head_size, rot_dim;
    RopeStyle style;
    float mscale;
  };
  const Case cases[] = {{4, 2, 64, 64, RopeStyle::kNeox, 1.0f},
                        {4, 2, 64, 64, RopeStyle::kInterleaved, 1.0f},
                        {3, 1, 80, 32, RopeStyle::kNeox, 1.25f},
                        {2, 2, 96, 48, RopeStyle::kInterleaved, 0.8f},
                        {1, 1, 2, 2, RopeStyle::kNeox, 1.0f}};
  for (const Case& c : cases) {
    for (int64_t t : {0, 1, 11}) {
      SCOPED_TRACE(::testing::Message() << "heads " << c.num_heads << "/" << c.num_kv_heads << " d "
                                        << c.head_size << " rot " << c.rot_dim << " t " << t);
      std::vector<float> inv_freq(c.rot_dim / 2);
      for (size_t i = 0; i < inv_freq.size(); ++i) {
        inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / c.rot_dim);
      }
      ForwardBatch batch;
      for (int64_t i = 0; i < t; ++i) batch.positions.push_back(uniform_int(0, 8191));
      batch.input_ids.assign(t, 0);
      batch.slot_mapping.assign(t, -1);
      batch.query_start_loc = {0, static_cast<int32_t>(t)};
      batch.seq_lens = {static_cast<int32_t>(t)};
      batch.block_table = {0};
      batch.max_blocks_per_req = 1;
      RopeParams rope{c.head_size, c.rot_dim, c.style, inv_freq.data(), c.mscale};
      std::vector<float> q = normal(t * c.num_heads * c.head_size), k = normal(t * c.num_kv_heads * c.head_size);
      Tensor qd = dev(q, {t, c.num_heads * c.head_size}), kd = dev(k, {t, c.num_kv_heads * c.head_size});
      Tensor qh = host(q, {t, c.num_heads * c.head_size}), kh = host(k, {t, c.num_kv_heads * c.head_size});
      gpu().rotary(qd, kd, *gpu().prepare_step(batch), rope);
      cpu_.rotary(qh, kh, *cpu_.prepare_step(batch), rope);
      // Angles up to 8191 rad: cos/sin of the same f32 angle differ by an ulp or two of libm.
      EXPECT_TRUE(close(back(qd), values(qh), 2e-5, 2e-5)) << "q";
      EXPECT_TRUE(close(back(kd), values(kh), 2e-5, 2e-5)) << "k";
    }
  }
}

// rope_attention rotates q and k inside the KV-cache write: q, k, the output and what later steps
// read from the cache must equal rotary() followed by attention(), bit for bit. Two requests: a
// prefill (37 and 5 tokens), then a decode step reading the cache the first step wrote.
TEST_F(CudaOps, RopeAttentionMatchesRotaryThenAttention) {
  struct Case {
    int64_t num_heads, num_kv_heads, head_size, rot_dim;
    RopeStyle style;
    DType cache;
  };
  const Case cases[] = {{8, 2, 64, 64, RopeStyle::kNeox, DType::kBF16},
                        {4, 1, 128, 64, RopeStyle::kInterleaved, DType::kBF16},
                        {6, 3, 80, 80, RopeStyle::kNeox, DType::kF32}};
  constexpr int64_t kBlock = 16;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "heads " << c.num_heads << "/" << c.num_kv_heads << " d "
                                      << c.head_size << " rot " << c.rot_dim << " cache "
                                      << dtype_name(c.cache));
    std::vector<float> inv_freq(c.rot_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / c.rot_dim);
    }
    const RopeParams rope{c.head_size, c.rot_dim, c.style, inv_freq.data(), 1.0f};
    AttentionParams p;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_size = c.head_size;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_size));
    const std::vector<int64_t> shape = {8, c.num_kv_heads, kBlock, c.head_size};
    KVCacheLayer fused{gpu().alloc(c.cache, shape), gpu().alloc(c.cache, shape), kBlock};
    KVCacheLayer apart{gpu().alloc(c.cache, shape), gpu().alloc(c.cache, shape), kBlock};
    const std::vector<std::vector<int32_t>> blocks = {{3, 1, 6}, {5}};
    std::vector<int64_t> lens = {0, 0};
    for (const std::vector<int64_t>& new_tokens : {std::vector<int64_t>{37, 5}, {1, 1}}) {
      ForwardBatch b;
      b.query_start_loc = {0};
      b.max_blocks_per_req = 3;
      b.block_table = {3, 1, 6, 5, 0, 0};
      for (size_t r = 0; r < 2; ++r) {
        for (int64_t j = 0; j < new_tokens[r]; ++j) {
          const int64_t pos = lens[r] + j;
          b.input_ids.push_back(0);
          b.positions.push_back(static_cast<int32_t>(pos));
          b.slot_mapping.push_back(int64_t{blocks[r][pos / kBlock]} * kBlock + pos % kBlock);
        }
        lens[r] += new_tokens[r];
        b.query_start_loc.push_back(static_cast<int32_t>(b.input_ids.size()));
        b.seq_lens.push_back(static_cast<int32_t>(lens[r]));
      }
      const int64_t t = b.num_tokens(), qw = c.num_heads * c.head_size, kw = c.num_kv_heads * c.head_size;
      const std::vector<float> q = normal(t * qw), k = normal(t * kw), v = normal(t * kw);
      Tensor q1 = dev(q, {t, qw}), k1 = dev(k, {t, kw}), v1 = dev(v, {t, kw});
      Tensor q2 = dev(q, {t, qw}), k2 = dev(k, {t, kw}), v2 = dev(v, {t, kw});
      Tensor out1 = gpu().alloc(DType::kF32, {t, qw}), out2 = gpu().alloc(DType::kF32, {t, qw});
      std::unique_ptr<StepMetadata> step = gpu().prepare_step(b);
      gpu().rope_attention(q1, k1, v1, fused, *step, rope, p, out1);
      gpu().rotary(q2, k2, *step, rope);
      gpu().attention(q2, k2, v2, apart, *step, p, out2);
      EXPECT_EQ(back(q1), back(q2)) << "q";
      EXPECT_EQ(back(k1), back(k2)) << "k";
      EXPECT_EQ(back(out1), back(out2)) << "output";
    }
  }
}

TEST_F(CudaOps, ActivationsAndAdd) {
  for (std::vector<int64_t> shape : {std::vector<int64_t>{0, 7}, {1, 1}, {4, 250}, {7, 10001}}) {
    const int64_t n = shape[0] * shape[1];
    std::vector<float> g = normal(n, 4.0f), u = normal(n);
    Tensor out = poisoned(shape);
    gpu().silu_mul(dev(g, shape), dev(u, shape), out);
    Tensor ref = cpu_.alloc(DType::kF32, shape);
    cpu_.silu_mul(host(g, shape), host(u, shape), ref);
    EXPECT_TRUE(close(back(out), values(ref), 1e-6, 1e-5)) << "silu_mul " << n;

    Tensor out2 = poisoned(shape);
    gpu().gelu_tanh_mul(dev(g, shape), dev(u, shape), out2);
    Tensor ref2 = cpu_.alloc(DType::kF32, shape);
    cpu_.gelu_tanh_mul(host(g, shape), host(u, shape), ref2);
    EXPECT_TRUE(close(back(out2), values(ref2), 1e-6, 1e-5)) << "gelu_tanh_mul " << n;

    // Non-gated (OPT's ReLU, GPT-2's gelu_new), out of place and in place.
    Tensor out3 = poisoned(shape);
    gpu().relu(dev(g, shape), out3);
    Tensor ref3 = cpu_.alloc(DType::kF32, shape);
    cpu_.relu(host(g, shape), ref3);
    EXPECT_TRUE(close(back(out3), values(ref3), 0.0, 0.0)) << "relu " << n;
    Tensor out4 = poisoned(shape);
    gpu().gelu_tanh(dev(g, shape), out4);
    Tensor ref4 = cpu_.alloc(DType::kF32, shape);
    cpu_.gelu_tanh(host(g, shape), ref4);
    EXPECT_TRUE(close(back(out4), values(ref4), 1e-6, 1e-5)) << "gelu_tanh " << n;
    Tensor xd = dev(g, shape);
    gpu().gelu_tanh(xd, xd);
    EXPECT_TRUE(close(back(xd), values(ref4), 1e-6, 1e-5)) << "gelu_tanh in place " << n;

    // In place, as the model calls it (out aliases gate).
    Tensor gd = dev(g, shape);
    gpu().silu_mul(gd, dev(u, shape), gd);
    EXPECT_TRUE(close(back(gd), values(ref), 1e-6, 1e-5)) << "silu_mul in place " << n;

    Tensor b = dev(u, shape);
    gpu().add(dev(g, shape), b);
    Tensor bh = host(u, shape);
    cpu_.add(host(g, shape), bh);
    EXPECT_TRUE(close(back(b), values(bh), 0.0, 0.0)) << "add " << n;
  }
}

TEST_F(CudaOps, ScaleAndSoftcapInPlace) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{70001}}) {
    std::vector<float> x = normal(n, 20.0f);
    Tensor g = dev(x, {n});
    Tensor c = host(x, {n});
    gpu().scale(g, 25.298221f);
    cpu_.scale(c, 25.298221f);
    EXPECT_TRUE(close(back(g), values(c), 0.0, 0.0)) << "scale " << n;
    gpu().softcap(g, 30.0f);
    cpu_.softcap(c, 30.0f);
    EXPECT_TRUE(close(back(g), values(c), 1e-5, 1e-5)) << "softcap " << n;
  }
}

TEST_F(CudaOps, AllocIsZeroedAndCopyBlocksCopiesWholeBlocks) {
  const int64_t num_blocks = 6, kv_heads = 2, bs = 16, d = 8;
  Tensor z = gpu().alloc(DType::kF32, {num_blocks, kv_heads, bs, d});
  for (float v : back(z)) ASSERT_EQ(v, 0.0f);
  std::vector<float> k = normal(num_blocks * kv_heads * bs * d), v = normal(k.size());
  std::vector<KVCacheLayer> caches(1);
  caches[0].k = dev(k, {num_blocks, kv_heads, bs, d});
  caches[0].v = dev(v, {num_blocks, kv_heads, bs, d});
  caches[0].block_size = bs;
  gpu().copy_blocks(caches, {{1, 4}, {2, 5}});
  const int64_t block = kv_heads * bs * d;
  for (auto [src, dst] : {std::pair{1, 4}, std::pair{2, 5}}) {
    std::copy(k.begin() + src * block, k.begin() + (src + 1) * block, k.begin() + dst * block);
    std::copy(v.begin() + src * block, v.begin() + (src + 1) * block, v.begin() + dst * block);
  }
  EXPECT_TRUE(close(back(caches[0].k), k, 0.0, 0.0));
  EXPECT_TRUE(close(back(caches[0].v), v, 0.0, 0.0));
}

// ---- sampling ---------------------------------------------------------------------------------

TEST_F(CudaOps, SamplingOnDeviceMatchesTheHostSampler) {
  // Each device draw against the host sampler's full-vocabulary path with the same uniform number,
  // and greedy rows against the first maximum. Logits are peaky or flat, with masked (-inf)
  // entries and repeated maxima; vocabularies from 1 to 128k.
  for (int64_t vocab : {int64_t{1}, int64_t{33}, int64_t{1000}, int64_t{50257}, int64_t{128256}}) {
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
    const int64_t rows = 24;
    std::vector<float> logits = normal(rows * vocab, 3.0f);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = logits.data() + r * vocab;
      if (r % 4 == 1) {  // masked entries (allowed-token lists, bad words)
        for (int64_t i = 1; i < vocab; i += 3) row[i] = -INFINITY;
      }
      if (r % 4 == 2 && vocab > 5) {  // equal maxima: greedy takes the lowest id
        row[vocab / 2] = 50.0f;
        row[vocab - 1] = 50.0f;
        row[vocab / 3] = 50.0f;
      }
    }
    std::vector<DeviceSampleRow> params;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const float temperatures[] = {0.0f, 1.0f, 0.7f, 1.6f, 0.001f};
    const float min_ps[] = {0.0f, 0.0f, 0.05f, 0.0f, 0.3f};
    for (int64_t r = 0; r < rows; ++r) {
      DeviceSampleRow p;
      p.row = static_cast<int32_t>(rows - 1 - r);  // rows taken out of order
      p.temperature = temperatures[r % 5];
      p.greedy = p.temperature == 0.0f;
      p.min_p = min_ps[r % 5];
      p.u = r == 3 ? 0.0 : r == 8 ? std::nextafter(1.0, 0.0) : unit(rng_);
      params.push_back(p);
    }
    Tensor logits_dev = dev(logits, {rows, vocab});
    std::vector<int32_t> got = draw(logits_dev, params);
    ASSERT_EQ(got.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const DeviceSampleRow& p = params[i];
      std::vector<float> row(logits.begin() + p.row * vocab, logits.begin() + (p.row + 1) * vocab);
      int32_t want;
      if (p.greedy) {
        want = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      } else {
        SamplingParams sp;
        sp.temperature = p.temperature;
        sp.min_p = p.min_p;
        want = Sampler::sample_full_vocabulary(row.data(), vocab, sp, p.u);
      }
      EXPECT_EQ(got[i], want) << "row " << p.row << " temperature " << p.temperature << " min_p "
                              << p.min_p << " u " << p.u;
    }
  }
  Tensor two = dev({1.0f, 2.0f}, {1, 2});
  EXPECT_TRUE(gpu().sample_on_device(two, {}).empty());
}

TEST_F(CudaOps, TopKTopPOnDeviceMatchesTheHostSampler) {
  // Rows with top-k and/or top-p against the host's candidate list (Sampler::sampling_candidates)
  // walked with the same uniform number. Logits have a few strong tokens over a noisy tail, ties
  // among the strong ones, and masked entries; a flat 128k row leaves too many top-p candidates
  // and must come back as -1 (the host draws it).
  struct Case {
    int top_k;
    double top_p;
    float temperature, min_p;
  };
  const Case cases[] = {{1, 1.0, 1.0f, 0.0f},   {40, 1.0, 0.8f, 0.0f},  {2000, 1.0, 1.0f, 0.0f},
                        {0, 0.9, 1.0f, 0.0f},   {0, 0.5, 0.7f, 0.0f},   {50, 0.95, 1.2f, 0.0f},
                        {20, 0.8, 1.0f, 0.05f}, {0, 0.99, 1.0f, 0.02f}, {3, 1.0, 0.01f, 0.0f}};
  for (int64_t vocab : {int64_t{7}, int64_t{1000}, int64_t{50257}, int64_t{128256}}) {
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
    const int64_t rows = 27;
    std::vector<float> logits = normal(rows * vocab, 1.0f);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = logits.data() + r * vocab;
      for (int s = 0; s < 24 && s < vocab; ++s) row[(s * 7919 + r) % vocab] = 9.0f + (s % 6);
      if (r % 3 == 1) {
        for (int64_t i = 5; i < vocab; i += 11) row[i] = -INFINITY;
      }
    }
    std::vector<DeviceSampleRow> params;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (int64_t r = 0; r < rows; ++r) {
      const Case& c = cases[r % 9];
      DeviceSampleRow p;
      p.row = static_cast<int32_t>(r);
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.temperature = c.temperature;
      p.min_p = c.min_p;
      p.u = r == 4 ? 0.0 : r == 13 ? std::nextafter(1.0, 0.0) : unit(rng_);
      params.push_back(p);
    }
    Tensor logits_dev = dev(logits, {rows, vocab});
    std::vector<int32_t> got = draw(logits_dev, params);
    ASSERT_EQ(got.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const DeviceSampleRow& p = params[i];
      std::vector<float> row(logits.begin() + p.row * vocab, logits.begin() + (p.row + 1) * vocab);
      SamplingParams sp;
      sp.temperature = p.temperature;
      sp.min_p = p.min_p;
      sp.top_k = p.top_k;
      sp.top_p = p.top_p;
      Sampler::Candidates c = Sampler::sampling_candidates(row.data(), vocab, sp);
      int32_t want = c.ids.back();
      double cum = 0.0;
      for (size_t j = 0; j < c.ids.size(); ++j) {
        cum += c.probs[j];
        if (p.u < cum) {
          want = c.ids[j];
          break;
        }
      }
      EXPECT_EQ(got[i], want) << "row " << p.row << " top_k " << p.top_k << " top_p " << p.top_p
                              << " temperature " << p.temperature << " min_p " << p.min_p
                              << " u " << p.u << " (" << c.ids.size() << " candidates)";
    }
  }
  // Flat: every token ties, top-p keeps 90% of 128k of them.
  const int64_t vocab = 128256;
  DeviceSampleRow flat;
  flat.top_p = 0.9;
  flat.u = 0.5;
  Tensor flat_logits = dev(std::vector<float>(vocab, 1.0f), {1, vocab});
  std::vector<int32_t> got = draw(flat_logits, {flat});
  EXPECT_EQ(got, std::vector<int32_t>{-1});
}

TEST_F(CudaOps, LogitsProcessorsOnDeviceMatchTheHost) {
  // Allowed ids, bad words, min_tokens, biases and the three penalties applied on the device give
  // the host's processed logits bit for bit, and the draws that follow match the host's.
  const int64_t vocab = 5000, rows = 8;
  std::vector<float> logits = normal(rows * vocab, 2.0f);
  std::vector<int32_t> prompt = {5, 17, 17, 999, 4321, 0};
  std::vector<int32_t> output = {17, 42, 42, 42, 7, 4999};
  std::vector<SamplingParams> sp(rows);
  std::vector<SamplingState> states(rows);
  std::vector<Sampler::DeviceRowLists> lists(rows);
  std::vector<DeviceSampleRow> params;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t r = 0; r < rows; ++r) {
    SamplingParams& p = sp[r];
    p.temperature = r % 2 == 0 ? 0.0 : 0.9;
    p.repetition_penalty = r % 3 == 0 ? 1.3 : 1.0;
    p.frequency_penalty = r % 4 == 1 ? 0.7 : 0.0;
    p.presence_penalty = r % 4 == 2 ? -0.4 : 0.0;
    if (r == 3) p.allowed_token_ids = std::vector<int32_t>{42, 7, 3000, 7, 12};
    if (r % 2 == 1) p.logit_bias = {{42, 5.0}, {1234, -100.0}, {7, 2.5}};
    p.min_tokens = r == 5 ? 10 : 0;
    if (r == 6) p.top_k = 10;
    SamplingState& st = states[r];
    st.params = &p;
    st.prompt_token_ids = prompt;
    st.output_token_ids = output;
    for (int32_t t : output) ++st.output_token_counts[t];
    st.bad_words_token_ids = {{7, 4999, 11}, {99}, {1, 2}};  // ends with 7, 4999: bans 11; 99 always
    st.min_tokens_stop_ids = {2, 3};
    // The runner's conversion of the request into the device's row.
    DeviceSampleRow d = Sampler::device_row(st, static_cast<int32_t>(r), lists[r]);
    d.u = unit(rng_);
    params.push_back(d);
  }
  Tensor logits_dev = dev(logits, {rows, vocab});
  std::vector<int32_t> got = draw(logits_dev, params);
  std::vector<float> processed = back(logits_dev);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
    Sampler::apply_logits_processors(row.data(), vocab, states[r]);
    EXPECT_TRUE(test::same_bits(processed.data() + r * vocab, row.data(), vocab)) << "row " << r;
    int32_t want;
    if (sp[r].is_greedy()) {
      want = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
    } else {
      Sampler::Candidates c = Sampler::sampling_candidates(row.data(), vocab, sp[r]);
      want = c.ids.back();
      double cum = 0.0;
      for (size_t j = 0; j < c.ids.size(); ++j) {
        cum += c.probs[j];
        if (params[r].u < cum) {
          want = c.ids[j];
          break;
        }
      }
    }
    EXPECT_EQ(got[r], want) << "row " << r;
  }
}

TEST_F(CudaOps, LogprobsOnDeviceMatchTheHost) {
  // Rows asking for logprobs get the drawn token's raw logprob (before any processor), its rank
  // and the top k, as the host's Sampler::gather_logprobs computes them; rows without get none.
  for (int64_t vocab : {int64_t{5000}, int64_t{128256}}) {
    const int64_t rows = 6;
    std::vector<float> logits = normal(rows * vocab, 3.0f);
    logits[2 * vocab + 7] = logits[2 * vocab + 9] = 40.0f;  // a tie at the top: smaller id first
    std::vector<std::pair<int32_t, float>> bias = {{11, 30.0f}};  // moves the draw, not the logprobs
    const int k_of[rows] = {0, 1, 5, kMaxDeviceLogprobs, -1, 3};
    std::vector<DeviceSampleRow> params;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (int64_t r = 0; r < rows; ++r) {
      DeviceSampleRow p;
      p.row = static_cast<int32_t>(r);
      p.greedy = r % 2 == 0;
      p.temperature = p.greedy ? 0.0f : 0.8f;
      p.u = unit(rng_);
      p.num_logprobs = k_of[r];
      if (r == 5) p.bias = bias;
      params.push_back(p);
    }
    Tensor logits_dev = dev(logits, {rows, vocab});
    std::vector<DeviceSample> got = gpu().sample_on_device(logits_dev, params);
    ASSERT_EQ(got.size(), params.size());
    for (int64_t r = 0; r < rows; ++r) {
      SCOPED_TRACE(::testing::Message() << "vocab " << vocab << " row " << r);
      ASSERT_GE(got[r].token_id, 0);
      if (k_of[r] < 0) {
        EXPECT_FALSE(got[r].logprobs.has_value());
        continue;
      }
      ASSERT_TRUE(got[r].logprobs.has_value());
      const TokenLogprobs& lp = *got[r].logprobs;
      TokenLogprobs want =
          Sampler::gather_logprobs(logits.data() + r * vocab, vocab, got[r].token_id, k_of[r]);
      EXPECT_EQ(lp.sampled_token_id, got[r].token_id);
      EXPECT_NEAR(lp.sampled_logprob, want.sampled_logprob, 1e-4);
      EXPECT_EQ(lp.sampled_rank, want.sampled_rank);
      EXPECT_EQ(lp.top_ids, want.top_ids);
      ASSERT_EQ(lp.top_logprobs.size(), want.top_logprobs.size());
      for (size_t j = 0; j < lp.top_logprobs.size(); ++j) {
        EXPECT_NEAR(lp.top_logprobs[j], want.top_logprobs[j], 1e-4) << "place " << j;
      }
    }
    EXPECT_EQ(got[5].token_id, 11) << "the bias decides the greedy draw";
    EXPECT_EQ(got[2].logprobs->top_ids[0], 7);
  }
}

TEST_F(CudaOps, PromptLogprobsOnDeviceMatchTheHost) {
  // Given tokens at given rows (repeated, out of order), with 0, 5 and kMaxDeviceLogprobs best;
  // the logits stay untouched.
  const int64_t vocab = 32000, rows = 5;
  std::vector<float> logits = normal(rows * vocab, 2.0f);
  Tensor logits_dev = dev(logits, {rows, vocab});
  const std::vector<int32_t> at = {3, 0, 3, 4, 1};
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < at.size(); ++i) tokens.push_back(uniform_int(0, static_cast<int>(vocab) - 1));
  tokens[1] = static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + vocab) -
                                   logits.begin());  // rank 1
  for (int k : {0, 5, kMaxDeviceLogprobs}) {
    std::vector<TokenLogprobs> got = gpu().logprobs_on_device(logits_dev, at, tokens, k);
    ASSERT_EQ(got.size(), at.size());
    for (size_t i = 0; i < at.size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "k " << k << " entry " << i);
      TokenLogprobs want = Sampler::gather_logprobs(logits.data() + at[i] * vocab, vocab, tokens[i], k);
      EXPECT_EQ(got[i].sampled_token_id, tokens[i]);
      EXPECT_NEAR(got[i].sampled_logprob, want.sampled_logprob, 1e-4);
      EXPECT_EQ(got[i].sampled_rank, want.sampled_rank);
      EXPECT_EQ(got[i].top_ids, want.top_ids);
      ASSERT_EQ(got[i].top_logprobs.size(), want.top_logprobs.size());
      for (size_t j = 0; j < want.top_logprobs.size(); ++j) {
        EXPECT_NEAR(got[i].top_logprobs[j], want.top_logprobs[j], 1e-4);
      }
    }
    EXPECT_EQ(got[1].sampled_rank, 1);
  }
  EXPECT_TRUE(test::same_bits(back(logits_dev).data(), logits.data(), rows * vocab));
  EXPECT_TRUE(gpu().logprobs_on_device(logits_dev, {}, {}, 3).empty());
}

TEST_F(CudaOps, RowsToHostPicksRowsInOrder) {
  const int64_t rows = 5, width = 7;
  std::vector<float> v = normal(rows * width);
  std::vector<float> got = gpu().rows_to_host(dev(v, {rows, width}), {3, 0, 3});
  std::vector<float> want;
  for (int r : {3, 0, 3}) want.insert(want.end(), v.begin() + r * width, v.begin() + (r + 1) * width);
  EXPECT_TRUE(close(got, want, 0.0, 0.0));
}

// ---- paged attention ------------------------------------------------------------------------

struct AttnCase {
  int64_t num_heads, num_kv_heads, head_size, block_size;
  float softcap;
  int64_t window;
  DType gpu_cache;
};

// Runs one step of several requests on both backends: each request has `cached` tokens already
// in the cache (written by an earlier step) and `new_tokens` now. Returns (gpu, cpu) outputs.
class AttentionRunner {
 public:
  AttentionRunner(CudaBackend& gpu, cpu::CpuBackend& cpu, const AttnCase& c, int64_t num_blocks,
                  std::mt19937& rng)
      : gpu_(gpu), cpu_(cpu), c_(c), rng_(rng) {
    std::vector<int64_t> shape = {num_blocks, c.num_kv_heads, c.block_size, c.head_size};
    gpu_cache_.k = gpu.alloc(c.gpu_cache, shape);
    gpu_cache_.v = gpu.alloc(c.gpu_cache, shape);
    gpu_cache_.block_size = c.block_size;
    cpu_cache_.k = cpu.alloc(DType::kF32, shape);
    cpu_cache_.v = cpu.alloc(DType::kF32, shape);
    cpu_cache_.block_size = c.block_size;
    // Blocks 1.. shuffled (block 0 is the null block), handed out as requests grow.
    for (int64_t b = 1; b < num_blocks; ++b) free_blocks_.push_back(static_cast<int32_t>(b));
    std::shuffle(free_blocks_.begin(), free_blocks_.end(), rng_);
  }

  // new_tokens[r] tokens for request r (requests persist across calls, by index).
  // gpu_out, when given, receives the GPU output tensor.
  std::pair<std::vector<float>, std::vector<float>> step(const std::vector<int64_t>& new_tokens,
                                                         Tensor* gpu_out = nullptr) {
    if (blocks_.size() < new_tokens.size()) blocks_.resize(new_tokens.size());
    if (lens_.size() < new_tokens.size()) lens_.resize(new_tokens.size(), 0);
    ForwardBatch b;
    b.query_start_loc.push_back(0);
    size_t max_blocks = 1;
    std::vector<size_t> active;  // requests with tokens this step (the others sit it out)
    for (size_t r = 0; r < new_tokens.size(); ++r) {
      if (new_tokens[r] == 0) continue;
      active.push_back(r);
      int64_t len = lens_[r] + new_tokens[r];
      while (static_cast<int64_t>(blocks_[r].size()) * c_.block_size < len) {
        blocks_[r].push_back(free_blocks_.back());
        free_blocks_.pop_back();
      }
      max_blocks = std::max(max_blocks, blocks_[r].size());
    }
    b.max_blocks_per_req = static_cast<int64_t>(max_blocks);
    b.block_table.assign(active.size() * max_blocks, 0);
    for (size_t row = 0; row < active.size(); ++row) {
      const size_t r = active[row];
      for (int64_t j = 0; j < new_tokens[r]; ++j) {
        int64_t pos = lens_[r] + j;
        b.input_ids.push_back(0);
        b.positions.push_back(static_cast<int32_t>(pos));
        b.slot_mapping.push_back(int64_t{blocks_[r][pos / c_.block_size]} * c_.block_size + pos % c_.block_size);
      }
      lens_[r] += new_tokens[r];
      b.query_start_loc.push_back(static_cast<int32_t>(b.input_ids.size()));
      b.seq_lens.push_back(static_cast<int32_t>(lens_[r]));
      std::copy(blocks_[r].begin(), blocks_[r].end(), b.block_table.begin() + row * max_blocks);
    }
    const int64_t t = b.num_tokens();
    std::vector<float> q = test::random_normal(t * c_.num_heads * c_.head_size, rng_);
    std::vector<float> k = test::random_normal(t * c_.num_kv_heads * c_.head_size, rng_);
    std::vector<float> v = test::random_normal(k.size(), rng_);
    AttentionParams p;
    p.num_heads = c_.num_heads;
    p.num_kv_heads = c_.num_kv_heads;
    p.head_size = c_.head_size;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_size)) * 2.0f;  // peakier than usual
    p.logit_softcap = c_.softcap;
    p.sliding_window = c_.window;

    const int64_t qw = c_.num_heads * c_.head_size, kw = c_.num_kv_heads * c_.head_size;
    Tensor out = gpu_.upload(std::vector<float>(t * qw, sentinel()), {t, qw});
    gpu_.attention(gpu_.upload(q, {t, qw}), gpu_.upload(k, {t, kw}), gpu_.upload(v, {t, kw}),
                   gpu_cache_, *gpu_.prepare_step(b), p, out);
    Tensor ref = cpu_.alloc(DType::kF32, {t, qw});
    auto host = [](const std::vector<float>& x, std::vector<int64_t> shape) {
      Tensor h = Tensor::empty(DType::kF32, std::move(shape));
      if (!x.empty()) std::memcpy(h.data(), x.data(), x.size() * 4);
      return h;
    };
    cpu_.attention(host(q, {t, qw}), host(k, {t, kw}), host(v, {t, kw}), cpu_cache_,
                   *cpu_.prepare_step(b), p, ref);
    std::vector<float> want(ref.data_as<float>(), ref.data_as<float>() + ref.numel());
    std::vector<float> got = gpu_.to_host(out);
    if (gpu_out != nullptr) *gpu_out = out;
    return {got, want};
  }

 private:
  CudaBackend& gpu_;
  cpu::CpuBackend& cpu_;
  AttnCase c_;
  std::mt19937& rng_;
  KVCacheLayer gpu_cache_, cpu_cache_;
  std::vector<int32_t> free_blocks_;
  std::vector<std::vector<int32_t>> blocks_;
  std::vector<int64_t> lens_;
};

void check_attention(CudaBackend& gpu, cpu::CpuBackend& cpu, const AttnCase& c, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "heads " << c.num_heads << "/" << c.num_kv_heads << " d "
                                    << c.head_size << " block " << c.block_size << " softcap "
                                    << c.softcap << " window " << c.window << " cache "
                                    << dtype_name(c.gpu_cache));
  AttentionRunner runner(gpu, cpu, c, 200, rng);
  // bf16 keys/values carry 8 significant bits; f32 caches agree to rounding.
  auto check = [&](const std::pair<std::vector<float>, std::vector<float>>& r, const char* what) {
    if (c.gpu_cache == DType::kBF16) {
      EXPECT_TRUE(rel_close(r.first, r.second, 1e-2)) << what;
      for (float x : r.first) ASSERT_FALSE(is_sentinel(x)) << what;
    } else {
      EXPECT_TRUE(close(r.first, r.second, 1e-4, 1e-4)) << what;
    }
  };
  // Step 1: prefills of different lengths (one spans several 128-key tiles).
  check(runner.step({1, 17, 300, 5}), "prefill");
  // Step 2: decode, chunked prefill continuation, a request left out (0 tokens), a new request.
  check(runner.step({1, 9, 0, 1, 40}), "mixed prefill + decode");
  // Step 3: decode everyone.
  check(runner.step({1, 1, 1, 1, 1}), "decode");
}

TEST_F(CudaOps, PagedAttentionF32CacheMixedBatches) {
  check_attention(gpu(), cpu_, {8, 2, 64, 16, 0.0f, -1, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {4, 4, 80, 5, 0.0f, -1, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {6, 1, 128, 16, 0.0f, -1, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {2, 1, 256, 32, 0.0f, -1, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {2, 2, 384, 16, 0.0f, -1, DType::kF32}, rng_);  // > 1 dim per thread
  check_attention(gpu(), cpu_, {8, 8, 32, 16, 0.0f, -1, DType::kF32}, rng_);   // 8 key groups
}

TEST_F(CudaOps, PagedAttentionBf16Cache) {
  // Prefill chunks of >= kFlashMinQueries tokens run on the tensor-core kernel for head sizes 64,
  // 128 and 256; other head sizes and short chunks on the CUDA-core one.
  check_attention(gpu(), cpu_, {8, 2, 64, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {9, 3, 64, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {4, 1, 128, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {2, 2, 256, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {4, 4, 80, 5, 0.0f, -1, DType::kBF16}, rng_);
}

TEST_F(CudaOps, DecodeAttentionEveryGroupSize) {
  // decode_attention serves groups of 1..8 query heads per KV head (templates 1, 2, 4, 8, the
  // odd sizes masked): Qwen2.5-0.5B's 7, SmolLM2's 3, Llama-3's 4.
  check_attention(gpu(), cpu_, {14, 2, 64, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {16, 2, 128, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {3, 1, 128, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {5, 1, 256, 16, 20.0f, 40, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {8, 8, 64, 32, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {9, 1, 64, 16, 0.0f, -1, DType::kBF16}, rng_);  // > 8: old kernel
  // Small heads (the tiny test checkpoints' 16): two and four lanes per key row.
  check_attention(gpu(), cpu_, {4, 2, 16, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {8, 1, 32, 16, 30.0f, 20, DType::kBF16}, rng_);
}

TEST_F(CudaOps, DecodeAttentionOutputFeedsTheNextLinear) {
  // Attention leaves a bf16 copy of its output for the output projection; a linear over the
  // output must equal one over its read-back values: prefill tiles, short chunks, decode with and
  // without split pieces.
  const AttnCase c{8, 2, 128, 16, 0.0f, -1, DType::kBF16};
  const int64_t qw = c.num_heads * c.head_size, out = 48;
  std::vector<uint8_t> bytes = random_weight(DType::kBF16, out, qw, rng_);
  std::vector<float> w_f32(out * qw);
  cpu::dequantize_row(DType::kBF16, bytes.data(), w_f32.data(), out * qw);
  Tensor wd = gpu().prepare_weight(Tensor::view(bytes.data(), DType::kBF16, {out, qw}));
  for (int64_t cached : {int64_t{3}, int64_t{1500}}) {
    AttentionRunner runner(gpu(), cpu_, c, 400, rng_);
    // A prefill (tensor-core tiles from 16 tokens) beside a short chunk, then decode.
    for (std::vector<int64_t> step : {std::vector<int64_t>{cached, 5}, {1, 1}}) {
      Tensor attn_out;
      runner.step(step, &attn_out);
      const int64_t t = attn_out.dim(0);
      Tensor y = poisoned({t, out});
      gpu().linear(attn_out, wd, nullptr, y);
      EXPECT_TRUE(rel_close(back(y), bf16_product(back(attn_out), w_f32, t, qw, out), 3e-5))
          << "context " << cached << ", " << t << " tokens";
    }
  }
}

TEST_F(CudaOps, PagedAttentionBf16SlidingWindowAndSoftcap) {
  check_attention(gpu(), cpu_, {4, 2, 64, 16, 0.0f, 7, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {4, 2, 128, 16, 0.0f, 70, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {4, 1, 128, 8, 30.0f, 33, DType::kBF16}, rng_);
  check_attention(gpu(), cpu_, {2, 1, 256, 32, 50.0f, -1, DType::kBF16}, rng_);
}

TEST_F(CudaOps, PagedAttentionSlidingWindowAndSoftcap) {
  check_attention(gpu(), cpu_, {4, 2, 64, 16, 0.0f, 7, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {4, 2, 64, 16, 0.0f, 200, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {4, 2, 64, 16, 5.0f, -1, DType::kF32}, rng_);
  check_attention(gpu(), cpu_, {4, 1, 96, 8, 30.0f, 33, DType::kF32}, rng_);
}

// Contexts past kSplitKeys (1024) and 2 * kSplitKeys: tokens attend in several pieces merged
// afterwards, next to short-context tokens in the same batch.
void check_long_attention(CudaBackend& gpu, cpu::CpuBackend& cpu, const AttnCase& c,
                          std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "long contexts: heads " << c.num_heads << "/"
                                    << c.num_kv_heads << " d " << c.head_size << " softcap "
                                    << c.softcap << " window " << c.window << " cache "
                                    << dtype_name(c.gpu_cache));
  AttentionRunner runner(gpu, cpu, c, 400, rng);
  auto check = [&](const std::pair<std::vector<float>, std::vector<float>>& r, const char* what) {
    if (c.gpu_cache == DType::kBF16) {
      EXPECT_TRUE(rel_close(r.first, r.second, 1e-2)) << what;
    } else {
      EXPECT_TRUE(close(r.first, r.second, 1e-4, 1e-4)) << what;
    }
  };
  check(runner.step({1100, 3}), "prefill across a piece boundary");
  check(runner.step({1, 1000, 2}), "decode at 1101, chunked prefill to 1003, a short prompt");
  check(runner.step({1, 1200, 1}), "chunked prefill past 2048");
  check(runner.step({1, 1, 1}), "decode");
}

TEST_F(CudaOps, PagedAttentionSplitAcrossLongContexts) {
  check_long_attention(gpu(), cpu_, {4, 2, 64, 16, 0.0f, -1, DType::kF32}, rng_);
  check_long_attention(gpu(), cpu_, {4, 2, 64, 16, 0.0f, 7, DType::kF32}, rng_);     // empty pieces
  check_long_attention(gpu(), cpu_, {4, 1, 128, 16, 0.0f, 1100, DType::kF32}, rng_);
  check_long_attention(gpu(), cpu_, {2, 2, 64, 16, 20.0f, -1, DType::kBF16}, rng_);
  check_long_attention(gpu(), cpu_, {4, 1, 128, 16, 0.0f, -1, DType::kBF16}, rng_);
  check_long_attention(gpu(), cpu_, {4, 2, 128, 16, 0.0f, 500, DType::kBF16}, rng_);
  // A window just under 1,024 keys at positions just past 1,024: the window's keys take more
  // pieces (16 of 64) than the position's would (9 of 128).
  check_long_attention(gpu(), cpu_, {4, 2, 128, 16, 0.0f, 1000, DType::kBF16}, rng_);
  check_long_attention(gpu(), cpu_, {4, 2, 16, 16, 0.0f, -1, DType::kBF16}, rng_);  // small heads
}

// decode_attention with fewer blocks than pieces per (token, KV head), each looping over its
// pieces (a recorded step's large batches), gives one block per piece's results bit for bit.
TEST_F(CudaOps, DecodeAttentionPieceLoopsMatchOneBlockPerPiece) {
  for (const char* stride : {"1", "3"}) {
    setenv("CVLLM_CUDA_DECODE_STRIDE", stride, 1);
    CudaBackend looping(0, 2, /*batch_invariant_gemm=*/true);
    unsetenv("CVLLM_CUDA_DECODE_STRIDE");
    for (const AttnCase& c : {AttnCase{4, 2, 128, 16, 0.0f, -1, DType::kBF16},
                              AttnCase{4, 1, 64, 16, 0.0f, 1000, DType::kBF16}}) {
      SCOPED_TRACE(::testing::Message() << "stride " << stride << " d " << c.head_size << " window "
                                        << c.window);
      std::mt19937 rng_one(seed_), rng_loop(seed_);
      AttentionRunner one(gpu(), cpu_, c, 400, rng_one), loop(looping, cpu_, c, 400, rng_loop);
      for (const std::vector<int64_t>& tokens :
           {std::vector<int64_t>{1100, 3}, {1, 1000, 2}, {1, 1, 1}}) {
        EXPECT_EQ(loop.step(tokens).first, one.step(tokens).first);
      }
    }
  }
}

// Small decode batches merge a token's pieces inside a thread-block cluster (shared memory read
// across the cluster); the global merge (partials in memory, the last block merges) must give the
// same bits: a token's result may not depend on which merge its batch size picked. Covers one
// piece, pieces split over the cluster's blocks one and two apiece, windows, and chunks beside
// prefill tiles.
TEST_F(CudaOps, DecodeAttentionClusterMergeMatchesGlobalMerge) {
  setenv("CVLLM_CUDA_DECODE_CLUSTER", "0", 1);
  CudaBackend global(0, 2, /*batch_invariant_gemm=*/true);
  unsetenv("CVLLM_CUDA_DECODE_CLUSTER");
  int64_t cluster_launches = 0;
  for (const AttnCase& c : {AttnCase{32, 8, 128, 16, 0.0f, -1, DType::kBF16},
                            AttnCase{4, 1, 64, 16, 0.0f, 1000, DType::kBF16},
                            AttnCase{5, 1, 256, 16, 20.0f, 40, DType::kBF16},
                            AttnCase{4, 2, 16, 16, 0.0f, -1, DType::kBF16}}) {
    SCOPED_TRACE(::testing::Message() << "heads " << c.num_heads << "/" << c.num_kv_heads << " d "
                                      << c.head_size << " window " << c.window);
    std::mt19937 rng_cluster(seed_), rng_global(seed_);
    AttentionRunner cluster(gpu(), cpu_, c, 400, rng_cluster), merged(global, cpu_, c, 400, rng_global);
    for (const std::vector<int64_t>& tokens :
         {std::vector<int64_t>{1100, 3, 40}, {1, 1000, 2, 1}, {1, 1, 1, 1}, {1, 1, 1, 5}}) {
      const int64_t before = decode_attention_cluster_launches();
      const auto [got, want] = cluster.step(tokens);
      cluster_launches += decode_attention_cluster_launches() - before;
      const int64_t before_global = decode_attention_cluster_launches();
      EXPECT_EQ(got, merged.step(tokens).first);
      EXPECT_EQ(decode_attention_cluster_launches(), before_global) << "the global runner clustered";
      EXPECT_TRUE(rel_close(got, want, 1e-2));
    }
  }
  // The cases of one or two KV heads decode a few tokens over several pieces: few enough
  // clusters of at most 16 blocks to be resident at once (Llama-3's 8 KV heads at 4 tokens may
  // not be, and take the global merge).
  EXPECT_GT(cluster_launches, 0) << "the cluster merge never ran: the comparison is vacuous";
}

TEST_F(CudaOps, PagedAttentionEmptyBatch) {
  AttnCase c{4, 2, 64, 16, 0.0f, -1, DType::kF32};
  AttentionRunner runner(gpu(), cpu_, c, 8, rng_);
  auto [got, want] = runner.step({});
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(want.empty());
}

}  // namespace
}  // namespace cvllm::cuda
