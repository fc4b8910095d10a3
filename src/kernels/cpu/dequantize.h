// Dequantization of GGUF block types to f32: the reference every faster kernel is tested against.
// Plain scalar code that follows the format definitions (and gguf-py's dequantizers, operation
// for operation, so results match bit for bit).
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace cvllm::cpu {

// Converts n elements of `dtype` at src to f32 at dst. n must be a multiple of the block size.
// Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K;
// any other dtype throws cvllm::Error.
void dequantize_row(DType dtype, const void* src, float* dst, int64_t n);  // dst: [n]

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block, from its 12 packed
// scale bytes. Shared with the matmul kernels so there is one statement of the packing.
inline void k_scale_min(const uint8_t* scales, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// The 16 signed 6-bit scales of a Q3_K super-block (already minus 32).
inline void q3_k_scales(const uint8_t* packed, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    const int low = (packed[j % 8] >> (4 * (j / 8))) & 0x0F;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 0x03;
    out[j] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

}  // namespace cvllm::cpu
