// Memory layouts of the GGUF (ggml) quantized block types, byte for byte as they are stored in a
// GGUF file. Scales are IEEE half floats stored as raw uint16 (see tensor/half.h).
//
// Legacy types hold 32 elements per block; "K-quants" hold 256 in super-blocks with 6- or 8-bit
// sub-block scales. Element order inside a block is documented with each dequantizer
// (kernels/cpu/dequantize.cpp), which is the reference for every faster kernel.
#pragma once

#include <cstdint>

namespace cvllm {

using f16_bits = uint16_t;

constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
constexpr int kQK5_1 = 32;
constexpr int kQK8_0 = 32;
constexpr int kQK8_1 = 32;
constexpr int kQK_K = 256;
constexpr int kKScaleSize = 12;

struct BlockQ4_0 {
  f16_bits d;               // scale
  uint8_t qs[kQK4_0 / 2];  // nibbles: element j in low nibble of qs[j], j+16 in the high nibble
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_1 {
  f16_bits d;  // scale
  f16_bits m;  // minimum
  uint8_t qs[kQK4_1 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

struct BlockQ5_0 {
  f16_bits d;
  uint8_t qh[4];  // fifth bits, one per element (little-endian uint32)
  uint8_t qs[kQK5_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  f16_bits d;
  f16_bits m;
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

struct BlockQ8_0 {
  f16_bits d;
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ8_1 {
  f16_bits d;  // scale
  f16_bits s;  // d * sum(qs), precomputed for the Q4_1/Q5_1 dot products
  int8_t qs[kQK8_1];
};
static_assert(sizeof(BlockQ8_1) == 36);

struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // 4-bit scale (low) and 4-bit min (high) per 16 elements
  uint8_t qs[kQK_K / 4];       // 2-bit quants
  f16_bits d;                  // super-block scale for the scales
  f16_bits dmin;               // super-block scale for the mins
};
static_assert(sizeof(BlockQ2_K) == 84);

struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];  // high bit of each quant
  uint8_t qs[kQK_K / 4];     // low 2 bits
  uint8_t scales[kKScaleSize];  // 16 scales of 6 bits
  f16_bits d;
};
static_assert(sizeof(BlockQ3_K) == 110);

struct BlockQ4_K {
  f16_bits d;
  f16_bits dmin;
  uint8_t scales[kKScaleSize];  // 8 scales and 8 mins, 6 bits each
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ5_K {
  f16_bits d;
  f16_bits dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit scales
  f16_bits d;
};
static_assert(sizeof(BlockQ6_K) == 210);

struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of groups of 16 quants, for the K-quant min terms
};
static_assert(sizeof(BlockQ8_K) == 292);

}  // namespace cvllm
