// matmul(): argument checks, the reference path, the plain C++ integer path, and the dispatch that
// quantizes activations and splits the work over threads for whichever ISA's kernels run. The
// per-ISA kernels live in matmul_avx2.cpp and matmul_avx512.cpp; the canonical weight form they
// all share is described in matmul_internal.h.
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/matmul_internal.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"

namespace cvllm::cpu {
namespace internal {

bool quant_scheme(DType dtype, QuantScheme* s) {
  switch (dtype) {
    case DType::kQ4_0:
      *s = {32, 3, false};
      return true;
    case DType::kQ4_1:
      *s = {32, 0, true};
      return true;
    case DType::kQ5_0:
      *s = {32, 4, false};
      return true;
    case DType::kQ5_1:
      *s = {32, 0, true};
      return true;
    case DType::kQ8_0:
      *s = {32, 7, false};
      return true;
    case DType::kQ8_K:
      *s = {32, 7, false};
      return true;
    case DType::kQ2_K:
      *s = {16, 0, true};
      return true;
    case DType::kQ3_K:
      *s = {16, 2, false};
      return true;
    case DType::kQ4_K:
      *s = {32, 0, true};
      return true;
    case DType::kQ5_K:
      *s = {32, 0, true};
      return true;
    case DType::kQ6_K:
      *s = {16, 5, false};
      return true;
    default:
      return false;
  }
}

namespace {

// ---------------------------------------------------------------------------------------------
// Plain C++ integer path: decode a weight row into the canonical form (u, ws, mw), then integer
// dot products per sub-block. Also the model the SIMD kernels follow: one f32 accumulator per
// (row, token) taking the sub-blocks in order (the AVX-512 kernels do the same with fused
// multiply-adds), computed the same way for every token, so results are batch-invariant.

// u: [cols], ws and mw: [cols / S].
void decode_row_canonical(DType dtype, const uint8_t* row, int64_t cols, uint8_t* u, float* ws,
                          float* mw) {
  switch (dtype) {
    case DType::kQ4_0:
    case DType::kQ4_1: {
      const bool has_min = dtype == DType::kQ4_1;
      const size_t bytes = has_min ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
      for (int64_t b = 0; b < cols / 32; ++b, row += bytes, u += 32) {
        uint16_t d, m = 0;
        std::memcpy(&d, row, 2);
        if (has_min) std::memcpy(&m, row + 2, 2);
        const uint8_t* qs = row + (has_min ? 4 : 2);
        for (int j = 0; j < 16; ++j) {
          u[j] = qs[j] & 0x0F;
          u[j + 16] = qs[j] >> 4;
        }
        ws[b] = f16_to_f32(d);
        mw[b] = f16_to_f32(m);
      }
      return;
    }
    case DType::kQ5_0:
    case DType::kQ5_1: {
      const bool has_min = dtype == DType::kQ5_1;
      const size_t bytes = has_min ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
      for (int64_t b = 0; b < cols / 32; ++b, row += bytes, u += 32) {
        uint16_t d, m = 0;
        uint32_t qh;
        std::memcpy(&d, row, 2);
        if (has_min) std::memcpy(&m, row + 2, 2);
        const uint8_t* p = row + (has_min ? 4 : 2);
        std::memcpy(&qh, p, 4);
        const uint8_t* qs = p + 4;
        for (int j = 0; j < 16; ++j) {
          u[j] = static_cast<uint8_t>((qs[j] & 0x0F) | (((qh >> j) & 1) << 4));
          u[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        ws[b] = f16_to_f32(d);
        mw[b] = f16_to_f32(m);
      }
      return;
    }
    case DType::kQ8_0: {
      const auto* blk = reinterpret_cast<const BlockQ8_0*>(row);
      for (int64_t b = 0; b < cols / 32; ++b, u += 32) {
        for (int j = 0; j < 32; ++j) u[j] = static_cast<uint8_t>(blk[b].qs[j] ^ 0x80);
        ws[b] = f16_to_f32(blk[b].d);
        mw[b] = 0.0f;
      }
      return;
    }
    case DType::kQ8_K: {
      const auto* blk = reinterpret_cast<const BlockQ8_K*>(row);
      for (int64_t b = 0; b < cols / kQK_K; ++b, u += kQK_K) {
        for (int j = 0; j < kQK_K; ++j) u[j] = static_cast<uint8_t>(blk[b].qs[j] ^ 0x80);
        for (int j = 0; j < 8; ++j) ws[8 * b + j] = blk[b].d, mw[8 * b + j] = 0.0f;
      }
      return;
    }
    case DType::kQ2_K: {
      const auto* blk = reinterpret_cast<const BlockQ2_K*>(row);
      for (int64_t b = 0; b < cols / kQK_K; ++b, u += kQK_K, ws += 16, mw += 16) {
        const float d = f16_to_f32(blk[b].d), dmin = f16_to_f32(blk[b].dmin);
        for (int e = 0; e < kQK_K; ++e) {
          u[e] = (blk[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
        }
        for (int j = 0; j < 16; ++j) {
          ws[j] = d * static_cast<float>(blk[b].scales[j] & 0x0F);
          mw[j] = -(dmin * static_cast<float>(blk[b].scales[j] >> 4));
        }
      }
      return;
    }
    case DType::kQ3_K: {
      const auto* blk = reinterpret_cast<const BlockQ3_K*>(row);
      for (int64_t b = 0; b < cols / kQK_K; ++b, u += kQK_K, ws += 16, mw += 16) {
        const float d = f16_to_f32(blk[b].d);
        int8_t sc[16];
        q3_k_scales(blk[b].scales, sc);
        for (int e = 0; e < kQK_K; ++e) {
          const int low = (blk[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
          const int high = (blk[b].hmask[e % 32] >> (e / 32)) & 1;
          u[e] = static_cast<uint8_t>(low + 4 * high);
        }
        for (int j = 0; j < 16; ++j) ws[j] = d * static_cast<float>(sc[j]), mw[j] = 0.0f;
      }
      return;
    }
    case DType::kQ4_K:
    case DType::kQ5_K: {
      const bool five = dtype == DType::kQ5_K;
      const size_t bytes = five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
      for (int64_t b = 0; b < cols / kQK_K; ++b, row += bytes, u += kQK_K, ws += 8, mw += 8) {
        uint16_t d16, dmin16;
        std::memcpy(&d16, row, 2);
        std::memcpy(&dmin16, row + 2, 2);
        const float d = f16_to_f32(d16), dmin = f16_to_f32(dmin16);
        const uint8_t* scales = row + 4;
        const uint8_t* qh = five ? row + 16 : nullptr;
        const uint8_t* qs = row + (five ? 48 : 16);
        for (int j = 0; j < 8; ++j) {
          uint8_t sc, m;
          k_scale_min(scales, j, &sc, &m);
          ws[j] = d * static_cast<float>(sc);
          mw[j] = -(dmin * static_cast<float>(m));
          for (int l = 0; l < 32; ++l) {
            int v = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0F;
            if (five) v |= ((qh[l] >> j) & 1) << 4;
            u[32 * j + l] = static_cast<uint8_t>(v);
          }
        }
      }
      return;
    }
    case DType::kQ6_K: {
      const auto* blk = reinterpret_cast<const BlockQ6_K*>(row);
      for (int64_t b = 0; b < cols / kQK_K; ++b, u += kQK_K, ws += 16, mw += 16) {
        const float d = f16_to_f32(blk[b].d);
        for (int e = 0; e < kQK_K; ++e) {
          const int h = e / 128, r = e % 128;
          const int low = (blk[b].ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
          const int high = (blk[b].qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
          u[e] = static_cast<uint8_t>(low | (high << 4));
        }
        for (int j = 0; j < 16; ++j) ws[j] = d * static_cast<float>(blk[b].scales[j]), mw[j] = 0.0f;
      }
      return;
    }
    default:
      break;
  }
  throw Error(cat("matmul: no integer kernel for ", dtype_name(dtype)));
}

void matmul_q_scalar(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int s = job.scheme.sub_block;
  const int64_t num_sub = job.cols / s;
  thread_local std::vector<uint8_t> u;
  thread_local std::vector<float> ws, mw;
  u.resize(job.cols);
  ws.resize(num_sub);
  mw.resize(num_sub);
  for (int64_t r = r0; r < r1; ++r) {
    decode_row_canonical(job.dtype, job.w + r * job.row_bytes, job.cols, u.data(), ws.data(),
                         mw.data());
    for (int64_t t = t0; t < t1; ++t) {
      const ActRow a = act_row(job.act, job.act_base, t);
      float acc = 0.0f;
      for (int64_t j = 0; j < num_sub; ++j) {
        int32_t dot = 0;
        for (int i = 0; i < s; ++i) dot += u[j * s + i] * a.qs[j * s + i];
        if (job.scheme.offset_shift) dot += a.nsum[j] * (1 << job.scheme.offset_shift);
        acc += ws[j] * a.da[j] * static_cast<float>(dot);
        if (job.scheme.has_min) acc += mw[j] * a.sa[j];
      }
      job.y[t * job.rows + r] = acc;
    }
  }
}

// f32 dot product with 16 independent partial sums: accurate enough for the reference (the
// error grows with n/16, not n) and vectorizable without reassociation.
float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) acc[k] += a[i + k] * b[i + k];
  }
  for (int k = 0; i < n; ++i, ++k) acc[k] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2) {
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  }
  return acc[0];
}

// Dequantize each row once, dot it with every token.
void matmul_dequantized_rows(DType dtype, const uint8_t* w, size_t row_bytes, int64_t rows,
                             int64_t cols, const float* x, int64_t r0, int64_t r1, int64_t t0,
                             int64_t t1, float* y) {
  thread_local std::vector<float> row;
  row.resize(cols);
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(dtype, w + r * row_bytes, row.data(), cols);
    for (int64_t t = t0; t < t1; ++t) y[t * rows + r] = dot_f32(row.data(), x + t * cols, cols);
  }
}

void matmul_f_scalar(const FloatJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  matmul_dequantized_rows(job.dtype, job.w, job.row_bytes, job.rows, job.cols, job.x, r0, r1, t0,
                          t1, job.y);
}

}  // namespace

const KernelSet& scalar_kernels() {
  static const KernelSet k{quantize_act_row_scalar, matmul_q_scalar, matmul_f_scalar, 1, 4, false};
  return k;
}

}  // namespace internal

namespace {

using namespace internal;

const KernelSet& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return avx512_kernels();
    case Isa::kAvx2:
      return avx2_kernels();
    case Isa::kScalar:
      break;
  }
  return scalar_kernels();
}

bool is_float_dtype(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

void matmul_reference(const WeightView& w, const float* x, int64_t num_tokens, float* y,
                      ThreadPool& pool) {
  const size_t row_bytes = row_size(w.dtype, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  pool.parallel_for(
      w.rows,
      [&](int64_t r0, int64_t r1, int) {
        matmul_dequantized_rows(w.dtype, base, row_bytes, w.rows, w.cols, x, r0, r1, 0, num_tokens,
                                y);
      },
      1);
}

// One weight of a fast-path call. Row tiles of all weights are numbered one after the other so a
// single parallel pass covers every weight.
struct Part {
  bool quantized;
  QuantJob q;
  FloatJob f;
  int64_t first_tile;
  int64_t num_tiles;
};

// Which of the two activation layouts (sub-blocks of 16 or 32) a quantized part reads.
int layout_index(const QuantScheme& s) {
  return s.sub_block == 16 ? 0 : 1;
}

// Rows [r0, r1) and tokens [t0, t1) of one part; act[i] holds the activations in layout i.
void run_part(const KernelSet& k, const Part& p, uint8_t* const* act, int64_t r0, int64_t r1,
              int64_t t0, int64_t t1) {
  if (!p.quantized) return k.matmul_f(p.f, r0, r1, t0, t1);
  QuantJob job = p.q;
  job.act_base = act[layout_index(job.scheme)];
  k.matmul_q(job, r0, r1, t0, t1);
}

// Tiles [b, e) of the concatenation, every part they touch, all tokens.
void run_tiles(const KernelSet& k, const Part* parts, int num_parts, uint8_t* const* act, int64_t b,
               int64_t e, int64_t num_tokens) {
  for (int i = 0; i < num_parts; ++i) {
    const Part& p = parts[i];
    const int64_t lo = std::max(b, p.first_tile), hi = std::min(e, p.first_tile + p.num_tiles);
    if (lo >= hi) continue;
    const int64_t rows = p.quantized ? p.q.rows : p.f.rows;
    run_part(k, p, act, (lo - p.first_tile) * k.row_grain,
             std::min(rows, (hi - p.first_tile) * k.row_grain), 0, num_tokens);
  }
}

// Quantizes tokens [t0, t1) of x into every layout some part needs.
void quantize_tokens(const KernelSet& k, const float* x, int64_t cols, const ActLayout* layouts,
                     const bool* needed, bool lane_sums, uint8_t* const* act, int64_t t0,
                     int64_t t1) {
  for (int i = 0; i < 2; ++i) {
    if (!needed[i]) continue;
    for (int64_t t = t0; t < t1; ++t) {
      k.quantize_row(x + t * cols, layouts[i], lane_sums, act[i] + t * layouts[i].row_bytes);
    }
  }
}

// Everything one fast-path call shares between threads. The parallel_for lambdas capture only a
// pointer to it, so std::function keeps them inline instead of allocating per call.
struct FastCall {
  const KernelSet* k;
  const float* x;
  int64_t cols;
  int64_t num_tokens;
  Part parts[kMaxMatmulWeights];
  int num_parts = 0;
  int64_t num_tiles = 0;
  ActLayout layouts[2];
  bool needed[2] = {false, false};
  uint8_t* act[2] = {nullptr, nullptr};  // shared activations (many-token case)
  int64_t token_chunks = 1;

  bool any_quantized() const { return needed[0] || needed[1]; }

  // Few tokens: every thread quantizes them itself (a few hundred ns) instead of waiting at a
  // barrier for one thread to do it.
  void gemv_tiles(int64_t b, int64_t e) const {
    thread_local AlignedBuffer buffers[2];
    uint8_t* own[2] = {};
    for (int i = 0; i < 2; ++i) {
      if (needed[i]) own[i] = buffers[i].get(layouts[i].row_bytes * num_tokens);
    }
    if (any_quantized()) {
      quantize_tokens(*k, x, cols, layouts, needed, k->reads_lane_sums, own, 0, num_tokens);
    }
    run_tiles(*k, parts, num_parts, own, b, e, num_tokens);
  }

  void quantize(int64_t t0, int64_t t1) const {
    quantize_tokens(*k, x, cols, layouts, needed, k->reads_lane_sums, act, t0, t1);
  }

  // Tasks [b, e) of (tile, token chunk) pairs.
  void tasks(int64_t b, int64_t e) const {
    if (token_chunks == 1) return run_tiles(*k, parts, num_parts, act, b, e, num_tokens);
    for (int64_t task = b; task < e; ++task) {
      const int64_t tile = task / token_chunks, chunk = task % token_chunks;
      int i = 0;
      while (tile >= parts[i].first_tile + parts[i].num_tiles) ++i;
      const Part& p = parts[i];
      const int64_t rows = p.quantized ? p.q.rows : p.f.rows;
      const int64_t r0 = (tile - p.first_tile) * k->row_grain;
      run_part(*k, p, act, r0, std::min(rows, r0 + k->row_grain), num_tokens * chunk / token_chunks,
               num_tokens * (chunk + 1) / token_chunks);
    }
  }
};

void matmul_fast(std::span<const WeightView> weights, const float* x, int64_t num_tokens,
                 std::span<float* const> ys, ThreadPool& pool) {
  FastCall c;
  c.k = &kernels_for(current_isa());
  const KernelSet& k = *c.k;
  c.x = x;
  c.cols = weights[0].cols;
  c.num_tokens = num_tokens;
  c.layouts[0] = act_layout(c.cols, 16);
  c.layouts[1] = act_layout(c.cols, 32);
  c.num_parts = static_cast<int>(weights.size());
  for (int i = 0; i < c.num_parts; ++i) {
    const WeightView& w = weights[i];
    Part& p = c.parts[i];
    const auto* data = static_cast<const uint8_t*>(w.data);
    QuantScheme scheme{};
    p.quantized = quant_scheme(w.dtype, &scheme);
    if (p.quantized) {
      const int li = layout_index(scheme);
      p.q = {w.dtype, scheme,     data, row_size(w.dtype, c.cols), w.rows, c.cols, c.layouts[li],
             nullptr, num_tokens, ys[i]};
      c.needed[li] = true;
    } else {
      p.f = {w.dtype, data, row_size(w.dtype, c.cols), w.rows, c.cols, x, num_tokens, ys[i]};
    }
    p.first_tile = c.num_tiles;
    p.num_tiles = (w.rows + k.row_grain - 1) / k.row_grain;
    c.num_tiles += p.num_tiles;
  }
  const FastCall* cp = &c;
  if (num_tokens <= k.gemv_max_tokens) {
    pool.parallel_for(c.num_tiles, [cp](int64_t b, int64_t e, int) { cp->gemv_tiles(b, e); });
    return;
  }
  thread_local AlignedBuffer buffers[2];  // the calling thread's; workers only read them
  for (int i = 0; i < 2; ++i) {
    if (c.needed[i]) c.act[i] = buffers[i].get(c.layouts[i].row_bytes * num_tokens);
  }
  if (c.any_quantized()) {
    pool.parallel_for(num_tokens, [cp](int64_t t0, int64_t t1, int) { cp->quantize(t0, t1); });
  }
  // With fewer tiles than threads, tokens are split too, in chunks of at least 8 tokens so every
  // chunk still takes the efficient many-token kernels (results never depend on the split).
  const int threads = pool.num_threads();
  if (c.num_tiles < 2 * threads) {
    c.token_chunks = std::max<int64_t>(
        1,
        std::min<int64_t>((2 * threads + c.num_tiles - 1) / c.num_tiles, (num_tokens + 15) / 16));
  }
  pool.parallel_for(c.num_tiles * c.token_chunks,
                    [cp](int64_t b, int64_t e, int) { cp->tasks(b, e); });
}

void check_weight(const WeightView& w) {
  const DTypeTraits& t = traits(w.dtype);
  CVLLM_CHECK(w.rows >= 0 && w.cols >= 0, "matmul: negative size");
  CVLLM_CHECK(w.cols % t.block_size == 0, "matmul: ", w.cols, " columns is not a whole number of ",
              t.name, " blocks");
  QuantScheme scheme{};
  if (!quant_scheme(w.dtype, &scheme) && !is_float_dtype(w.dtype)) {
    throw Error(cat("matmul: unsupported weight dtype ", t.name));
  }
}

}  // namespace

void matmul_many(std::span<const WeightView> weights, const float* x, int64_t num_tokens,
                 std::span<float* const> ys, ThreadPool& pool, MatmulPath path) {
  CVLLM_CHECK(weights.size() == ys.size(), "matmul_many: ", weights.size(), " weights but ",
              ys.size(), " outputs");
  CVLLM_CHECK(weights.size() <= static_cast<size_t>(kMaxMatmulWeights), "matmul_many: at most ",
              kMaxMatmulWeights, " weights");
  CVLLM_CHECK(num_tokens >= 0, "matmul: negative num_tokens");
  if (weights.empty()) return;
  for (const WeightView& w : weights) {
    check_weight(w);
    CVLLM_CHECK(w.cols == weights[0].cols, "matmul_many: weights differ in cols (", w.cols, " vs ",
                weights[0].cols, ")");
  }
  if (num_tokens == 0) return;
  int64_t total_rows = 0;
  for (const WeightView& w : weights) total_rows += w.rows;
  if (total_rows == 0) return;
  if (weights[0].cols == 0) {
    for (size_t i = 0; i < weights.size(); ++i) {
      std::fill(ys[i], ys[i] + num_tokens * weights[i].rows, 0.0f);
    }
    return;
  }
  if (path == MatmulPath::kReference) {
    for (size_t i = 0; i < weights.size(); ++i) {
      if (weights[i].rows > 0) matmul_reference(weights[i], x, num_tokens, ys[i], pool);
    }
    return;
  }
  matmul_fast(weights, x, num_tokens, ys, pool);
}

void matmul(const WeightView& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool,
            MatmulPath path) {
  matmul_many(std::span<const WeightView>(&w, 1), x, num_tokens, std::span<float* const>(&y, 1),
              pool, path);
}

}  // namespace cvllm::cpu
