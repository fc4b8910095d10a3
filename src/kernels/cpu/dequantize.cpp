// Element order inside each block, stated once here (gguf-py's quants.py says the same):
//   Q4_0/Q4_1:  element j < 16 is the low nibble of qs[j], element j + 16 the high nibble.
//   Q5_0/Q5_1:  as Q4, plus bit j of the little-endian uint32 qh is the fifth bit of element j.
//   Q8_0/Q8_1/Q8_K: qs[j] is element j.
//   Q2_K:  element 128*g + 32*s + l is bits 2s..2s+1 of qs[32*g + l]; scales[e/16] holds the
//          sub-block scale (low nibble) and min (high nibble) of element e.
//   Q3_K:  low 2 bits as Q2_K; element 32*i + l takes bit i of hmask[l] as its high bit, and the
//          value is low - 4 when that bit is clear; 16 six-bit scales (see q3_k_scales), minus 32.
//   Q4_K:  element 64*c + l (l < 32) is the low nibble of qs[32*c + l], 64*c + 32 + l the high
//          nibble; 8 sub-blocks of 32 with 6-bit scale and min (see k_scale_min).
//   Q5_K:  as Q4_K, plus bit i of qh[l] is the fifth bit of element 32*i + l.
//   Q6_K:  element 128*h + 64*s + l (l < 64) takes nibble s of ql[64*h + l] as its low 4 bits and
//          element 128*h + 32*s + l (l < 32) takes bits 2s..2s+1 of qh[32*h + l] as its high 2;
//          value minus 32, times an int8 scale per 16 elements.
#include "kernels/cpu/dequantize.h"

#include <cstring>

#include "tensor/half.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"

namespace cvllm::cpu {
namespace {

template <typename Block>
const Block* blocks_of(const void* src) {
  return static_cast<const Block*>(src);
}

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK4_0) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((b[i].qs[j] & 0x0F) - 8);
      y[j + 16] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK4_1) {
    const float d = f16_to_f32(b[i].d);
    const float m = f16_to_f32(b[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(b[i].qs[j] & 0x0F) + m;
      y[j + 16] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
    }
  }
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK5_0) {
    const float d = f16_to_f32(b[i].d);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b[i].qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(lo - 16);
      y[j + 16] = d * static_cast<float>(hi - 16);
    }
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK5_1) {
    const float d = f16_to_f32(b[i].d);
    const float m = f16_to_f32(b[i].m);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b[i].qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(lo) + m;
      y[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK8_0) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequant_q8_1(const BlockQ8_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK8_1) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK8_1; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequant_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = f16_to_f32(b[i].d);
    const float dmin = f16_to_f32(b[i].dmin);
    for (int g = 0; g < 2; ++g) {
      for (int s = 0; s < 4; ++s) {
        for (int half = 0; half < 2; ++half) {  // 16 elements share a scale
          const int e0 = 128 * g + 32 * s + 16 * half;
          const uint8_t sc = b[i].scales[e0 / 16];
          const float dl = d * static_cast<float>(sc & 0x0F);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int q = (b[i].qs[32 * g + l] >> (2 * s)) & 3;
            y[128 * g + 32 * s + l] = dl * static_cast<float>(q) - ml;
          }
        }
      }
    }
  }
}

void dequant_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = f16_to_f32(b[i].d);
    int8_t scales[16];
    q3_k_scales(b[i].scales, scales);
    for (int g = 0; g < 2; ++g) {
      for (int s = 0; s < 4; ++s) {
        const int e0 = 128 * g + 32 * s;  // bit e0/32 of hmask[l] is the high bit
        for (int half = 0; half < 2; ++half) {
          const float dl = d * static_cast<float>(scales[e0 / 16 + half]);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int low = (b[i].qs[32 * g + l] >> (2 * s)) & 3;
            const int high = (b[i].hmask[l] >> (e0 / 32)) & 1;
            y[e0 + l] = dl * static_cast<float>(low - (high ? 0 : 4));
          }
        }
      }
    }
  }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = f16_to_f32(b[i].d);
    const float dmin = f16_to_f32(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k_scale_min(b[i].scales, j, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        y[32 * j + l] = dl * static_cast<float>((q[l] >> shift) & 0x0F) - ml;
      }
    }
  }
}

void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = f16_to_f32(b[i].d);
    const float dmin = f16_to_f32(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      k_scale_min(b[i].scales, j, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0x0F) | (((b[i].qh[l] >> j) & 1) << 4);
        y[32 * j + l] = dl * static_cast<float>(v) - ml;
      }
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = f16_to_f32(b[i].d);
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {  // 32 elements: 128h + 32s + l
        const int r0 = 32 * s;
        for (int half = 0; half < 2; ++half) {
          const float dl = d * static_cast<float>(b[i].scales[(128 * h + r0) / 16 + half]);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int r = r0 + l;
            const int low = (b[i].ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int high = (b[i].qh[32 * h + l] >> (2 * s)) & 3;
            y[128 * h + r] = dl * static_cast<float>((low | (high << 4)) - 32);
          }
        }
      }
    }
  }
}

void dequant_q8_k(const BlockQ8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    for (int j = 0; j < kQK_K; ++j) y[j] = b[i].d * static_cast<float>(b[i].qs[j]);
  }
}

}  // namespace

void dequantize_row(DType dtype, const void* src, float* dst, int64_t n) {
  const DTypeTraits& t = traits(dtype);  // throws for ids outside the table
  CVLLM_CHECK(n % t.block_size == 0, "dequantize_row: ", n, " elements is not a whole number of ",
              t.name, " blocks");
  const int64_t nb = n / t.block_size;
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
      return;
    }
    case DType::kQ4_0:
      return dequant_q4_0(blocks_of<BlockQ4_0>(src), dst, nb);
    case DType::kQ4_1:
      return dequant_q4_1(blocks_of<BlockQ4_1>(src), dst, nb);
    case DType::kQ5_0:
      return dequant_q5_0(blocks_of<BlockQ5_0>(src), dst, nb);
    case DType::kQ5_1:
      return dequant_q5_1(blocks_of<BlockQ5_1>(src), dst, nb);
    case DType::kQ8_0:
      return dequant_q8_0(blocks_of<BlockQ8_0>(src), dst, nb);
    case DType::kQ8_1:
      return dequant_q8_1(blocks_of<BlockQ8_1>(src), dst, nb);
    case DType::kQ2_K:
      return dequant_q2_k(blocks_of<BlockQ2_K>(src), dst, nb);
    case DType::kQ3_K:
      return dequant_q3_k(blocks_of<BlockQ3_K>(src), dst, nb);
    case DType::kQ4_K:
      return dequant_q4_k(blocks_of<BlockQ4_K>(src), dst, nb);
    case DType::kQ5_K:
      return dequant_q5_k(blocks_of<BlockQ5_K>(src), dst, nb);
    case DType::kQ6_K:
      return dequant_q6_k(blocks_of<BlockQ6_K>(src), dst, nb);
    case DType::kQ8_K:
      return dequant_q8_k(blocks_of<BlockQ8_K>(src), dst, nb);
    default:
      break;
  }
  throw Error(cat("dequantize_row: unsupported dtype ", t.name));
}

}  // namespace cvllm::cpu
