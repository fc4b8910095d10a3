// Quantization of f32 rows to 8-bit blocks.
//  - GGUF-format quantizers (Q8_0, Q8_1, Q8_K), rounding exactly as ggml's reference code does, for
//    anything that must write GGUF blocks.
//  - The activation format of the fast matmul path (kernels/cpu/matmul.h): per token row, int8
//    values with one f32 scale per 32 elements (d = max|x| / 127, q = x / d rounded half to even,
//    |q| <= 127). It carries what Q8_1's `s` and Q8_K's `bsums` carry for the weight types that
//    need them, with an f32 instead of an f16 scale and 32- instead of 256-element groups, so it is
//    at least as accurate as ggml's activation types at the same integer cost.
#pragma once

#include <cstdint>

#include "tensor/quant_blocks.h"

namespace cvllm::cpu {

// n must be a multiple of the block size (32 for Q8_0/Q8_1, 256 for Q8_K).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);  // x: [n]
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n);  // x: [n]
void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n);  // x: [n]

// x rounded through the fast path's activation format: out[i] = d * q[i]. The fast matmul of any
// quantized weight type equals the reference matmul applied to these values up to f32 rounding;
// tests use it to prove the integer kernels exact. n must be a multiple of 32.
void round_trip_q8_activations(const float* x, float* out, int64_t n);  // x, out: [n]

}  // namespace cvllm::cpu
