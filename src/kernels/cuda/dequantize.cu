// Dequantization of weights to bf16 / f32 on the GPU, once at load. One thread per element: it
// finds its block and computes its value with the formulas of kernels/cpu/dequantize.cpp (element
// order is documented there), in f32 with explicitly rounded operations (__fmul_rn, __fadd_rn) so
// nvcc cannot fuse them into an FMA: the f32 values equal the CPU reference bit for bit.
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "tensor/quant_blocks.h"

namespace cvllm::cuda {
namespace {

__device__ __forceinline__ float half_at(const uint8_t* p) {
  uint16_t bits = static_cast<uint16_t>(p[0] | (p[1] << 8));
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float fadd(float a, float b) { return __fadd_rn(a, b); }

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (cpu::k_scale_min).
__device__ __forceinline__ void k_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Element j of the block at b (offsets are those of the structs in tensor/quant_blocks.h).
__device__ float dequant_element(DType dtype, const uint8_t* b, int j) {
  switch (dtype) {
    case DType::kQ4_0: {
      int q = j < 16 ? (b[2 + j] & 0x0F) : (b[2 + j - 16] >> 4);
      return mul(half_at(b), static_cast<float>(q - 8));
    }
    case DType::kQ4_1: {
      int q = j < 16 ? (b[4 + j] & 0x0F) : (b[4 + j - 16] >> 4);
      return fadd(mul(half_at(b), static_cast<float>(q)), half_at(b + 2));
    }
    case DType::kQ5_0: {
      uint32_t qh = b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<uint32_t>(b[5]) << 24);
      int lo = j < 16 ? (b[6 + j] & 0x0F) : (b[6 + j - 16] >> 4);
      int q = lo | (((qh >> j) & 1) << 4);
      return mul(half_at(b), static_cast<float>(q - 16));
    }
    case DType::kQ5_1: {
      uint32_t qh = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<uint32_t>(b[7]) << 24);
      int lo = j < 16 ? (b[8 + j] & 0x0F) : (b[8 + j - 16] >> 4);
      int q = lo | (((qh >> j) & 1) << 4);
      return fadd(mul(half_at(b), static_cast<float>(q)), half_at(b + 2));
    }
    case DType::kQ8_0:
      return mul(static_cast<float>(static_cast<int8_t>(b[2 + j])), half_at(b));
    case DType::kQ8_1:
      return mul(static_cast<float>(static_cast<int8_t>(b[4 + j])), half_at(b));
    case DType::kQ2_K: {  // scales[16] @0, qs[64] @16, d @80, dmin @82
      const int g = j / 128, s = (j % 128) / 32, l = j % 32;
      const int sc = b[j / 16];
      const float dl = mul(half_at(b + 80), static_cast<float>(sc & 0x0F));
      const float ml = mul(half_at(b + 82), static_cast<float>(sc >> 4));
      const int q = (b[16 + 32 * g + l] >> (2 * s)) & 3;
      return __fsub_rn(mul(dl, static_cast<float>(q)), ml);
    }
    case DType::kQ3_K: {  // hmask[32] @0, qs[64] @32, scales[12] @96, d @108
      const int g = j / 128, s = (j % 128) / 32, l = j % 32;
      const int e0 = 128 * g + 32 * s;
      const int si = j / 16;
      const uint8_t* packed = b + 96;
      const int lo4 = (packed[si % 8] >> (4 * (si / 8))) & 0x0F;
      const int hi2 = (packed[8 + si % 4] >> (2 * (si / 4))) & 0x03;
      const int scale = (lo4 | (hi2 << 4)) - 32;
      const float dl = mul(half_at(b + 108), static_cast<float>(scale));
      const int low = (b[32 + 32 * g + l] >> (2 * s)) & 3;
      const int high = (b[l] >> (e0 / 32)) & 1;
      return mul(dl, static_cast<float>(low - (high ? 0 : 4)));
    }
    case DType::kQ4_K:    // d @0, dmin @2, scales[12] @4, qs[128] @16
    case DType::kQ5_K: {  // d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
      const int sub = j / 32, l = j % 32;
      int sc, m;
      k_scale_min(b + 4, sub, &sc, &m);
      const float dl = mul(half_at(b), static_cast<float>(sc));
      const float ml = mul(half_at(b + 2), static_cast<float>(m));
      const bool q5 = dtype == DType::kQ5_K;
      const uint8_t* qs = b + (q5 ? 48 : 16);
      int v = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0x0F;
      if (q5) v |= ((b[16 + l] >> sub) & 1) << 4;
      return __fsub_rn(mul(dl, static_cast<float>(v)), ml);
    }
    case DType::kQ6_K: {  // ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208
      const int h = j / 128, r = j % 128, s = r / 32, l = r % 32;
      const float dl = mul(half_at(b + 208), static_cast<float>(static_cast<int8_t>(b[192 + (128 * h + r) / 16])));
      const int low = (b[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int high = (b[128 + 32 * h + l] >> (2 * s)) & 3;
      return mul(dl, static_cast<float>((low | (high << 4)) - 32));
    }
    case DType::kQ8_K: {  // d (f32) @0, qs[256] @4
      float d;
      memcpy(&d, b, 4);
      return mul(d, static_cast<float>(static_cast<int8_t>(b[4 + j])));
    }
    case DType::kF16:
      return half_at(b);
    case DType::kBF16:
      return __bfloat162float(__ushort_as_bfloat16(static_cast<uint16_t>(b[0] | (b[1] << 8))));
    case DType::kF32: {
      float f;
      memcpy(&f, b, 4);
      return f;
    }
    default:
      return 0.0f;  // unreachable: dequantize_supported() is checked on the host
  }
}

template <typename Out>
__device__ __forceinline__ Out from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) { return __float2bfloat16_rn(v); }

template <typename Out>
__global__ void dequantize_kernel(DType dtype, const uint8_t* src, Out* dst, int64_t n,
                                  int block_size, int type_size) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t block = i / block_size;
    const int j = static_cast<int>(i % block_size);
    dst[i] = from_float<Out>(dequant_element(dtype, src + block * type_size, j));
  }
}

__global__ void f32_to_bf16_kernel(const float* x, bf16* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __float2bfloat16_rn(x[i]);
  }
}

int grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

template <typename Out>
void launch_dequantize(DType dtype, const void* src, Out* dst, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const DTypeTraits& t = traits(dtype);
  dequantize_kernel<Out><<<grid_for(n, 256), 256, 0, stream>>>(
      dtype, static_cast<const uint8_t*>(src), dst, n, static_cast<int>(t.block_size),
      static_cast<int>(t.type_size));
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool dequantize_supported(DType dtype) {
  switch (dtype) {
    case DType::kF32: case DType::kF16: case DType::kBF16: case DType::kQ4_0: case DType::kQ4_1:
    case DType::kQ5_0: case DType::kQ5_1: case DType::kQ8_0: case DType::kQ8_1: case DType::kQ2_K:
    case DType::kQ3_K: case DType::kQ4_K: case DType::kQ5_K: case DType::kQ6_K: case DType::kQ8_K:
      return true;
    default:
      return false;
  }
}

void dequantize_to_bf16(DType dtype, const void* src, bf16* dst, int64_t n, cudaStream_t stream) {
  launch_dequantize(dtype, src, dst, n, stream);
}

void dequantize_to_f32(DType dtype, const void* src, float* dst, int64_t n, cudaStream_t stream) {
  launch_dequantize(dtype, src, dst, n, stream);
}

void convert_f32_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, y, n);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace cvllm::cuda
