// Row-wise and element-wise ops over f32 activations: row gathers (embeddings, logits rows),
// RMSNorm (with the fused residual add), LayerNorm, RoPE, gated activations, adds.
#include "kernels/cuda/activations.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/pdl.cuh"

namespace cvllm::cuda {
namespace {

constexpr int kThreads = 256;

int grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  return static_cast<int>(blocks < 65535 * 16 ? blocks : 65535 * 16);
}

#define GRID_STRIDE_LOOP(i, n)                                                      \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int num_warps = blockDim.x / 32;
  v = lane < num_warps ? partial[lane] : 0.0f;
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__global__ void gather_rows_kernel(const void* table, bool is_bf16, const int32_t* rows,
                                   int32_t offset, int64_t width, float* out) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t r = blockIdx.x;
  const int64_t src_row = int64_t{rows[r]} + offset;
  float* dst = out + r * width;
  if (is_bf16) {
    const bf16* src = static_cast<const bf16*>(table) + src_row * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = __bfloat162float(src[i]);
  } else {
    const float* src = static_cast<const float*>(table) + src_row * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
  }
}

// One block per row. Each thread keeps its elements (i = threadIdx.x + k * blockDim.x) in
// registers between the sum of squares and the output, so the row is read from memory once; rows
// wider than kMaxPerThread * blockDim.x re-read their source instead.
constexpr int kMaxPerThread = 8;
__global__ void rms_norm_kernel(const float* x, float* residual, const float* w, float* y,
                                bf16* y_bf16, int64_t n, float eps, float weight_offset) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t row = blockIdx.x;
  const float* xr = x + row * n;
  float* yr = y + row * n;
  float* rr = residual != nullptr ? residual + row * n : nullptr;
  const float* src = rr != nullptr ? rr : xr;
  const bool cached = n <= static_cast<int64_t>(kMaxPerThread) * blockDim.x;
  float vals[kMaxPerThread];
  float sum = 0.0f;
  if (cached) {
#pragma unroll
    for (int k = 0; k < kMaxPerThread; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      float v = 0.0f;
      if (i < n) {
        v = xr[i];
        if (rr != nullptr) rr[i] = v = rr[i] + v;
      }
      vals[k] = v;
      sum += v * v;
    }
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      float v = xr[i];
      if (rr != nullptr) rr[i] = v = rr[i] + v;  // read back below by this thread only
      sum += v * v;
    }
  }
  sum = block_sum(sum);
  const float scale = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
  bf16* yb = y_bf16 != nullptr ? y_bf16 + row * n : nullptr;
  auto put = [&](int64_t i, float v) {
    const float out = v * scale * (w[i] + weight_offset);
    yr[i] = out;
    if (yb != nullptr) yb[i] = __float2bfloat16_rn(out);
  };
  if (cached) {
#pragma unroll
    for (int k = 0; k < kMaxPerThread; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (i < n) put(i, vals[k]);
    }
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) put(i, src[i]);
  }
}

// The same for rows of n % 4 == 0 floats, at most kVecThreads * 4 * kVecChunks wide, 16-byte
// aligned: kVecThreads threads each keep up to kVecChunks float4 of the row (and of the weight,
// loaded before the reduction so its latency overlaps) in registers. A decode step's one-row call
// is pure latency: fewer, wider loads and an 8-warp reduction instead of a 32-warp one.
constexpr int kVecThreads = 256;
constexpr int kVecChunks = 8;
__global__ void __launch_bounds__(kVecThreads)
    rms_norm_vec_kernel(const float* x, float* residual, const float* w, float* y, bf16* y_bf16,
                        int64_t n, float eps, float weight_offset) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t row = blockIdx.x;
  const float4* xr = reinterpret_cast<const float4*>(x + row * n);
  float4* rr = residual != nullptr ? reinterpret_cast<float4*>(residual + row * n) : nullptr;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  const int chunks = static_cast<int>(n / 4);
  float4 v[kVecChunks], wv[kVecChunks];
  float sum = 0.0f;
#pragma unroll
  for (int c = 0; c < kVecChunks; ++c) {
    const int i = threadIdx.x + c * kVecThreads;
    if (i < chunks) {
      wv[c] = w4[i];
      float4 a = xr[i];
      if (rr != nullptr) {
        const float4 r = rr[i];
        a = make_float4(r.x + a.x, r.y + a.y, r.z + a.z, r.w + a.w);
        rr[i] = a;
      }
      v[c] = a;
      sum += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
  }
  sum = block_sum(sum);
  const float scale = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
  float4* yr = reinterpret_cast<float4*>(y + row * n);
#pragma unroll
  for (int c = 0; c < kVecChunks; ++c) {
    const int i = threadIdx.x + c * kVecThreads;
    if (i < chunks) {
      const float4 a = v[c], b = wv[c];
      const float4 o = make_float4(a.x * scale * (b.x + weight_offset), a.y * scale * (b.y + weight_offset),
                                   a.z * scale * (b.z + weight_offset), a.w * scale * (b.w + weight_offset));
      yr[i] = o;
      if (y_bf16 != nullptr) {
        __nv_bfloat162* yb = reinterpret_cast<__nv_bfloat162*>(y_bf16 + row * n) + 2 * i;
        yb[0] = __floats2bfloat162_rn(o.x, o.y);
        yb[1] = __floats2bfloat162_rn(o.z, o.w);
      }
    }
  }
}

__global__ void layer_norm_kernel(const float* x, const float* w, const float* b, float* y,
                                  int64_t n, float eps) {
  const int64_t row = blockIdx.x;
  const float* xr = x + row * n;
  float* yr = y + row * n;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i];
  const float mean = block_sum(sum) / static_cast<float>(n);
  float var = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) var += (xr[i] - mean) * (xr[i] - mean);
  var = block_sum(var) / static_cast<float>(n);
  const float scale = 1.0f / sqrtf(var + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    yr[i] = (xr[i] - mean) * scale * w[i] + (b != nullptr ? b[i] : 0.0f);
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, bf16* out_bf16,
                                int64_t n) {
  GRID_STRIDE_LOOP(i, n) {
    const float v = silu_act(gate[i]) * up[i];
    out[i] = v;
    if (out_bf16 != nullptr) out_bf16[i] = __float2bfloat16_rn(v);
  }
}

__global__ void gelu_tanh_mul_kernel(const float* gate, const float* up, float* out, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { out[i] = gelu_tanh_act(gate[i]) * up[i]; }
}

// out = act(gate) * up from bf16 products (prefill's gated MLP), 8 elements per thread step with
// 16-byte accesses when `vec` (n % 8 == 0, aligned), else one.
template <bool kSilu>
__global__ void gated_bf16_kernel(const bf16* gate, const bf16* up, float* out, bf16* out_bf16,
                                  int64_t n, bool vec) {
  auto act = [](float g) { return kSilu ? silu_act(g) : gelu_tanh_act(g); };
  if (vec) {
    GRID_STRIDE_LOOP(i, n / 8) {
      const uint4 gv = reinterpret_cast<const uint4*>(gate)[i];
      const uint4 uv = reinterpret_cast<const uint4*>(up)[i];
      const __nv_bfloat162* g2 = reinterpret_cast<const __nv_bfloat162*>(&gv);
      const __nv_bfloat162* u2 = reinterpret_cast<const __nv_bfloat162*>(&uv);
      float v[8];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 g = __bfloat1622float2(g2[e]), u = __bfloat1622float2(u2[e]);
        v[2 * e] = act(g.x) * u.x;
        v[2 * e + 1] = act(g.y) * u.y;
      }
      float4* o = reinterpret_cast<float4*>(out + 8 * i);
      o[0] = make_float4(v[0], v[1], v[2], v[3]);
      o[1] = make_float4(v[4], v[5], v[6], v[7]);
      uint4 packed;
      __nv_bfloat162* p2 = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
      for (int e = 0; e < 4; ++e) p2[e] = __floats2bfloat162_rn(v[2 * e], v[2 * e + 1]);
      reinterpret_cast<uint4*>(out_bf16)[i] = packed;
    }
  } else {
    GRID_STRIDE_LOOP(i, n) {
      const float v = act(__bfloat162float(gate[i])) * __bfloat162float(up[i]);
      out[i] = v;
      out_bf16[i] = __float2bfloat16_rn(v);
    }
  }
}

__global__ void relu_kernel(const float* x, float* out, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { out[i] = x[i] > 0.0f ? x[i] : 0.0f; }
}

__global__ void gelu_tanh_kernel(const float* x, float* out, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { out[i] = gelu_tanh_act(x[i]); }
}

__global__ void scale_kernel(float* x, float factor, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { x[i] *= factor; }
}

__global__ void softcap_kernel(float* x, float cap, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { x[i] = cap * tanhf(x[i] / cap); }
}

__global__ void add_kernel(const float* a, float* b, int64_t n) {
  GRID_STRIDE_LOOP(i, n) { b[i] += a[i]; }
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t total, int64_t n) {
  GRID_STRIDE_LOOP(i, total) { y[i] += bias[i % n]; }
}

int row_threads(int64_t n) {
  if (n >= 1024) return 1024;
  if (n >= 512) return 512;
  if (n >= 256) return 256;
  return 128;
}

}  // namespace

void gather_rows(const void* table, bool table_is_bf16, const int32_t* rows, int64_t num_rows,
                 int64_t width, float* out, cudaStream_t stream, int32_t offset) {
  if (num_rows == 0 || width == 0) return;
  launch_pdl(gather_rows_kernel, static_cast<unsigned>(num_rows), kThreads, 0, stream, table,
             table_is_bf16, rows, offset, width, out);
}

void rms_norm(const float* x, float* residual, const float* w, float* y, bf16* y_bf16,
              int64_t num_rows, int64_t n, float eps, float weight_offset, cudaStream_t stream) {
  if (num_rows == 0) return;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (n % 4 == 0 && n <= int64_t{kVecThreads} * 4 * kVecChunks && aligned(x) && aligned(residual) &&
      aligned(w) && aligned(y) && aligned(y_bf16)) {
    launch_pdl(rms_norm_vec_kernel, static_cast<unsigned>(num_rows), kVecThreads, 0, stream, x,
               residual, w, y, y_bf16, n, eps, weight_offset);
  } else {
    launch_pdl(rms_norm_kernel, static_cast<unsigned>(num_rows), row_threads(n), 0, stream, x,
               residual, w, y, y_bf16, n, eps, weight_offset);
  }
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t num_rows,
                int64_t n, float eps, cudaStream_t stream) {
  if (num_rows == 0) return;
  layer_norm_kernel<<<static_cast<unsigned>(num_rows), row_threads(n), 0, stream>>>(x, w, b, y, n,
                                                                                    eps);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void silu_mul(const float* gate, const float* up, float* out, bf16* out_bf16, int64_t n,
              cudaStream_t stream) {
  if (n == 0) return;
  silu_mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, out, out_bf16, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_tanh_mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, out, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void gated_bf16(const bf16* gate, const bf16* up, bool silu, float* out, bf16* out_bf16, int64_t n,
                cudaStream_t stream) {
  if (n == 0) return;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = n % 8 == 0 && aligned(gate) && aligned(up) && aligned(out) && aligned(out_bf16);
  const int64_t steps = vec ? n / 8 : n;
  if (silu) {
    gated_bf16_kernel<true><<<grid_for(steps), kThreads, 0, stream>>>(gate, up, out, out_bf16, n, vec);
  } else {
    gated_bf16_kernel<false><<<grid_for(steps), kThreads, 0, stream>>>(gate, up, out, out_bf16, n, vec);
  }
  CVLLM_CUDA_CHECK_LAUNCH();
}

void relu(const float* x, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, out, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void gelu_tanh(const float* x, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_tanh_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, out, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void scale(float* x, float factor, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, factor, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void softcap(float* x, float cap, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  softcap_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, cap, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void add(const float* a, float* b, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, b, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void add_bias(float* y, const float* bias, int64_t num_rows, int64_t n, cudaStream_t stream) {
  if (num_rows == 0 || n == 0) return;
  add_bias_kernel<<<grid_for(num_rows * n), kThreads, 0, stream>>>(y, bias, num_rows * n, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace cvllm::cuda
