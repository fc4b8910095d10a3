// matmul(): argument checks, the reference path, the plain C++ integer path, and the dispatch that
// quantizes activations and splits the work over threads for whichever ISA's kernels run. The
// per-ISA kernels live in matmul_avx2.cpp and matmul_avx512.cpp; the canonical weight form they
// all share is described in matmul_internal.h.
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstring>
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
// dot products per sub-block. Also the model the SIMD kernels follow.

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
  static const KernelSet k{
      quantize_act_row_scalar, matmul_q_scalar, matmul_f_scalar, 1, 1 << 30, false};
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

// Splits rows into tasks of whole row tiles; when there are fewer tiles than threads and many
// tokens, tokens are split too. `fn(r0, r1, t0, t1)`.
template <typename Fn>
void run_split(ThreadPool& pool, int64_t rows, int64_t num_tokens, int64_t grain, int64_t gemv_max,
               const Fn& fn) {
  const int threads = pool.num_threads();
  const int64_t num_tiles = (rows + grain - 1) / grain;
  int64_t token_chunks = 1;
  if (num_tokens > gemv_max && num_tiles < 2 * threads) {
    token_chunks =
        std::min<int64_t>((2 * threads + num_tiles - 1) / num_tiles, (num_tokens + 15) / 16);
  }
  if (token_chunks <= 1) {
    pool.parallel_for(
        rows, [&](int64_t r0, int64_t r1, int) { fn(r0, r1, int64_t{0}, num_tokens); }, grain);
    return;
  }
  pool.parallel_for(
      num_tiles * token_chunks,
      [&](int64_t b, int64_t e, int) {
        for (int64_t task = b; task < e; ++task) {
          const int64_t tile = task / token_chunks, chunk = task % token_chunks;
          fn(tile * grain, std::min(rows, (tile + 1) * grain), num_tokens * chunk / token_chunks,
             num_tokens * (chunk + 1) / token_chunks);
        }
      },
      1);
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

void matmul_fast_quant(const WeightView& w, const QuantScheme& scheme, const float* x,
                       int64_t num_tokens, float* y, ThreadPool& pool, const KernelSet& k) {
  QuantJob job{w.dtype,    scheme, static_cast<const uint8_t*>(w.data),  row_size(w.dtype, w.cols),
               w.rows,     w.cols, act_layout(w.cols, scheme.sub_block), nullptr,
               num_tokens, y};
  const bool gemv = num_tokens <= k.gemv_max_tokens;
  const size_t act_bytes = job.act.row_bytes * static_cast<size_t>(num_tokens);
  if (gemv) {
    // Few tokens: every thread quantizes them itself (a few hundred ns) instead of waiting at a
    // barrier for one thread to do it.
    pool.parallel_for(
        w.rows,
        [&](int64_t r0, int64_t r1, int) {
          thread_local AlignedBuffer buffer;
          uint8_t* act = buffer.get(act_bytes);
          for (int64_t t = 0; t < num_tokens; ++t) {
            k.quantize_row(x + t * w.cols, job.act, true, act + t * job.act.row_bytes);
          }
          QuantJob local = job;
          local.act_base = act;
          k.matmul_q(local, r0, r1, 0, num_tokens);
        },
        k.row_grain);
    return;
  }
  thread_local AlignedBuffer buffer;  // the calling thread's; workers only read it
  uint8_t* act = buffer.get(act_bytes);
  pool.parallel_for(num_tokens, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      k.quantize_row(x + t * w.cols, job.act, k.lane_sums_always, act + t * job.act.row_bytes);
    }
  });
  job.act_base = act;
  run_split(
      pool, w.rows, num_tokens, k.row_grain, k.gemv_max_tokens,
      [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) { k.matmul_q(job, r0, r1, t0, t1); });
}

}  // namespace

void matmul(const WeightView& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool,
            MatmulPath path) {
  const DTypeTraits& t = traits(w.dtype);
  CVLLM_CHECK(w.rows >= 0 && w.cols >= 0 && num_tokens >= 0, "matmul: negative size");
  CVLLM_CHECK(w.cols % t.block_size == 0, "matmul: ", w.cols, " columns is not a whole number of ",
              t.name, " blocks");
  QuantScheme scheme{};
  const bool quantized = quant_scheme(w.dtype, &scheme);
  if (!quantized && !is_float_dtype(w.dtype)) {
    throw Error(cat("matmul: unsupported weight dtype ", t.name));
  }
  if (num_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + num_tokens * w.rows, 0.0f);
    return;
  }
  if (path == MatmulPath::kReference) return matmul_reference(w, x, num_tokens, y, pool);
  const KernelSet& k = kernels_for(current_isa());
  if (quantized) return matmul_fast_quant(w, scheme, x, num_tokens, y, pool, k);
  FloatJob job{w.dtype,
               static_cast<const uint8_t*>(w.data),
               row_size(w.dtype, w.cols),
               w.rows,
               w.cols,
               x,
               num_tokens,
               y};
  run_split(
      pool, w.rows, num_tokens, k.row_grain, k.gemv_max_tokens,
      [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) { k.matmul_f(job, r0, r1, t0, t1); });
}

}  // namespace cvllm::cpu
