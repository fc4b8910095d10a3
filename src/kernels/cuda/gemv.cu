// Matrix-vector products for decode steps of a few tokens. cuBLASLt's tensor-core kernels tile the
// output rows in 64-128 row tiles, so a 4096-row weight keeps only ~32 of an H100's 132
// multiprocessors busy when the batch is one token wide; here one warp streams one weight row, the
// grid covers every multiprocessor, and each lane keeps four 16-byte weight loads in flight.
// Weights are read once per step, so their loads bypass L1; the activations (a few rows of k
// values) are re-read by every warp and stay cached. Launched with programmatic dependent launch:
// each lane's first weight loads go out before the previous kernel has finished (weights never
// change), the activations' after it.
#include <cstdlib>

#include "kernels/cuda/activations.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/pdl.cuh"

namespace cvllm::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane
constexpr int kPrefetch = 2;  // gemv_kernel's iterations loaded before pdl_wait()

__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// acc += dot(8 bf16 weights, 8 bf16 activations), in f32.
__device__ __forceinline__ float dot8(float acc, const uint4& w, const uint4& x) {
  const __nv_bfloat162* wh = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* xh = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 wf = __bfloat1622float2(wh[i]);
    const float2 xf = __bfloat1622float2(xh[i]);
    acc = fmaf(wf.x, xf.x, acc);
    acc = fmaf(wf.y, xf.y, acc);
  }
  return acc;
}

// ys[o][t, row] = sum_k ws[o][row, k] x[t, k] for t < N over the outputs' rows laid end to end.
// KS warps per row (1, 2 or 4), each over a contiguous KS-th of k, their sums added in warp order
// through shared memory; k % 8 == 0. Splitting k gives a weight of few rows (4,096 of the 8B
// shape's o and down projections: 512 blocks of one warp per row, 1.3 waves of the ~3 blocks an
// H100 multiprocessor holds) enough blocks that the last wave's tail is short. The first
// kPrefetch iterations' weights are loaded before pdl_wait(), while the previous kernel finishes
// (two rather than one: batch-4 decode of the 8B shape 547 -> 587 tok/s, batch 2 311 -> 324,
// batch 1 unchanged).
template <int N, int KS>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(GemvOutputs outs, const bf16* __restrict__ x, int64_t k) {
  static_assert(kWarpsPerBlock % KS == 0, "whole rows per block");
  __shared__ float partial[KS > 1 ? kWarpsPerBlock : 1][N];
  pdl_launch_dependents();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, part = warp % KS;
  int64_t row = static_cast<int64_t>(blockIdx.x) * (kWarpsPerBlock / KS) + warp / KS;
  // Which output the row falls in (unrolled: constant indices keep outs out of local memory).
  const bf16* w = outs.w[0];
  float* y = outs.y[0];
  int64_t m = outs.rows[0];
#pragma unroll
  for (int o = 1; o < kGemvMaxOutputs; ++o) {
    if (o < outs.count && row >= m) {
      row -= m;
      w = outs.w[o];
      y = outs.y[o];
      m = outs.rows[o];
    }
  }
  const bool active = row < m;
  if (KS == 1 && !active) {
    pdl_wait();  // (see pdl.cuh: every block waits)
    return;
  }
  const uint4* w4 = reinterpret_cast<const uint4*>(w + (active ? row : 0) * k);
  const uint4* x4 = reinterpret_cast<const uint4*>(x);
  const int64_t chunks = k / 8;  // 16-byte chunks per row
  // This warp's chunks: [begin, end) (empty for a warp past the last row). The parts start at
  // whole iterations, so only the last one has a remainder for the slower one-load loop.
  constexpr int64_t kStep = 32 * kUnroll;  // chunks per iteration of the warp
  auto part_begin = [&](int p) { return p == KS ? chunks : chunks * p / KS / kStep * kStep; };
  const int64_t end = active ? part_begin(part + 1) : 0;
  float acc[N] = {};
  uint4 pre[kPrefetch][kUnroll];
  int64_t c = part_begin(part) + lane;
#pragma unroll
  for (int it = 0; it < kPrefetch; ++it) {
    const int64_t ci = c + it * kStep;
    if (ci + 32 * (kUnroll - 1) < end) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) pre[it][u] = load_streaming(w4 + ci + 32 * u);
    }
  }
  pdl_wait();
#pragma unroll
  for (int it = 0; it < kPrefetch; ++it) {  // the same sums, in the same order, as the loop below
    if (c + 32 * (kUnroll - 1) < end) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int t = 0; t < N; ++t) acc[t] = dot8(acc[t], pre[it][u], __ldg(x4 + t * chunks + c + 32 * u));
      }
      c += kStep;
    }
  }
  for (; c + 32 * (kUnroll - 1) < end; c += kStep) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = load_streaming(w4 + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int t = 0; t < N; ++t) acc[t] = dot8(acc[t], wv[u], __ldg(x4 + t * chunks + c + 32 * u));
    }
  }
  for (; c < end; c += 32) {
    const uint4 wv = load_streaming(w4 + c);
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = dot8(acc[t], wv, __ldg(x4 + t * chunks + c));
  }
#pragma unroll
  for (int t = 0; t < N; ++t) {
    float v = acc[t];
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (KS == 1) {
      if (lane == 0) y[t * m + row] = v;
    } else if (lane == 0) {
      partial[warp][t] = v;
    }
  }
  if constexpr (KS > 1) {
    __syncthreads();
    if (part == 0 && lane == 0 && active) {
#pragma unroll
      for (int t = 0; t < N; ++t) {
        float v = partial[warp][t];
#pragma unroll
        for (int p = 1; p < KS; ++p) v += partial[warp + p][t];
        y[t * m + row] = v;
      }
    }
  }
}

unsigned grid_for(int64_t rows) {  // one warp per row
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// The gated MLP's first half: out[t, row] = act(x[t] . w_gate[row]) * (x[t] . w_up[row]). One warp
// per row reads the row of both weights (their loads interleaved); each product is summed exactly
// as gemv_kernel sums it, so the result is bit-identical to the two products followed by the
// element-wise activation kernel.
template <int N, GatedActivationKind kAct>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_gated_kernel(const bf16* __restrict__ w_gate, const bf16* __restrict__ w_up,
                      const bf16* __restrict__ x, int64_t rows, int64_t k, float* __restrict__ out,
                      bf16* __restrict__ out_bf16) {
  pdl_launch_dependents();
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= rows) {
    pdl_wait();
    return;
  }
  const uint4* g4 = reinterpret_cast<const uint4*>(w_gate + row * k);
  const uint4* u4 = reinterpret_cast<const uint4*>(w_up + row * k);
  const uint4* x4 = reinterpret_cast<const uint4*>(x);
  const int64_t chunks = k / 8;
  float gacc[N] = {}, uacc[N] = {};
  int64_t c = lane;
  uint4 gv[kUnroll], uv[kUnroll];
  if (c + 32 * (kUnroll - 1) < chunks) {  // the first iteration's weights, before the wait
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      gv[u] = load_streaming(g4 + c + 32 * u);
      uv[u] = load_streaming(u4 + c + 32 * u);
    }
  }
  pdl_wait();
  for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
    if (c != lane) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        gv[u] = load_streaming(g4 + c + 32 * u);
        uv[u] = load_streaming(u4 + c + 32 * u);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int t = 0; t < N; ++t) {
        const uint4 xv = __ldg(x4 + t * chunks + c + 32 * u);
        gacc[t] = dot8(gacc[t], gv[u], xv);
        uacc[t] = dot8(uacc[t], uv[u], xv);
      }
    }
  }
  for (; c < chunks; c += 32) {
    const uint4 gv = load_streaming(g4 + c), uv = load_streaming(u4 + c);
#pragma unroll
    for (int t = 0; t < N; ++t) {
      const uint4 xv = __ldg(x4 + t * chunks + c);
      gacc[t] = dot8(gacc[t], gv, xv);
      uacc[t] = dot8(uacc[t], uv, xv);
    }
  }
#pragma unroll
  for (int t = 0; t < N; ++t) {
    float g = gacc[t], u = uacc[t];
    for (int off = 16; off > 0; off /= 2) {
      g += __shfl_xor_sync(0xffffffffu, g, off);
      u += __shfl_xor_sync(0xffffffffu, u, off);
    }
    if (lane == 0) {
      const float v = (kAct == GatedActivationKind::kSilu ? silu_act(g) : gelu_tanh_act(g)) * u;
      out[t * rows + row] = v;
      out_bf16[t * rows + row] = __float2bfloat16_rn(v);
    }
  }
}

template <int N, GatedActivationKind kAct>
void launch_gated(const bf16* w_gate, const bf16* w_up, const bf16* x, int64_t rows, int64_t k,
                  float* out, bf16* out_bf16, cudaStream_t stream) {
  launch_pdl(gemv_gated_kernel<N, kAct>, grid_for(rows), kWarpsPerBlock * 32, 0, stream, w_gate,
             w_up, x, rows, k, out, out_bf16);
}

template <GatedActivationKind kAct>
void gated_for(const bf16* w_gate, const bf16* w_up, const bf16* x, int64_t n, int64_t rows,
               int64_t k, float* out, bf16* out_bf16, cudaStream_t stream) {
  switch (n) {
    case 1: return launch_gated<1, kAct>(w_gate, w_up, x, rows, k, out, out_bf16, stream);
    case 2: return launch_gated<2, kAct>(w_gate, w_up, x, rows, k, out, out_bf16, stream);
    case 3: return launch_gated<3, kAct>(w_gate, w_up, x, rows, k, out, out_bf16, stream);
    default: return launch_gated<4, kAct>(w_gate, w_up, x, rows, k, out, out_bf16, stream);
  }
}

// Warps per row for a product of `rows` rows: a function of the weight's shape alone, never the
// batch, so a row's sum is the same at every batch size. CVLLM_CUDA_GEMV_SPLIT=1|2|4 forces one
// (A/B runs).
int split_for(int64_t rows, int64_t k) {
  static const int forced = [] {
    const char* env = std::getenv("CVLLM_CUDA_GEMV_SPLIT");
    const int v = env != nullptr ? std::atoi(env) : 0;
    return v == 1 || v == 2 || v == 4 ? v : 0;
  }();
  if (forced > 0) return forced;
  // Long rows of a weight with few of them: two warps per row. The 8B shape's down projection
  // (4,096 rows of 14,336) went 1,363 -> 1,279 us per step alone; its q/k/v and o projections
  // (rows of 4,096) got slower split, in two or four, and so did the down projection in four.
  return k >= 8192 && rows <= 8192 ? 2 : 1;
}

template <int N, int KS>
void launch_split(const GemvOutputs& outs, const bf16* x, int64_t k, int64_t total,
                  cudaStream_t stream) {
  constexpr int64_t kRowsPerBlock = kWarpsPerBlock / KS;
  launch_pdl(gemv_kernel<N, KS>, static_cast<unsigned>((total + kRowsPerBlock - 1) / kRowsPerBlock),
             kWarpsPerBlock * 32, 0, stream, outs, x, k);
}

template <int N>
void launch(const GemvOutputs& outs, const bf16* x, int64_t k, cudaStream_t stream) {
  int64_t total = 0;
  for (int o = 0; o < outs.count; ++o) total += outs.rows[o];
  if (total == 0) return;
  switch (split_for(total, k)) {
    case 2: return launch_split<N, 2>(outs, x, k, total, stream);
    case 4: return launch_split<N, 4>(outs, x, k, total, stream);
    default: return launch_split<N, 1>(outs, x, k, total, stream);
  }
}

}  // namespace

bool gemv_applies(const void* w, const void* x, int64_t n, int64_t k) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n >= 1 && n <= kGemvMaxTokens && k % 8 == 0 && aligned(w) && aligned(x);
}

void gemv_bf16(const GemvOutputs& outs, const bf16* x, int64_t n, int64_t k, cudaStream_t stream) {
  if (n == 0 || outs.count == 0) return;
  if (outs.count > kGemvMaxOutputs || n > kGemvMaxTokens) {
    throw_cuda_error(cudaErrorInvalidValue, "gemv_bf16 (too many outputs or tokens)", __FILE__,
                     __LINE__);
  }
  switch (n) {
    case 1: return launch<1>(outs, x, k, stream);
    case 2: return launch<2>(outs, x, k, stream);
    case 3: return launch<3>(outs, x, k, stream);
    default: return launch<4>(outs, x, k, stream);
  }
}

void gemv_gated_bf16(const bf16* w_gate, const bf16* w_up, GatedActivationKind act, const bf16* x,
                     int64_t n, int64_t rows, int64_t k, float* out, bf16* out_bf16,
                     cudaStream_t stream) {
  if (n == 0 || rows == 0) return;
  if (n > kGemvMaxTokens) {
    throw_cuda_error(cudaErrorInvalidValue, "gemv_gated_bf16 (too many tokens)", __FILE__, __LINE__);
  }
  if (act == GatedActivationKind::kSilu) {
    gated_for<GatedActivationKind::kSilu>(w_gate, w_up, x, n, rows, k, out, out_bf16, stream);
  } else {
    gated_for<GatedActivationKind::kGeluTanh>(w_gate, w_up, x, n, rows, k, out, out_bf16, stream);
  }
}

}  // namespace cvllm::cuda
