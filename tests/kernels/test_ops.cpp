// Backend-ops style tests for the element-wise and per-row CPU kernels (norm, rotary, activation)
// and for the CpuBackend adapter (embedding / gather_rows over every dtype, linear with bias, and
// the thin wrappers). Every op runs against a plain double-precision reference written here, on
// random inputs at odd sizes, empty and single-row batches included; every output sits between
// sentinel floats that must survive; no pool, one thread and two threads give identical bits.
// Paged attention has its own file (test_attention.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rotary.h"
#include "kernels/op_test_util.h"
#include "tensor/dtype.h"
#include "tensor/quant_blocks.h"
#include "tensor/tensor.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

using test::all_close;
using test::GuardedBuffer;
using test::random_normal;
using test::same_bits;

ThreadPool& pool1() {
  static ThreadPool pool(1);
  return pool;
}
ThreadPool& pool2() {
  static ThreadPool pool(2);
  return pool;
}
// No pool, a pool of one, a pool of two: the kernels must not depend on how rows are split.
std::vector<ThreadPool*> all_pools() {
  return {nullptr, &pool1(), &pool2()};
}

// ---------------------------------------------------------------------------------------------
// Norms

struct RowShape {
  int64_t num_tokens;
  int64_t hidden_size;
};
// 64 x 576 is past the kernels' threading threshold, so two threads really split it.
const RowShape kNormShapes[] = {{0, 17}, {1, 1}, {1, 3}, {5, 17}, {3, 576}, {9, 1}, {64, 576}};

std::vector<double> ref_rms_norm(const float* x, const float* w, int64_t num_tokens,
                                 int64_t hidden_size, double eps, double weight_offset) {
  std::vector<double> y(num_tokens * hidden_size);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* xr = x + t * hidden_size;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < hidden_size; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    double inv_rms = 1.0 / std::sqrt(sum_sq / hidden_size + eps);
    for (int64_t i = 0; i < hidden_size; ++i) {
      y[t * hidden_size + i] = xr[i] * inv_rms * (w[i] + weight_offset);
    }
  }
  return y;
}

std::vector<double> ref_layer_norm(const float* x, const float* w, const float* b,
                                   int64_t num_tokens, int64_t hidden_size, double eps) {
  std::vector<double> y(num_tokens * hidden_size);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* xr = x + t * hidden_size;
    double mean = 0.0;
    for (int64_t i = 0; i < hidden_size; ++i) mean += xr[i];
    mean /= hidden_size;
    double var = 0.0;
    for (int64_t i = 0; i < hidden_size; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= hidden_size;
    for (int64_t i = 0; i < hidden_size; ++i) {
      y[t * hidden_size + i] = (xr[i] - mean) / std::sqrt(var + eps) * w[i] + (b ? b[i] : 0.0);
    }
  }
  return y;
}

TEST(RmsNorm, MatchesReference) {
  std::mt19937 rng(1);
  for (const RowShape& s : kNormShapes) {
    for (float weight_offset : {0.0f, 1.0f}) {
      for (float x_scale : {2.0f, 1e-3f}) {  // tiny inputs make eps matter
        SCOPED_TRACE(testing::Message() << s.num_tokens << "x" << s.hidden_size << " offset "
                                        << weight_offset << " x_scale " << x_scale);
        const float eps = 1e-5f;
        const int64_t n = s.num_tokens * s.hidden_size;
        std::vector<float> x = random_normal(n, rng, x_scale);
        std::vector<float> w = random_normal(s.hidden_size, rng, 0.5f, 1.0f - weight_offset);
        std::vector<double> ref =
            ref_rms_norm(x.data(), w.data(), s.num_tokens, s.hidden_size, eps, weight_offset);
        std::vector<float> first;
        for (ThreadPool* pool : all_pools()) {
          GuardedBuffer y(n);
          rms_norm(x.data(), w.data(), y.data(), s.num_tokens, s.hidden_size, eps, pool,
                   weight_offset);
          EXPECT_TRUE(y.guards_intact());
          EXPECT_TRUE(all_close(y.data(), ref, 1e-6, 1e-5));
          if (first.empty()) first = y.values();
          EXPECT_TRUE(same_bits(first.data(), y.data(), n));
          // y may alias x.
          GuardedBuffer inplace(x);
          rms_norm(inplace.data(), w.data(), inplace.data(), s.num_tokens, s.hidden_size, eps, pool,
                   weight_offset);
          EXPECT_TRUE(inplace.guards_intact());
          EXPECT_TRUE(same_bits(first.data(), inplace.data(), n));
        }
      }
    }
  }
}

TEST(AddRmsNorm, UpdatesResidualAndNormalizes) {
  std::mt19937 rng(2);
  for (const RowShape& s : kNormShapes) {
    for (float weight_offset : {0.0f, 1.0f}) {
      SCOPED_TRACE(testing::Message()
                   << s.num_tokens << "x" << s.hidden_size << " offset " << weight_offset);
      const float eps = 1e-6f;
      const int64_t n = s.num_tokens * s.hidden_size;
      std::vector<float> x = random_normal(n, rng, 1.5f);
      std::vector<float> residual = random_normal(n, rng, 3.0f);
      std::vector<float> w = random_normal(s.hidden_size, rng, 0.5f, 1.0f - weight_offset);
      std::vector<float> new_residual(n);
      for (int64_t i = 0; i < n; ++i) new_residual[i] = residual[i] + x[i];  // the f32 add
      std::vector<double> ref = ref_rms_norm(new_residual.data(), w.data(), s.num_tokens,
                                             s.hidden_size, eps, weight_offset);
      std::vector<float> first;
      for (ThreadPool* pool : all_pools()) {
        GuardedBuffer res(residual);
        GuardedBuffer y(n);
        add_rms_norm(x.data(), res.data(), w.data(), y.data(), s.num_tokens, s.hidden_size, eps,
                     pool, weight_offset);
        EXPECT_TRUE(res.guards_intact());
        EXPECT_TRUE(y.guards_intact());
        EXPECT_TRUE(same_bits(new_residual.data(), res.data(), n));
        EXPECT_TRUE(all_close(y.data(), ref, 1e-6, 1e-5));
        if (first.empty()) first = y.values();
        EXPECT_TRUE(same_bits(first.data(), y.data(), n));
      }
    }
  }
}

TEST(LayerNorm, MatchesReferenceWithAndWithoutBias) {
  std::mt19937 rng(3);
  for (const RowShape& s : kNormShapes) {
    for (bool with_bias : {false, true}) {
      for (float mean : {0.0f, 4.0f}) {  // an offset mean checks the variance is centred
        SCOPED_TRACE(testing::Message() << s.num_tokens << "x" << s.hidden_size << " bias "
                                        << with_bias << " mean " << mean);
        const float eps = 1e-5f;
        const int64_t n = s.num_tokens * s.hidden_size;
        std::vector<float> x = random_normal(n, rng, 1.0f, mean);
        std::vector<float> w = random_normal(s.hidden_size, rng, 0.5f, 1.0f);
        std::vector<float> b = random_normal(s.hidden_size, rng, 0.5f);
        const float* bias = with_bias ? b.data() : nullptr;
        std::vector<double> ref =
            ref_layer_norm(x.data(), w.data(), bias, s.num_tokens, s.hidden_size, eps);
        std::vector<float> first;
        for (ThreadPool* pool : all_pools()) {
          GuardedBuffer y(n);
          layer_norm(x.data(), w.data(), bias, y.data(), s.num_tokens, s.hidden_size, eps, pool);
          EXPECT_TRUE(y.guards_intact());
          EXPECT_TRUE(all_close(y.data(), ref, 1e-5, 1e-5));
          if (first.empty()) first = y.values();
          EXPECT_TRUE(same_bits(first.data(), y.data(), n));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Rotary

std::vector<float> make_inv_freq(int64_t rot_dim, double base) {
  std::vector<float> inv_freq(rot_dim / 2);
  for (int64_t i = 0; i < rot_dim / 2; ++i) {
    inv_freq[i] = static_cast<float>(1.0 / std::pow(base, 2.0 * i / rot_dim));
  }
  return inv_freq;
}

// Rotates pairs of each head of x [num_tokens, num_heads, head_size]: NeoX pairs (i, i + rot/2),
// interleaved pairs (2i, 2i+1), both by angle pos * inv_freq[i]. The angle is the f32 product,
// the convention of the reference implementations (HF builds f32 `freqs`); the rest is double.
std::vector<double> ref_rope(const std::vector<float>& x, const std::vector<int32_t>& positions,
                             int64_t num_heads, int64_t head_size, int64_t rot_dim,
                             const std::vector<float>& inv_freq, bool neox, double mscale) {
  std::vector<double> y(x.begin(), x.end());
  const int64_t half = rot_dim / 2;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int64_t h = 0; h < num_heads; ++h) {
      double* head = y.data() + (t * num_heads + h) * head_size;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        const double c = std::cos(static_cast<double>(angle)) * mscale;
        const double s = std::sin(static_cast<double>(angle)) * mscale;
        const int64_t a = neox ? i : 2 * i;
        const int64_t b = neox ? i + half : 2 * i + 1;
        const double xa = head[a], xb = head[b];
        head[a] = xa * c - xb * s;
        head[b] = xb * c + xa * s;
      }
    }
  }
  return y;
}

// The GGUF converter's permutation of llama Q/K weight rows, applied to activations
// x [num_tokens, num_heads, head_size]: within each head, dims (i, i + d/2) move to (2i, 2i+1).
std::vector<float> gguf_permute(const std::vector<float>& x, int64_t head_size) {
  std::vector<float> y(x.size());
  const int64_t half = head_size / 2;
  for (size_t base = 0; base < x.size(); base += head_size) {
    for (int64_t i = 0; i < half; ++i) {
      y[base + 2 * i] = x[base + i];
      y[base + 2 * i + 1] = x[base + i + half];
    }
  }
  return y;
}

struct HeadConfig {
  int64_t num_heads;
  int64_t num_kv_heads;
};
const HeadConfig kHeadConfigs[] = {{1, 1}, {4, 2}, {9, 3}, {8, 1}};
const int64_t kHeadSizes[] = {32, 64, 80, 128};

std::vector<int32_t> random_positions(int64_t num_tokens, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> dist(0, 8191);
  std::vector<int32_t> positions(num_tokens);
  for (auto& p : positions) p = dist(rng);
  if (num_tokens > 0) positions[0] = 0;
  if (num_tokens > 2) positions[2] = 131071;  // a long context: large angles
  return positions;
}

TEST(Rotary, BothLayoutsMatchFormula) {
  std::mt19937 rng(4);
  for (int64_t num_tokens : {0, 1, 3, 20}) {  // 20 tokens are split across threads
    for (const HeadConfig& hc : kHeadConfigs) {
      for (int64_t head_size : kHeadSizes) {
        // Full rotary and partial rotary (80 -> 32 is Phi's 0.4 factor).
        for (int64_t rot_dim : {head_size, head_size == 80 ? int64_t{32} : head_size / 2}) {
          for (RopeLayout layout : {RopeLayout::kNeox, RopeLayout::kInterleaved}) {
            const bool neox = layout == RopeLayout::kNeox;
            const float mscale = rot_dim == head_size ? 1.0f : 1.2f;
            SCOPED_TRACE(testing::Message()
                         << "T=" << num_tokens << " heads " << hc.num_heads << "/"
                         << hc.num_kv_heads << " d=" << head_size << " rot=" << rot_dim
                         << (neox ? " neox" : " interleaved"));
            std::vector<float> inv_freq = make_inv_freq(rot_dim, neox ? 10000.0 : 500000.0);
            std::vector<int32_t> positions = random_positions(num_tokens, rng);
            const int64_t nq = num_tokens * hc.num_heads * head_size;
            const int64_t nk = num_tokens * hc.num_kv_heads * head_size;
            std::vector<float> q = random_normal(nq, rng);
            std::vector<float> k = random_normal(nk, rng);
            std::vector<double> ref_q =
                ref_rope(q, positions, hc.num_heads, head_size, rot_dim, inv_freq, neox, mscale);
            std::vector<double> ref_k =
                ref_rope(k, positions, hc.num_kv_heads, head_size, rot_dim, inv_freq, neox, mscale);
            std::vector<float> first_q, first_k;
            for (ThreadPool* pool : all_pools()) {
              GuardedBuffer gq(q), gk(k);
              apply_rotary(gq.data(), gk.data(), positions.data(), num_tokens, hc.num_heads,
                           hc.num_kv_heads, head_size, rot_dim, inv_freq.data(), layout, mscale,
                           pool);
              EXPECT_TRUE(gq.guards_intact());
              EXPECT_TRUE(gk.guards_intact());
              EXPECT_TRUE(all_close(gq.data(), ref_q, 3e-6, 3e-6));
              EXPECT_TRUE(all_close(gk.data(), ref_k, 3e-6, 3e-6));
              // Dims past rot_dim pass through untouched.
              for (int64_t i = 0; i < nq; ++i) {
                if (i % head_size >= rot_dim) {
                  ASSERT_EQ(gq.data()[i], q[i]) << i;
                }
              }
              if (first_q.empty() && nq > 0) {
                first_q = gq.values();
                first_k = gk.values();
              } else if (nq > 0) {
                EXPECT_TRUE(same_bits(first_q.data(), gq.data(), nq));
                EXPECT_TRUE(same_bits(first_k.data(), gk.data(), nk));
              }
            }
          }
        }
      }
    }
  }
}

// GGUF llama checkpoints store Q/K weight rows permuted so that interleaved RoPE reproduces HF's
// NeoX RoPE: interleaved(P x) == P neox(x). The loader relies on this (and since q.k is invariant
// under the same permutation of both, attention scores match the HF model).
TEST(Rotary, InterleavedOnGgufPermutedRowsEqualsNeox) {
  std::mt19937 rng(5);
  const int64_t num_tokens = 13;
  for (const HeadConfig& hc : kHeadConfigs) {
    for (int64_t head_size : kHeadSizes) {
      SCOPED_TRACE(testing::Message()
                   << "heads " << hc.num_heads << "/" << hc.num_kv_heads << " d=" << head_size);
      std::vector<float> inv_freq = make_inv_freq(head_size, 10000.0);
      std::vector<int32_t> positions = random_positions(num_tokens, rng);
      std::vector<float> q = random_normal(num_tokens * hc.num_heads * head_size, rng);
      std::vector<float> k = random_normal(num_tokens * hc.num_kv_heads * head_size, rng);

      std::vector<float> q_neox = q, k_neox = k;
      apply_rotary(q_neox.data(), k_neox.data(), positions.data(), num_tokens, hc.num_heads,
                   hc.num_kv_heads, head_size, head_size, inv_freq.data(), RopeLayout::kNeox, 1.0f,
                   &pool2());
      std::vector<float> q_perm = gguf_permute(q, head_size);
      std::vector<float> k_perm = gguf_permute(k, head_size);
      apply_rotary(q_perm.data(), k_perm.data(), positions.data(), num_tokens, hc.num_heads,
                   hc.num_kv_heads, head_size, head_size, inv_freq.data(), RopeLayout::kInterleaved,
                   1.0f, &pool2());

      // Exact in real arithmetic; f32 leaves room only for a differently vectorized layout.
      std::vector<float> want_q = gguf_permute(q_neox, head_size);
      std::vector<float> want_k = gguf_permute(k_neox, head_size);
      EXPECT_TRUE(
          all_close(q_perm.data(), std::vector<double>(want_q.begin(), want_q.end()), 1e-6, 1e-6));
      EXPECT_TRUE(
          all_close(k_perm.data(), std::vector<double>(want_k.begin(), want_k.end()), 1e-6, 1e-6));
      // And the property the model needs: per-head q.k is the same either way.
      const int64_t group = hc.num_heads / hc.num_kv_heads;
      for (int64_t t = 0; t < num_tokens; ++t) {
        for (int64_t h = 0; h < hc.num_heads; ++h) {
          const int64_t qo = (t * hc.num_heads + h) * head_size;
          const int64_t ko = (t * hc.num_kv_heads + h / group) * head_size;
          double hf = 0.0, gguf = 0.0;
          for (int64_t i = 0; i < head_size; ++i) {
            hf += static_cast<double>(q_neox[qo + i]) * k_neox[ko + i];
            gguf += static_cast<double>(q_perm[qo + i]) * k_perm[ko + i];
          }
          EXPECT_NEAR(hf, gguf, 1e-4);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activations

double ref_silu(double x) {
  return x / (1.0 + std::exp(-x));
}
double ref_gelu_tanh(double x) {
  const double k = std::sqrt(2.0 / std::numbers::pi);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}
double ref_gelu(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double ref_relu(double x) {
  return x > 0.0 ? x : 0.0;
}

// Random inputs with the awkward values up front: signed zeros, denormal-sized, saturating.
std::vector<float> activation_inputs(int64_t n, std::mt19937& rng) {
  std::vector<float> x = random_normal(n, rng, 3.0f);
  const float specials[] = {0.0f,   -0.0f,  1e-30f,  -1e-30f, 20.0f, -20.0f, 88.7f,
                            -88.7f, 100.0f, -100.0f, 1e4f,    -1e4f, 5.5f,   -5.5f};
  for (size_t i = 0; i < std::size(specials) && i < x.size(); ++i) x[i] = specials[i];
  return x;
}

// f32 evaluation of these functions loses a few ulps of the intermediates, whose size is that of
// the input (1 + tanh(...) cancels for negative x), so the bound scales with |x| * |up|.
::testing::AssertionResult activation_close(const float* got, const std::vector<double>& ref,
                                            const std::vector<float>& x,
                                            const std::vector<float>* up) {
  for (size_t i = 0; i < ref.size(); ++i) {
    const double scale = std::fabs(x[i]) * (up ? std::fabs((*up)[i]) : 1.0);
    const double tol = 1e-6 * scale + 1e-6 * std::fabs(ref[i]);  // 0 where x or up is 0
    if (!(std::fabs(got[i] - ref[i]) <= tol)) {
      return ::testing::AssertionFailure()
             << "element " << i << " x=" << x[i] << ": got " << got[i] << " want " << ref[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// 17 x 1000 is past the threading threshold.
const RowShape kActivationShapes[] = {{0, 5}, {1, 1}, {3, 17}, {7, 576}, {17, 1000}};

TEST(Activation, GatedMatchReference) {
  std::mt19937 rng(6);
  for (const RowShape& s : kActivationShapes) {
    for (bool gelu_gate : {false, true}) {
      SCOPED_TRACE(testing::Message() << s.num_tokens << "x" << s.hidden_size
                                      << (gelu_gate ? " gelu_tanh_mul" : " silu_mul"));
      const int64_t n = s.num_tokens * s.hidden_size;
      std::vector<float> gate = activation_inputs(n, rng);
      std::vector<float> up = random_normal(n, rng, 2.0f);
      std::vector<double> ref(n);
      for (int64_t i = 0; i < n; ++i) {
        ref[i] = (gelu_gate ? ref_gelu_tanh(gate[i]) : ref_silu(gate[i])) * up[i];
      }
      auto op = gelu_gate ? gelu_tanh_mul : silu_mul;
      std::vector<float> first;
      for (ThreadPool* pool : all_pools()) {
        GuardedBuffer out(n);
        op(gate.data(), up.data(), out.data(), s.num_tokens, s.hidden_size, pool);
        EXPECT_TRUE(out.guards_intact());
        EXPECT_TRUE(activation_close(out.data(), ref, gate, &up));
        if (first.empty()) first = out.values();
        EXPECT_TRUE(same_bits(first.data(), out.data(), n));
        // out may alias gate.
        GuardedBuffer inplace(gate);
        op(inplace.data(), up.data(), inplace.data(), s.num_tokens, s.hidden_size, pool);
        EXPECT_TRUE(inplace.guards_intact());
        EXPECT_TRUE(same_bits(first.data(), inplace.data(), n));
      }
    }
  }
}

TEST(Activation, NonGatedMatchReference) {
  std::mt19937 rng(7);
  struct Op {
    const char* name;
    void (*kernel)(const float*, float*, int64_t, ThreadPool*);
    double (*ref)(double);
  };
  const Op ops[] = {
      {"gelu", gelu, ref_gelu}, {"gelu_tanh", gelu_tanh, ref_gelu_tanh}, {"relu", relu, ref_relu}};
  for (const Op& op : ops) {
    for (int64_t n : {0, 1, 3, 17, 576, 20000}) {
      SCOPED_TRACE(testing::Message() << op.name << " n=" << n);
      std::vector<float> x = activation_inputs(n, rng);
      std::vector<double> ref(n);
      for (int64_t i = 0; i < n; ++i) ref[i] = op.ref(x[i]);
      std::vector<float> first;
      for (ThreadPool* pool : all_pools()) {
        GuardedBuffer out(n);
        op.kernel(x.data(), out.data(), n, pool);
        EXPECT_TRUE(out.guards_intact());
        EXPECT_TRUE(activation_close(out.data(), ref, x, nullptr));
        if (first.empty()) first = out.values();
        EXPECT_TRUE(same_bits(first.data(), out.data(), n));
        // out may alias x.
        GuardedBuffer inplace(x);
        op.kernel(inplace.data(), inplace.data(), n, pool);
        EXPECT_TRUE(inplace.guards_intact());
        EXPECT_TRUE(same_bits(first.data(), inplace.data(), n));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CpuBackend adapter

double half_bits_to_double(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<double>(h);
}

uint16_t double_to_half_bits(double v) {
  _Float16 h = static_cast<_Float16>(v);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

// A random [rows, cols] table in `dtype` and, for the types simple enough to decode here, its
// values decoded independently of kernels/cpu/dequantize.cpp (empty otherwise).
struct Table {
  std::vector<uint8_t> bytes;
  std::vector<double> values;  // [rows, cols] or empty
};

Table random_table(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  Table t;
  const size_t row_bytes = row_size(dtype, cols);
  t.bytes.resize(row_bytes * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : t.bytes) b = static_cast<uint8_t>(byte(rng));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  const int64_t n = rows * cols;
  switch (dtype) {
    case DType::kF32:
      t.values.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        const float v = normal(rng);
        std::memcpy(t.bytes.data() + 4 * i, &v, 4);
        t.values[i] = v;
      }
      break;
    case DType::kF16:
      t.values.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = double_to_half_bits(normal(rng));
        std::memcpy(t.bytes.data() + 2 * i, &h, 2);
        t.values[i] = half_bits_to_double(h);
      }
      break;
    case DType::kBF16:
      t.values.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        const float v = normal(rng);
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        const uint16_t h = static_cast<uint16_t>(bits >> 16);  // truncation: any bf16 will do
        std::memcpy(t.bytes.data() + 2 * i, &h, 2);
        const uint32_t back = static_cast<uint32_t>(h) << 16;
        float f;
        std::memcpy(&f, &back, 4);
        t.values[i] = f;
      }
      break;
    case DType::kQ8_0: {  // x = d * qs[j]
      t.values.resize(n);
      auto* blocks = reinterpret_cast<BlockQ8_0*>(t.bytes.data());
      for (int64_t b = 0; b < n / kQK8_0; ++b) {
        blocks[b].d = double_to_half_bits(scale(rng));
        for (int j = 0; j < kQK8_0; ++j) {
          t.values[b * kQK8_0 + j] = half_bits_to_double(blocks[b].d) * blocks[b].qs[j];
        }
      }
      break;
    }
    case DType::kQ4_1: {  // x = d * nibble + m; element j low nibble of qs[j], j+16 high nibble
      t.values.resize(n);
      auto* blocks = reinterpret_cast<BlockQ4_1*>(t.bytes.data());
      for (int64_t b = 0; b < n / kQK4_1; ++b) {
        blocks[b].d = double_to_half_bits(scale(rng));
        blocks[b].m = double_to_half_bits(-8.0 * scale(rng));
        const double d = half_bits_to_double(blocks[b].d), m = half_bits_to_double(blocks[b].m);
        for (int j = 0; j < kQK4_1 / 2; ++j) {
          t.values[b * kQK4_1 + j] = d * (blocks[b].qs[j] & 0x0F) + m;
          t.values[b * kQK4_1 + j + 16] = d * (blocks[b].qs[j] >> 4) + m;
        }
      }
      break;
    }
    default: {  // K-quants etc.: give every f16 scale a sane value, decode with dequantize_row
      for (size_t off = 0; off + 1 < t.bytes.size(); off += 2) {
        uint16_t h;
        std::memcpy(&h, t.bytes.data() + off, 2);
        if ((h & 0x7C00) == 0x7C00) t.bytes[off + 1] &= 0x83;  // no inf/NaN halves anywhere
      }
      break;
    }
  }
  return t;
}

TEST(CpuBackendGather, EveryDtypeMatchesReference) {
  std::mt19937 rng(8);
  CpuBackend backend(2, MatmulPath::kReference);
  const DType dtypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0, DType::kQ4_1,
                          DType::kQ4_0, DType::kQ5_0, DType::kQ5_1, DType::kQ2_K, DType::kQ3_K,
                          DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
  const int64_t num_rows = 11;
  for (DType dtype : dtypes) {
    const int64_t block = traits(dtype).block_size;
    for (int64_t cols : {block == 1 ? int64_t{3} : block, block == 1 ? int64_t{576} : 3 * block}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " cols=" << cols);
      Table table = random_table(dtype, num_rows, cols, rng);
      Tensor src = Tensor::view(table.bytes.data(), dtype, {num_rows, cols});
      const size_t row_bytes = row_size(dtype, cols);
      for (std::vector<int32_t> rows : {std::vector<int32_t>{}, std::vector<int32_t>{10},
                                        std::vector<int32_t>{3, 0, 10, 3, 7}}) {
        const int64_t n = static_cast<int64_t>(rows.size()) * cols;
        GuardedBuffer out_buf(n);
        Tensor out =
            Tensor::view(out_buf.data(), DType::kF32, {static_cast<int64_t>(rows.size()), cols});
        backend.gather_rows(src, rows, out);
        EXPECT_TRUE(out_buf.guards_intact());
        for (size_t i = 0; i < rows.size(); ++i) {
          if (!table.values.empty()) {
            std::vector<double> want(table.values.begin() + rows[i] * cols,
                                     table.values.begin() + (rows[i] + 1) * cols);
            EXPECT_TRUE(all_close(out_buf.data() + i * cols, want, 0.0, 1e-7)) << "row " << i;
          } else {
            std::vector<float> want(cols);
            dequantize_row(dtype, table.bytes.data() + rows[i] * row_bytes, want.data(), cols);
            EXPECT_TRUE(same_bits(want.data(), out_buf.data() + i * cols, cols)) << "row " << i;
          }
        }
      }
    }
  }
}

TEST(CpuBackendGather, RejectsBadRowsAndShapes) {
  CpuBackend backend(1, MatmulPath::kReference);
  std::vector<float> table(5 * 4, 1.0f);
  Tensor src = Tensor::view(table.data(), DType::kF32, {5, 4});
  Tensor out = Tensor::empty(DType::kF32, {1, 4});
  EXPECT_THROW(backend.gather_rows(src, {5}, out), Error);
  EXPECT_THROW(backend.gather_rows(src, {-1}, out), Error);
  EXPECT_THROW(backend.gather_rows(src, {0, 1}, out), Error);  // out has room for one row
}

TEST(CpuBackendEmbedding, GathersInputIds) {
  std::mt19937 rng(9);
  CpuBackend backend(2, MatmulPath::kFast);
  const int64_t vocab = 37, hidden = 64;
  Table table = random_table(DType::kQ8_0, vocab, hidden, rng);
  Tensor src = Tensor::view(table.bytes.data(), DType::kQ8_0, {vocab, hidden});
  for (std::vector<int32_t> ids : {std::vector<int32_t>{}, std::vector<int32_t>{36},
                                   std::vector<int32_t>{5, 0, 5, 36, 12, 1, 2}}) {
    ForwardBatch batch;
    batch.input_ids = ids;
    std::unique_ptr<StepMetadata> step = backend.prepare_step(batch);
    GuardedBuffer out_buf(static_cast<int64_t>(ids.size()) * hidden);
    Tensor out = Tensor::view(out_buf.data(), DType::kF32, {batch.num_tokens(), hidden});
    backend.embedding(src, *step, out);
    EXPECT_TRUE(out_buf.guards_intact());
    for (size_t i = 0; i < ids.size(); ++i) {
      std::vector<double> want(table.values.begin() + ids[i] * hidden,
                               table.values.begin() + (ids[i] + 1) * hidden);
      EXPECT_TRUE(all_close(out_buf.data() + i * hidden, want, 0.0, 1e-7)) << "token " << i;
    }
  }
}

// The non-gated ops models call (OPT's relu, GPT-2's gelu_tanh) reach the kernels, in place too,
// and reject a size mismatch.
TEST(CpuBackendActivation, NonGatedOpsMatchReference) {
  std::mt19937 rng(12);
  CpuBackend backend(2, MatmulPath::kReference);
  const int64_t rows = 3, cols = 40;
  std::vector<float> x = activation_inputs(rows * cols, rng);
  for (bool relu_op : {true, false}) {
    std::vector<double> ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) ref[i] = relu_op ? ref_relu(x[i]) : ref_gelu_tanh(x[i]);
    GuardedBuffer out(rows * cols);
    Tensor xt = Tensor::view(x.data(), DType::kF32, {rows, cols});
    Tensor yt = Tensor::view(out.data(), DType::kF32, {rows, cols});
    relu_op ? backend.relu(xt, yt) : backend.gelu_tanh(xt, yt);
    EXPECT_TRUE(out.guards_intact());
    EXPECT_TRUE(activation_close(out.data(), ref, x, nullptr)) << (relu_op ? "relu" : "gelu_tanh");
    GuardedBuffer inplace(x);
    Tensor it = Tensor::view(inplace.data(), DType::kF32, {rows, cols});
    relu_op ? backend.relu(it, it) : backend.gelu_tanh(it, it);
    EXPECT_TRUE(same_bits(out.data(), inplace.data(), rows * cols));
    Tensor small = Tensor::view(out.data(), DType::kF32, {rows, cols - 1});
    EXPECT_THROW(relu_op ? backend.relu(xt, small) : backend.gelu_tanh(xt, small), Error);
  }
}

TEST(CpuBackendLinear, WithAndWithoutBiasMatchesReference) {
  std::mt19937 rng(10);
  for (MatmulPath path : {MatmulPath::kReference, MatmulPath::kFast}) {
    CpuBackend backend(2, path);
    for (DType dtype : {DType::kF32, DType::kF16, DType::kQ8_0}) {
      for (int64_t in : {int64_t{32}, int64_t{96}}) {
        for (int64_t out_features : {1, 3, 33}) {
          for (int64_t num_tokens : {0, 1, 5}) {
            for (bool with_bias : {false, true}) {
              SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " [" << out_features << ", "
                                              << in << "] T=" << num_tokens << " bias " << with_bias
                                              << " fast " << (path == MatmulPath::kFast));
              Table w = random_table(dtype, out_features, in, rng);
              std::vector<float> x = random_normal(num_tokens * in, rng);
              std::vector<float> b = random_normal(out_features, rng);
              GuardedBuffer y_buf(num_tokens * out_features);
              Tensor xt = Tensor::view(x.data(), DType::kF32, {num_tokens, in});
              Tensor wt = Tensor::view(w.bytes.data(), dtype, {out_features, in});
              Tensor bt = Tensor::view(b.data(), DType::kF32, {out_features});
              Tensor yt = Tensor::view(y_buf.data(), DType::kF32, {num_tokens, out_features});
              backend.linear(xt, wt, with_bias ? &bt : nullptr, yt);
              EXPECT_TRUE(y_buf.guards_intact());
              // The fast path rounds activations to 8 bits for Q8_0 (its own test bounds that);
              // here the question is only whether the product and the bias land right.
              const double rel = (path == MatmulPath::kFast && dtype == DType::kQ8_0) ? 2e-2 : 1e-5;
              for (int64_t t = 0; t < num_tokens; ++t) {
                for (int64_t o = 0; o < out_features; ++o) {
                  double dot = 0.0, mag = 0.0;
                  for (int64_t i = 0; i < in; ++i) {
                    dot += w.values[o * in + i] * x[t * in + i];
                    mag += std::fabs(w.values[o * in + i] * x[t * in + i]);
                  }
                  const double want = dot + (with_bias ? b[o] : 0.0);
                  EXPECT_NEAR(y_buf.data()[t * out_features + o], want, rel * mag + 1e-6)
                      << "t=" << t << " o=" << o;
                }
              }
            }
          }
        }
      }
    }
  }
}

// linear_many (q/k/v, gate/up sharing one input) gives what one linear per weight gives.
TEST(CpuBackendLinear, ManyEqualsOneByOne) {
  std::mt19937 rng(13);
  for (MatmulPath path : {MatmulPath::kReference, MatmulPath::kFast}) {
    CpuBackend backend(2, path);
    const int64_t in = 64;
    const DType dtypes[] = {DType::kQ8_0, DType::kQ4_1, DType::kF16};
    const int64_t outs[] = {17, 1, 40};
    std::vector<Table> tables;
    std::vector<Tensor> weights;
    for (int i = 0; i < 3; ++i) tables.push_back(random_table(dtypes[i], outs[i], in, rng));
    for (int i = 0; i < 3; ++i) {
      weights.push_back(Tensor::view(tables[i].bytes.data(), dtypes[i], {outs[i], in}));
    }
    for (int64_t num_tokens : {0, 1, 5}) {
      SCOPED_TRACE(testing::Message()
                   << "T=" << num_tokens << " fast " << (path == MatmulPath::kFast));
      std::vector<float> x = random_normal(num_tokens * in, rng);
      Tensor xt = Tensor::view(x.data(), DType::kF32, {num_tokens, in});
      std::vector<GuardedBuffer> many, single;
      std::vector<Tensor> many_t;
      for (int i = 0; i < 3; ++i) {
        many.emplace_back(num_tokens * outs[i]);
        single.emplace_back(num_tokens * outs[i]);
      }
      for (int i = 0; i < 3; ++i) {
        many_t.push_back(Tensor::view(many[i].data(), DType::kF32, {num_tokens, outs[i]}));
        Tensor yt = Tensor::view(single[i].data(), DType::kF32, {num_tokens, outs[i]});
        backend.linear(xt, weights[i], nullptr, yt);
      }
      const Tensor* ws[3] = {&weights[0], &weights[1], &weights[2]};
      Tensor* ys[3] = {&many_t[0], &many_t[1], &many_t[2]};
      backend.linear_many(xt, ws, ys);
      for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(many[i].guards_intact());
        EXPECT_TRUE(same_bits(single[i].data(), many[i].data(), num_tokens * outs[i]));
      }
    }
  }
}

// The thin wrappers: shapes read from the tensors, results equal to the kernels' references.
TEST(CpuBackendOps, NormsActivationsAndAddMatchReference) {
  std::mt19937 rng(11);
  CpuBackend backend(2, MatmulPath::kReference);
  for (const RowShape& s : kNormShapes) {
    SCOPED_TRACE(testing::Message() << s.num_tokens << "x" << s.hidden_size);
    const int64_t n = s.num_tokens * s.hidden_size;
    const std::vector<int64_t> shape = {s.num_tokens, s.hidden_size};
    std::vector<float> x = random_normal(n, rng), r = random_normal(n, rng);
    std::vector<float> w = random_normal(s.hidden_size, rng, 0.3f, 1.0f);
    std::vector<float> b = random_normal(s.hidden_size, rng);
    Tensor xt = Tensor::view(x.data(), DType::kF32, shape);
    Tensor wt = Tensor::view(w.data(), DType::kF32, {s.hidden_size});
    Tensor bt = Tensor::view(b.data(), DType::kF32, {s.hidden_size});

    GuardedBuffer y(n);
    Tensor yt = Tensor::view(y.data(), DType::kF32, shape);
    backend.rms_norm(xt, wt, 1e-6f, yt, 1.0f);
    EXPECT_TRUE(all_close(y.data(),
                          ref_rms_norm(x.data(), w.data(), s.num_tokens, s.hidden_size, 1e-6, 1.0),
                          1e-6, 1e-5));

    GuardedBuffer res(r);
    Tensor rt = Tensor::view(res.data(), DType::kF32, shape);
    backend.add_rms_norm(xt, rt, wt, 1e-6f, yt, 0.0f);
    std::vector<float> new_r(n);
    for (int64_t i = 0; i < n; ++i) new_r[i] = r[i] + x[i];
    EXPECT_TRUE(same_bits(new_r.data(), res.data(), n));
    EXPECT_TRUE(all_close(
        y.data(), ref_rms_norm(new_r.data(), w.data(), s.num_tokens, s.hidden_size, 1e-6, 0.0),
        1e-6, 1e-5));

    backend.layer_norm(xt, wt, &bt, 1e-5f, yt);
    EXPECT_TRUE(all_close(
        y.data(), ref_layer_norm(x.data(), w.data(), b.data(), s.num_tokens, s.hidden_size, 1e-5),
        1e-5, 1e-5));

    std::vector<double> ref(n);
    backend.silu_mul(xt, rt, yt);
    for (int64_t i = 0; i < n; ++i) ref[i] = ref_silu(x[i]) * new_r[i];
    EXPECT_TRUE(activation_close(y.data(), ref, x, &new_r));
    backend.gelu_tanh_mul(xt, rt, yt);
    for (int64_t i = 0; i < n; ++i) ref[i] = ref_gelu_tanh(x[i]) * new_r[i];
    EXPECT_TRUE(activation_close(y.data(), ref, x, &new_r));

    backend.add(xt, rt);  // residual += x
    for (int64_t i = 0; i < n; ++i) new_r[i] += x[i];
    EXPECT_TRUE(same_bits(new_r.data(), res.data(), n));
    EXPECT_TRUE(y.guards_intact());
    EXPECT_TRUE(res.guards_intact());
  }
}

TEST(CpuBackendOps, RotaryReadsPositionsAndStyle) {
  std::mt19937 rng(12);
  CpuBackend backend(2, MatmulPath::kReference);
  const int64_t num_heads = 9, num_kv_heads = 3, head_size = 80, rot_dim = 32;
  std::vector<float> inv_freq = make_inv_freq(rot_dim, 10000.0);
  for (int64_t num_tokens : {0, 1, 11}) {
    for (RopeStyle style : {RopeStyle::kNeox, RopeStyle::kInterleaved}) {
      SCOPED_TRACE(testing::Message()
                   << "T=" << num_tokens << " neox " << (style == RopeStyle::kNeox));
      ForwardBatch batch;
      batch.input_ids.assign(num_tokens, 0);
      batch.positions = random_positions(num_tokens, rng);
      std::unique_ptr<StepMetadata> step = backend.prepare_step(batch);
      std::vector<float> q = random_normal(num_tokens * num_heads * head_size, rng);
      std::vector<float> k = random_normal(num_tokens * num_kv_heads * head_size, rng);
      GuardedBuffer gq(q), gk(k);
      Tensor qt = Tensor::view(gq.data(), DType::kF32, {num_tokens, num_heads * head_size});
      Tensor kt = Tensor::view(gk.data(), DType::kF32, {num_tokens, num_kv_heads * head_size});
      RopeParams rope;
      rope.head_size = head_size;
      rope.rot_dim = rot_dim;
      rope.style = style;
      rope.inv_freq = inv_freq.data();
      rope.mscale = 1.1f;
      backend.rotary(qt, kt, *step, rope);
      const bool neox = style == RopeStyle::kNeox;
      EXPECT_TRUE(all_close(
          gq.data(),
          ref_rope(q, batch.positions, num_heads, head_size, rot_dim, inv_freq, neox, 1.1), 3e-6,
          3e-6));
      EXPECT_TRUE(all_close(
          gk.data(),
          ref_rope(k, batch.positions, num_kv_heads, head_size, rot_dim, inv_freq, neox, 1.1), 3e-6,
          3e-6));
      EXPECT_TRUE(gq.guards_intact());
      EXPECT_TRUE(gk.guards_intact());
    }
  }
}

}  // namespace
}  // namespace cvllm::cpu
