// AVX-512 (F, BW, VL, DQ, VNNI) matmul kernels. Compiled with AVX-512 flags (see
// src/CMakeLists.txt); only called when cpu_features says the CPU has them.
//
// Quantized weights (canonical form: matmul_internal.h):
//  - GEMV (1..4 tokens): streams each weight row once. Per 64 elements one decode to u8 codes, and
//    per token one vpdpbusd (16 lanes of 4-element dot products), one int->f32 conversion and one
//    FMA with per-lane scales. Scales are handled a group of sub-blocks at a time (16 legacy
//    blocks, or one K-quant super-block) as one vector multiplied by the activation scales, then
//    permuted into lanes; legacy block scales are picked out of 16 rows at once beforehand.
//    Software prefetch keeps enough DRAM reads in flight for one core.
//  - GEMM (more tokens): a tile of 32 rows is decoded once into a row-interleaved layout (each
//    64-byte vector holds 4 consecutive codes of 16 rows), then a 2x4 register-blocked micro-kernel
//    runs vpdpbusd with one broadcast 4-byte activation group against 16 rows at a time, so each
//    lane accumulates one row's exact integer dot product over a sub-block; the f32 scales are
//    applied once per sub-block.
// F32/F16/BF16 weights: up to 4 tokens, blocks of rows x tokens of f32 FMA dot products; more
// tokens, 32-row f32 tiles and a register-blocked micro-kernel as for the quantized GEMM.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/matmul_internal.h"
#include "tensor/quant_blocks.h"

// GCC 12's own reduce/convert intrinsics start from _mm256_undefined_*() and trip these.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace cvllm::cpu::internal {
namespace {

inline __mmask16 first_lanes16(int n) {
  return n >= 16 ? 0xFFFF : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

inline int hsum_epi32_256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

inline int hsum_epi32_128(__m128i s) {
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// ---------------------------------------------------------------------------------------------
// Activation quantization: the same formulas as quantize_act_row_scalar, 32 elements at a time.

void quantize_act_row(const float* x, const ActLayout& l, bool with_lane_sums, uint8_t* row) {
  auto* qs = reinterpret_cast<int8_t*>(row);
  auto* da = reinterpret_cast<float*>(row + l.da_offset);
  auto* sa = reinterpret_cast<float*>(row + l.sa_offset);
  auto* nsum = reinterpret_cast<int32_t*>(row + l.nsum_offset);
  auto* lsum = reinterpret_cast<int32_t*>(row + l.lsum_offset);
  const __m256i ones = _mm256_set1_epi8(1);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  for (int64_t b = 0; b < l.cols; b += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + b), x1 = _mm512_loadu_ps(x + b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));  // round half to even
    __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
    q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
    q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
    const __m256i q = _mm256_set_m128i(_mm512_cvtepi32_epi8(q1), _mm512_cvtepi32_epi8(q0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + b), q);
    const __m256i s4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);  // sums of 4
    if (with_lane_sums) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lsum + b / 4),
                          _mm256_sub_epi32(_mm256_setzero_si256(), s4));
    }
    if (l.sub_block == 32) {
      const int s = hsum_epi32_256(s4);
      da[b / 32] = d;
      sa[b / 32] = d * static_cast<float>(s);
      nsum[b / 32] = -s;
    } else {
      const int s0 = hsum_epi32_128(_mm256_castsi256_si128(s4));
      const int s1 = hsum_epi32_128(_mm256_extracti128_si256(s4, 1));
      da[b / 16] = d;
      da[b / 16 + 1] = d;
      sa[b / 16] = d * static_cast<float>(s0);
      sa[b / 16 + 1] = d * static_cast<float>(s1);
      nsum[b / 16] = -s0;
      nsum[b / 16 + 1] = -s1;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Weight codecs. Each gives, for one row:
//   decode32(row, c): the 32 codes of chunk c (elements 32c..32c+31) as u8;
//   decode64(row, c): chunks c and c+1 (c even);
//   group_scales(row, g, n_sub, ws, mw): ws and mw of the sub-blocks of scale group g in lanes
//     0..n_sub-1 (a group is 16 legacy blocks or one K-quant super-block).

inline __m256i nibbles32(const uint8_t* qs) {  // 16 bytes -> low nibbles then high nibbles
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

inline __m512i nibbles64(const uint8_t* qs0, const uint8_t* qs1) {  // two legacy blocks
  const __m256i y = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
  __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
  z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));  // [q0, q0>>4, q1, q1>>4]
  return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Legacy 32-element blocks: f16 d at byte 0, f16 m at byte 2 when there is a min. The scales of
// 16 consecutive blocks are picked out of whole 64-byte loads with 2-source word permutes (one
// per 128 bytes), which is much cheaper than a 16-lane gather.
template <int kBlockBytes, bool kHasMin>
struct LegacyScaleTables {
  static constexpr int kGroupBytes = 16 * kBlockBytes;
  static constexpr int kNumRegs = (kGroupBytes + 63) / 64;
  static constexpr int kNumPairs = (kNumRegs + 1) / 2;
  // Target word w < 16: d of block w; 16 <= w < 32: m of block w - 16.
  static constexpr int source_word(int w) {
    return w < 16 ? w * kBlockBytes / 2 : (w - 16) * kBlockBytes / 2 + 1;
  }
  struct Table {
    alignas(64) int16_t idx[kNumPairs][32];
    uint32_t mask[kNumPairs];
  };
  static constexpr Table make() {
    Table t{};
    for (int p = 0; p < kNumPairs; ++p) {
      t.mask[p] = 0;
      for (int w = 0; w < (kHasMin ? 32 : 16); ++w) {
        const int src = source_word(w) - 64 * p;
        if (src >= 0 && src < 64) {
          t.idx[p][w] = static_cast<int16_t>(src);
          t.mask[p] |= 1u << w;
        }
      }
    }
    return t;
  }
  static constexpr Table kTable = make();
};

// The scales of the n_sub (<= 16) blocks starting at `base`.
template <int kBlockBytes, bool kHasMin>
inline void legacy_block_scales(const uint8_t* base, int n_sub, __m512* ws, __m512* mw) {
  using Tables = LegacyScaleTables<kBlockBytes, kHasMin>;
  const int valid = n_sub * kBlockBytes;
  __m512i regs[2 * Tables::kNumPairs];
  for (int k = 0; k < 2 * Tables::kNumPairs; ++k) {
    const int n = valid - 64 * k;  // masked loads never touch bytes past the group's blocks
    const __mmask64 m = n >= 64 ? ~__mmask64{0} : n <= 0 ? 0 : (__mmask64{1} << n) - 1;
    regs[k] = _mm512_maskz_loadu_epi8(m, base + 64 * k);
  }
  __m512i words = _mm512_setzero_si512();
  for (int p = 0; p < Tables::kNumPairs; ++p) {
    const __m512i idx = _mm512_load_si512(Tables::kTable.idx[p]);
    words = _mm512_mask_mov_epi16(words, Tables::kTable.mask[p],
                                  _mm512_permutex2var_epi16(regs[2 * p], idx, regs[2 * p + 1]));
  }
  *ws = _mm512_cvtph_ps(_mm512_castsi512_si256(words));
  if (kHasMin) *mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(words, 1));
}

template <int kBlockBytes, bool kHasMin>
inline void legacy_group_scales(const uint8_t* row, int64_t g, int n_sub, __m512* ws, __m512* mw) {
  legacy_block_scales<kBlockBytes, kHasMin>(row + g * 16 * kBlockBytes, n_sub, ws, mw);
}

struct CodecQ4_0 {
  static constexpr bool kLegacy = true;
  static constexpr int kS = 32, kShift = 3, kGroupSub = 16;
  static constexpr bool kMin = false;
  static constexpr int kBytes = sizeof(BlockQ4_0);
  static __m256i decode32(const uint8_t* row, int64_t c) { return nibbles32(row + c * kBytes + 2); }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    return nibbles64(row + c * kBytes + 2, row + (c + 1) * kBytes + 2);
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_group_scales<kBytes, false>(row, g, n, ws, mw);
  }
};

struct CodecQ4_1 {
  static constexpr bool kLegacy = true;
  static constexpr int kS = 32, kShift = 0, kGroupSub = 16;
  static constexpr bool kMin = true;
  static constexpr int kBytes = sizeof(BlockQ4_1);
  static __m256i decode32(const uint8_t* row, int64_t c) { return nibbles32(row + c * kBytes + 4); }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    return nibbles64(row + c * kBytes + 4, row + (c + 1) * kBytes + 4);
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_group_scales<kBytes, true>(row, g, n, ws, mw);
  }
};

template <int kBytes_, int kQhOffset, bool kHasMin>
struct CodecQ5 {
  static constexpr bool kLegacy = true;
  static constexpr int kBytes = kBytes_;
  static constexpr int kS = 32, kShift = kHasMin ? 0 : 4, kGroupSub = 16;
  static constexpr bool kMin = kHasMin;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const uint8_t* b = row + c * kBytes;
    return _mm256_or_si256(nibbles32(b + kQhOffset + 4),
                           _mm256_maskz_set1_epi8(load_u32(b + kQhOffset), 0x10));
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    const uint8_t* b0 = row + c * kBytes;
    const uint8_t* b1 = b0 + kBytes;
    const __mmask64 high =
        load_u32(b0 + kQhOffset) | (static_cast<uint64_t>(load_u32(b1 + kQhOffset)) << 32);
    return _mm512_or_si512(nibbles64(b0 + kQhOffset + 4, b1 + kQhOffset + 4),
                           _mm512_maskz_set1_epi8(high, 0x10));
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_group_scales<kBytes, kHasMin>(row, g, n, ws, mw);
  }
};
using CodecQ5_0 = CodecQ5<sizeof(BlockQ5_0), 2, false>;
using CodecQ5_1 = CodecQ5<sizeof(BlockQ5_1), 4, true>;

struct CodecQ8_0 {
  static constexpr bool kLegacy = true;
  static constexpr int kS = 32, kShift = 7, kGroupSub = 16;
  static constexpr bool kMin = false;
  static constexpr int kBytes = sizeof(BlockQ8_0);
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * kBytes + 2));
    return _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * kBytes + 2));
    const __m256i q1 =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + (c + 1) * kBytes + 2));
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_group_scales<kBytes, false>(row, g, n, ws, mw);
  }
};

struct CodecQ8_K {
  static constexpr bool kLegacy = false;
  static constexpr int kS = 32, kShift = 7, kGroupSub = 8;
  static constexpr bool kMin = false;
  static constexpr int kBytes = sizeof(BlockQ8_K);
  static const uint8_t* codes(const uint8_t* row, int64_t c) {
    return row + (c / 8) * kBytes + 4 + 32 * (c % 8);
  }
  static __m256i decode32(const uint8_t* row, int64_t c) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes(row, c))),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    return _mm512_xor_si512(_mm512_loadu_si512(codes(row, c)),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    float d;
    std::memcpy(&d, row + g * kBytes, 4);
    *ws = _mm512_set1_ps(d);
  }
};

inline float f16_load(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

struct CodecQ2_K {
  static constexpr bool kLegacy = false;
  static constexpr int kS = 16, kShift = 0, kGroupSub = 16;
  static constexpr bool kMin = true;
  static constexpr int kBytes = sizeof(BlockQ2_K);
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* qs = row + (c / 8) * kBytes + 16 + 32 * (k / 4);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
    return _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (k % 4))),
                            _mm256_set1_epi8(3));
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {  // c even: same 32 bytes, 2 shifts
    const int k = static_cast<int>(c % 8);
    const uint8_t* qs = row + (c / 8) * kBytes + 16 + 32 * (k / 4);
    const __m512i q =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)));
    const int s = 2 * (k % 4);
    const __m512i shifts = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(s)),
                                              _mm256_set1_epi16(static_cast<short>(s + 2)), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(q, shifts), _mm512_set1_epi8(3));
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    const uint8_t* b = row + g * kBytes;
    const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    const __m512 d = _mm512_set1_ps(f16_load(b + 80)), dmin = _mm512_set1_ps(f16_load(b + 82));
    *ws = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(0x0F))));
    *mw = _mm512_sub_ps(_mm512_setzero_ps(),
                        _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4))));
  }
};

struct CodecQ3_K {
  static constexpr bool kLegacy = false;
  static constexpr int kS = 16, kShift = 2, kGroupSub = 16;
  static constexpr bool kMin = false;
  static constexpr int kBytes = sizeof(BlockQ3_K);
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 + 32 * (k / 4)));
    const __m256i low =
        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (k % 4))), _mm256_set1_epi8(3));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __mmask32 high = _mm256_test_epi8_mask(hm, _mm256_set1_epi8(static_cast<char>(1 << k)));
    return _mm256_or_si256(low, _mm256_maskz_set1_epi8(high, 4));
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m512i q = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 + 32 * (k / 4))));
    const int s = 2 * (k % 4);
    const __m512i shifts = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(s)),
                                              _mm256_set1_epi16(static_cast<short>(s + 2)), 1);
    const __m512i low = _mm512_and_si512(_mm512_srlv_epi16(q, shifts), _mm512_set1_epi8(3));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const uint64_t h0 = _mm256_test_epi8_mask(hm, _mm256_set1_epi8(static_cast<char>(1 << k)));
    const uint64_t h1 = _mm256_test_epi8_mask(hm, _mm256_set1_epi8(static_cast<char>(2 << k)));
    return _mm512_or_si512(low, _mm512_maskz_set1_epi8(h0 | (h1 << 32), 4));
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    const uint8_t* b = row + g * kBytes;
    int8_t sc[16];
    q3_k_scales(b + 96, sc);
    const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    *ws = _mm512_mul_ps(_mm512_set1_ps(f16_load(b + 108)), _mm512_cvtepi32_ps(v));
  }
};

// The 8 six-bit scales and mins of a Q4_K/Q5_K super-block as 16 bytes: scales then mins.
inline __m128i k_scales_mins(const uint8_t* packed) {
  const uint32_t a = load_u32(packed), b = load_u32(packed + 4), c = load_u32(packed + 8);
  const uint32_t sc_lo = a & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u);
  const uint32_t m_lo = b & 0x3F3F3F3Fu;
  const uint32_t m_hi = ((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u);
  return _mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi), static_cast<int>(m_lo),
                        static_cast<int>(m_hi));
}

template <bool kFive>
struct CodecQ45_K {
  static constexpr bool kLegacy = false;
  static constexpr int kS = 32, kShift = 0, kGroupSub = 8;
  static constexpr bool kMin = true;
  static constexpr int kBytes = kFive ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr int kQs = kFive ? 48 : 16;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * (k / 2)));
    __m256i v = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(4 * (k % 2))),
                                 _mm256_set1_epi8(0x0F));
    if (kFive) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      const __mmask32 high = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << k)));
      v = _mm256_or_si256(v, _mm256_maskz_set1_epi8(high, 0x10));
    }
    return v;
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {  // c even: low then high nibbles
    const int k = static_cast<int>(c % 8);
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * (k / 2)));
    __m512i v =
        _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1),
                         _mm512_set1_epi8(0x0F));
    if (kFive) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      const uint64_t h0 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << k)));
      const uint64_t h1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(2 << k)));
      v = _mm512_or_si512(v, _mm512_maskz_set1_epi8(h0 | (h1 << 32), 0x10));
    }
    return v;
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    const uint8_t* b = row + g * kBytes;
    const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(k_scales_mins(b + 4)));
    const __m512 d = _mm512_set1_ps(f16_load(b)), dmin = _mm512_set1_ps(f16_load(b + 2));
    *ws = _mm512_mul_ps(d, v);  // lanes 0..7
    // Lanes 8..15 hold the mins; move them down.
    const __m512 m = _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2));
    *mw = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, m));
  }
};
using CodecQ4_K = CodecQ45_K<false>;
using CodecQ5_K = CodecQ45_K<true>;

struct CodecQ6_K {
  static constexpr bool kLegacy = false;
  static constexpr int kS = 16, kShift = 5, kGroupSub = 16;
  static constexpr bool kMin = false;
  static constexpr int kBytes = sizeof(BlockQ6_K);
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8), h = k / 4, kk = k % 4;
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m256i ql =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * h + 32 * (kk % 2)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
    const __m256i low = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (kk / 2))),
                                         _mm256_set1_epi8(0x0F));
    const __m256i high =
        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * kk)), _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
  static __m512i decode64(const uint8_t* row, int64_t c) {  // c even: kk in {0, 2}
    const int k = static_cast<int>(c % 8), h = k / 4, kk = k % 4;
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m512i ql = _mm512_loadu_si512(b + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h)));
    const __m512i low = _mm512_and_si512(_mm512_srl_epi16(ql, _mm_cvtsi32_si128(4 * (kk / 2))),
                                         _mm512_set1_epi8(0x0F));
    const __m512i shifts = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * kk)),
                                              _mm256_set1_epi16(static_cast<short>(2 * kk + 2)), 1);
    const __m512i high = _mm512_and_si512(_mm512_srlv_epi16(qh, shifts), _mm512_set1_epi8(3));
    return _mm512_or_si512(low, _mm512_slli_epi16(high, 4));
  }
  static void group_scales(const uint8_t* row, int64_t g, int n, __m512* ws, __m512* mw) {
    const uint8_t* b = row + g * kBytes;
    const __m512i sc =
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
    *ws = _mm512_mul_ps(_mm512_set1_ps(f16_load(b + 208)), _mm512_cvtepi32_ps(sc));
  }
};

// Lane -> sub-block index (within a scale group) for chunk pair p: lane l covers elements
// 64p + 4l .. 64p + 4l + 3.
template <int kS>
inline __m512i lane_sub_blocks(int p) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i local = _mm512_srli_epi32(lane, kS == 32 ? 3 : 2);
  return _mm512_add_epi32(local, _mm512_set1_epi32(p * (64 / kS)));
}

// ---------------------------------------------------------------------------------------------
// GEMV: rows [r0, r1) against T tokens starting at t0.

// Lane i of the result = sum of the 16 lanes of v[i]; every row is summed in the same order
// wherever it sits, so results do not depend on how rows are grouped.
inline __m512 reduce16(const __m512* v) {
  __m512 w[8], x[4], y[2];
  for (int i = 0; i < 8; ++i) {  // lanes 0-7: 8 partials of v[2i], lanes 8-15: of v[2i+1]
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int j = 0; j < 4; ++j) {  // 128-bit lane m: 4 partials of v[4j + m]
    x[j] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * j], w[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(w[2 * j], w[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int k = 0; k < 2; ++k) {  // lane m: 2 partials of v[8k + m], then 2 of v[8k + 4 + m]
    y[k] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * k], x[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(x[2 * k], x[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Lane 4m + q holds the sum of v[4q + m].
  const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, z);
}

// One row against T tokens: out[t] = 16 partial sums of y[t][row]. Legacy types take their
// scales from `flat_ws`/`flat_mw` (decoded beforehand for 16 rows at once, see gemv_rows); the
// K-quants decode theirs per super-block here. The scales stay in registers: reading them back
// from memory just written would stall on failed store-to-load forwarding.
template <class C, int T>
inline void gemv_row(const uint8_t* row, int64_t cols, const ActRow* a, const float* flat_ws,
                     const float* flat_mw, __m512* out) {
  constexpr int S = C::kS;
  constexpr int kGroupElems = C::kGroupSub * S;
  // Two accumulators per token halve the FMA dependency chain.
  __m512 acc0[T], acc1[T], acc_min[T];
  for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = acc_min[t] = _mm512_setzero_ps();
  for (int64_t e0 = 0, g = 0; e0 < cols; e0 += kGroupElems, ++g) {
    const int n_el = static_cast<int>(std::min<int64_t>(kGroupElems, cols - e0));
    const int n_sub = n_el / S;
    const __mmask16 sub_mask = first_lanes16(n_sub);
    __m512 ws, mw = _mm512_setzero_ps();
    if constexpr (C::kLegacy) {
      ws = _mm512_maskz_loadu_ps(sub_mask, flat_ws + e0 / S);
      if (C::kMin) mw = _mm512_maskz_loadu_ps(sub_mask, flat_mw + e0 / S);
    } else {
      C::group_scales(row, g, n_sub, &ws, &mw);
    }
    __m512 scale[T];
    for (int t = 0; t < T; ++t) {
      scale[t] = _mm512_mul_ps(ws, _mm512_maskz_loadu_ps(sub_mask, a[t].da + e0 / S));
      if (C::kMin) {
        acc_min[t] =
            _mm512_fmadd_ps(mw, _mm512_maskz_loadu_ps(sub_mask, a[t].sa + e0 / S), acc_min[t]);
      }
    }
    // 64 elements: one decode, then per token one vpdpbusd and one FMA with per-lane scales.
    auto pair = [&](int p, __m512* acc) __attribute__((always_inline)) {
      const int64_t e = e0 + 64 * p;
      const __m512i codes = C::decode64(row, e / 32);
      const __m512i idx = lane_sub_blocks<S>(p);
      for (int t = 0; t < T; ++t) {
        __m512i dot = C::kShift
                          ? _mm512_slli_epi32(_mm512_loadu_si512(a[t].lsum + e / 4), C::kShift)
                          : _mm512_setzero_si512();
        dot = _mm512_dpbusd_epi32(dot, codes, _mm512_loadu_si512(a[t].qs + e));
        acc[t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(idx, scale[t]), acc[t]);
      }
    };
    const int n_pairs = n_el / 64;
    int p = 0;
    if (n_el == kGroupElems) {  // whole group: constant lane indices
#pragma GCC unroll 8
      for (; p < kGroupElems / 64; p += 2) {
        pair(p, acc0);
        pair(p + 1, acc1);
      }
    }
    for (; p + 2 <= n_pairs; p += 2) {
      pair(p, acc0);
      pair(p + 1, acc1);
    }
    if (p < n_pairs) pair(p++, acc0);
    if (n_el % 64 != 0) {  // one 32-element chunk left (legacy types only)
      const int64_t e = e0 + 64 * p;
      const __m512i codes = _mm512_zextsi256_si512(C::decode32(row, e / 32));
      const __m512i idx = lane_sub_blocks<S>(p);
      for (int t = 0; t < T; ++t) {
        __m512i dot =
            C::kShift
                ? _mm512_slli_epi32(_mm512_maskz_loadu_epi32(0x00FF, a[t].lsum + e / 4), C::kShift)
                : _mm512_setzero_si512();
        dot = _mm512_dpbusd_epi32(dot, codes, _mm512_maskz_loadu_epi32(0x00FF, a[t].qs + e));
        acc1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot),
                                  _mm512_maskz_permutexvar_ps(0x00FF, idx, scale[t]), acc1[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) out[t] = _mm512_add_ps(_mm512_add_ps(acc0[t], acc1[t]), acc_min[t]);
}

constexpr size_t kPrefetchBytes = 16384;

struct GemvBuffers {
  AlignedBuffer ws, mw;
};

// GEMV: rows [r0, r1) against T tokens starting at t0, 16 rows per reduction.
template <class C, int T>
void gemv_rows(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0) {
  ActRow a[T];
  for (int t = 0; t < T; ++t) a[t] = act_row(job.act, job.act_base, t0 + t);
  const int64_t nb = job.cols / 32;
  float* ws = nullptr;
  float* mw = nullptr;
  if constexpr (C::kLegacy) {
    thread_local GemvBuffers buffers;
    const size_t n = static_cast<size_t>(16 * nb + 16);
    ws = reinterpret_cast<float*>(buffers.ws.get(n * sizeof(float)));
    mw = reinterpret_cast<float*>(buffers.mw.get(n * sizeof(float)));
  }
  for (int64_t rb = r0; rb < r1; rb += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, r1 - rb));
    if constexpr (C::kLegacy) {
      const uint8_t* base = job.w + rb * job.row_bytes;
      for (int64_t b = 0; b < n * nb; b += 16) {
        __m512 vws, vmw = _mm512_setzero_ps();
        legacy_block_scales<C::kBytes, C::kMin>(
            base + b * C::kBytes, static_cast<int>(std::min<int64_t>(16, n * nb - b)), &vws, &vmw);
        _mm512_storeu_ps(ws + b, vws);
        if (C::kMin) _mm512_storeu_ps(mw + b, vmw);
      }
    }
    __m512 partial[T][16];
    for (int i = 0; i < 16; ++i) {
      __m512 out[T];
      if (i < n) {
        const uint8_t* row = job.w + (rb + i) * job.row_bytes;
        // Weights come from DRAM once per call; the hardware prefetcher alone keeps too few
        // lines in flight for one core to reach the memory bandwidth.
        for (size_t off = 0; off < job.row_bytes; off += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetchBytes + off), _MM_HINT_T0);
        }
        gemv_row<C, T>(row, job.cols, a, C::kLegacy ? ws + i * nb : nullptr,
                       C::kLegacy && C::kMin ? mw + i * nb : nullptr, out);
      } else {
        for (int t = 0; t < T; ++t) out[t] = _mm512_setzero_ps();
      }
      for (int t = 0; t < T; ++t) partial[t][i] = out[t];
    }
    for (int t = 0; t < T; ++t) {
      _mm512_mask_storeu_ps(job.y + (t0 + t) * job.rows + rb, first_lanes16(n),
                            reduce16(partial[t]));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GEMM: 32-row tiles decoded into a row-interleaved layout, then a register-blocked micro-kernel.

constexpr int kTileRows = 32;

// One thread's decoded tile: codes [cols/32 chunks][8 groups of 4][2 halves of 16 rows][64 B],
// ws and mw [cols/S][32 rows].
struct Tile {
  uint8_t* codes;
  float* ws;
  float* mw;
};

// Transposes 16 rows x 32 codes (one ymm per row) into 8 vectors of 16 rows x 4 codes.
inline void transpose_16x8_dwords(const __m256i* v, uint8_t* out /* 8 x 128 bytes stride */) {
  __m512i z[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(v[i]), v[i + 8], 1);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // u[k] (k < 4) holds rows 0-3 (and 8-11) of groups k and k+4; u[k+4] rows 4-7 (12-15).
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int k = 0; k < 4; ++k) {
    _mm512_store_si512(out + k * 128, _mm512_permutex2var_epi64(u[k], lo, u[k + 4]));
    _mm512_store_si512(out + (k + 4) * 128, _mm512_permutex2var_epi64(u[k], hi, u[k + 4]));
  }
}

template <class C>
void decode_tile(const QuantJob& job, int64_t r0, int num_rows, const Tile& tile) {
  constexpr int S = C::kS;
  const int64_t cols = job.cols;
  const int64_t num_sub = cols / S;
  const uint8_t* rows[kTileRows];
  for (int i = 0; i < kTileRows; ++i)
    rows[i] = i < num_rows ? job.w + (r0 + i) * job.row_bytes : nullptr;
  // Scales: [sub-block][row].
  alignas(64) float ws[16], mw[16];
  for (int i = 0; i < kTileRows; ++i) {
    for (int64_t e0 = 0, g = 0; e0 < cols; e0 += C::kGroupSub * S, ++g) {
      const int n_sub = static_cast<int>(std::min<int64_t>(C::kGroupSub, (cols - e0) / S));
      __m512 vws = _mm512_setzero_ps(), vmw = _mm512_setzero_ps();
      if (rows[i]) C::group_scales(rows[i], g, n_sub, &vws, &vmw);
      _mm512_store_ps(ws, vws);
      _mm512_store_ps(mw, vmw);
      for (int j = 0; j < n_sub; ++j) {
        tile.ws[(e0 / S + j) * kTileRows + i] = ws[j];
        tile.mw[(e0 / S + j) * kTileRows + i] = C::kMin ? mw[j] : 0.0f;
      }
    }
  }
  (void)num_sub;
  __m256i v[16];
  for (int64_t c = 0; c < cols / 32; ++c) {
    for (int half = 0; half < 2; ++half) {
      for (int i = 0; i < 16; ++i) {
        const uint8_t* row = rows[16 * half + i];
        v[i] = row ? C::decode32(row, c) : _mm256_setzero_si256();
      }
      transpose_16x8_dwords(v, tile.codes + c * 1024 + half * 64);
    }
  }
}

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// y[t0 + t][r0 .. r0 + num_rows) for T tokens from a decoded tile.
template <class C, int T>
void gemm_micro(const QuantJob& job, const Tile& tile, int64_t r0, int num_rows, int64_t t0) {
  constexpr int S = C::kS;
  ActRow a[T];
  for (int t = 0; t < T; ++t) a[t] = act_row(job.act, job.act_base, t0 + t);
  __m512 acc[2][T];
  for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
  const int64_t num_sub = job.cols / S;
  for (int64_t j = 0; j < num_sub; ++j) {
    __m512i dot[2][T];
    for (int t = 0; t < T; ++t) {
      dot[0][t] = dot[1][t] = C::kShift
                                  ? _mm512_slli_epi32(_mm512_set1_epi32(a[t].nsum[j]), C::kShift)
                                  : _mm512_setzero_si512();
    }
    const uint8_t* codes = tile.codes + j * (S / 4) * 128;
    const int64_t e = j * S;
#pragma GCC unroll 8
    for (int g = 0; g < S / 4; ++g) {
      const __m512i w0 = _mm512_load_si512(codes + g * 128);
      const __m512i w1 = _mm512_load_si512(codes + g * 128 + 64);
      for (int t = 0; t < T; ++t) {
        const __m512i x = _mm512_set1_epi32(load_i32(a[t].qs + e + 4 * g));
        dot[0][t] = _mm512_dpbusd_epi32(dot[0][t], w0, x);
        dot[1][t] = _mm512_dpbusd_epi32(dot[1][t], w1, x);
      }
    }
    const __m512 ws0 = _mm512_load_ps(tile.ws + j * kTileRows);
    const __m512 ws1 = _mm512_load_ps(tile.ws + j * kTileRows + 16);
    for (int t = 0; t < T; ++t) {
      const __m512 d = _mm512_set1_ps(a[t].da[j]);
      acc[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[0][t]), _mm512_mul_ps(ws0, d), acc[0][t]);
      acc[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[1][t]), _mm512_mul_ps(ws1, d), acc[1][t]);
    }
    if (C::kMin) {
      const __m512 mw0 = _mm512_load_ps(tile.mw + j * kTileRows);
      const __m512 mw1 = _mm512_load_ps(tile.mw + j * kTileRows + 16);
      for (int t = 0; t < T; ++t) {
        const __m512 s = _mm512_set1_ps(a[t].sa[j]);
        acc[0][t] = _mm512_fmadd_ps(mw0, s, acc[0][t]);
        acc[1][t] = _mm512_fmadd_ps(mw1, s, acc[1][t]);
      }
    }
  }
  const __mmask16 m0 = first_lanes16(num_rows), m1 = first_lanes16(num_rows - 16);
  for (int t = 0; t < T; ++t) {
    float* y = job.y + (t0 + t) * job.rows + r0;
    _mm512_mask_storeu_ps(y, m0, acc[0][t]);
    if (num_rows > 16) _mm512_mask_storeu_ps(y + 16, m1, acc[1][t]);
  }
}

struct TileBuffers {
  AlignedBuffer codes, ws, mw;
};

template <class C>
void matmul_q_typed(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (job.num_tokens <= 4) {
    switch (t1 - t0) {
      case 1:
        return gemv_rows<C, 1>(job, r0, r1, t0);
      case 2:
        return gemv_rows<C, 2>(job, r0, r1, t0);
      case 3:
        return gemv_rows<C, 3>(job, r0, r1, t0);
      case 4:
        return gemv_rows<C, 4>(job, r0, r1, t0);
      default:
        return;
    }
  }
  thread_local TileBuffers buffers;
  const int64_t num_sub = job.cols / C::kS;
  Tile tile{buffers.codes.get(job.cols * kTileRows),
            reinterpret_cast<float*>(buffers.ws.get(num_sub * kTileRows * sizeof(float))),
            reinterpret_cast<float*>(buffers.mw.get(num_sub * kTileRows * sizeof(float)))};
  for (int64_t rt = r0; rt < r1; rt += kTileRows) {
    const int num_rows = static_cast<int>(std::min<int64_t>(kTileRows, r1 - rt));
    decode_tile<C>(job, rt, num_rows, tile);
    int64_t t = t0;
    for (; t + 4 <= t1; t += 4) gemm_micro<C, 4>(job, tile, rt, num_rows, t);
    switch (t1 - t) {
      case 1:
        gemm_micro<C, 1>(job, tile, rt, num_rows, t);
        break;
      case 2:
        gemm_micro<C, 2>(job, tile, rt, num_rows, t);
        break;
      case 3:
        gemm_micro<C, 3>(job, tile, rt, num_rows, t);
        break;
      default:
        break;
    }
  }
}

void matmul_q(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  switch (job.dtype) {
    case DType::kQ4_0:
      return matmul_q_typed<CodecQ4_0>(job, r0, r1, t0, t1);
    case DType::kQ4_1:
      return matmul_q_typed<CodecQ4_1>(job, r0, r1, t0, t1);
    case DType::kQ5_0:
      return matmul_q_typed<CodecQ5_0>(job, r0, r1, t0, t1);
    case DType::kQ5_1:
      return matmul_q_typed<CodecQ5_1>(job, r0, r1, t0, t1);
    case DType::kQ8_0:
      return matmul_q_typed<CodecQ8_0>(job, r0, r1, t0, t1);
    case DType::kQ8_K:
      return matmul_q_typed<CodecQ8_K>(job, r0, r1, t0, t1);
    case DType::kQ2_K:
      return matmul_q_typed<CodecQ2_K>(job, r0, r1, t0, t1);
    case DType::kQ3_K:
      return matmul_q_typed<CodecQ3_K>(job, r0, r1, t0, t1);
    case DType::kQ4_K:
      return matmul_q_typed<CodecQ4_K>(job, r0, r1, t0, t1);
    case DType::kQ5_K:
      return matmul_q_typed<CodecQ5_K>(job, r0, r1, t0, t1);
    case DType::kQ6_K:
      return matmul_q_typed<CodecQ6_K>(job, r0, r1, t0, t1);
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// F32/F16/BF16 weights: blocks of R rows x T tokens, 16 columns per step, f32 FMA.

template <DType D>
inline __m512 load_w16(const uint8_t* row, int64_t k, __mmask16 m) {
  if constexpr (D == DType::kF32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  } else if constexpr (D == DType::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k));
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <DType D, int R, int T>
void float_block(const FloatJob& job, int64_t r, int64_t t) {
  __m512 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = job.w + (r + i) * job.row_bytes;
  const float* xs[T];
  for (int j = 0; j < T; ++j) xs[j] = job.x + (t + j) * job.cols;
  for (int64_t k = 0; k < job.cols; k += 16) {
    const __mmask16 m = first_lanes16(static_cast<int>(std::min<int64_t>(16, job.cols - k)));
    __m512 x[T];
    for (int j = 0; j < T; ++j) x[j] = _mm512_maskz_loadu_ps(m, xs[j] + k);
    for (int i = 0; i < R; ++i) {
      const __m512 w = load_w16<D>(rows[i], k, m);
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_fmadd_ps(w, x[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) job.y[(t + j) * job.rows + r + i] = _mm512_reduce_add_ps(acc[i][j]);
}

template <DType D, int T>
void float_rows(const FloatJob& job, int64_t r0, int64_t r1, int64_t t) {
  constexpr int R = T == 1 ? 8 : 4;
  int64_t r = r0;
  for (; r + R <= r1; r += R) float_block<D, R, T>(job, r, t);
  for (; r < r1; ++r) float_block<D, 1, T>(job, r, t);
}

// Many tokens: 32 rows converted to f32 once into a row-interleaved tile [cols][32], then a 2x6
// register-blocked micro-kernel (one broadcast activation against 16 rows per FMA), so no
// horizontal sums and each weight is converted once per call.
template <DType D>
void float_tile(const FloatJob& job, int64_t r0, int num_rows, float* tile) {
  alignas(64) float v[16];
  for (int i = 0; i < kTileRows; ++i) {
    if (i >= num_rows) {
      for (int64_t k = 0; k < job.cols; ++k) tile[k * kTileRows + i] = 0.0f;
      continue;
    }
    const uint8_t* row = job.w + (r0 + i) * job.row_bytes;
    for (int64_t k = 0; k < job.cols; k += 16) {
      const int n = static_cast<int>(std::min<int64_t>(16, job.cols - k));
      _mm512_store_ps(v, load_w16<D>(row, k, first_lanes16(n)));
      for (int j = 0; j < n; ++j) tile[(k + j) * kTileRows + i] = v[j];
    }
  }
}

template <int T>
void float_micro(const FloatJob& job, const float* tile, int64_t r0, int num_rows, int64_t t0) {
  __m512 acc[2][T];
  for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
  const float* xs[T];
  for (int t = 0; t < T; ++t) xs[t] = job.x + (t0 + t) * job.cols;
  for (int64_t k = 0; k < job.cols; ++k) {
    const __m512 w0 = _mm512_load_ps(tile + k * kTileRows);
    const __m512 w1 = _mm512_load_ps(tile + k * kTileRows + 16);
    for (int t = 0; t < T; ++t) {
      const __m512 x = _mm512_set1_ps(xs[t][k]);
      acc[0][t] = _mm512_fmadd_ps(w0, x, acc[0][t]);
      acc[1][t] = _mm512_fmadd_ps(w1, x, acc[1][t]);
    }
  }
  const __mmask16 m0 = first_lanes16(num_rows), m1 = first_lanes16(num_rows - 16);
  for (int t = 0; t < T; ++t) {
    float* y = job.y + (t0 + t) * job.rows + r0;
    _mm512_mask_storeu_ps(y, m0, acc[0][t]);
    if (num_rows > 16) _mm512_mask_storeu_ps(y + 16, m1, acc[1][t]);
  }
}

struct FloatTileBuffer {
  AlignedBuffer tile;
};

template <DType D>
void matmul_f_typed(const FloatJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (job.num_tokens > 4) {
    thread_local FloatTileBuffer buffer;
    auto* tile = reinterpret_cast<float*>(buffer.tile.get(job.cols * kTileRows * sizeof(float)));
    for (int64_t rt = r0; rt < r1; rt += kTileRows) {
      const int num_rows = static_cast<int>(std::min<int64_t>(kTileRows, r1 - rt));
      float_tile<D>(job, rt, num_rows, tile);
      int64_t t = t0;
      for (; t + 6 <= t1; t += 6) float_micro<6>(job, tile, rt, num_rows, t);
      switch (t1 - t) {
        case 1:
          float_micro<1>(job, tile, rt, num_rows, t);
          break;
        case 2:
          float_micro<2>(job, tile, rt, num_rows, t);
          break;
        case 3:
          float_micro<3>(job, tile, rt, num_rows, t);
          break;
        case 4:
          float_micro<4>(job, tile, rt, num_rows, t);
          break;
        case 5:
          float_micro<5>(job, tile, rt, num_rows, t);
          break;
        default:
          break;
      }
    }
    return;
  }
  int64_t t = t0;
  for (; t + 4 <= t1; t += 4) float_rows<D, 4>(job, r0, r1, t);
  switch (t1 - t) {
    case 1:
      float_rows<D, 1>(job, r0, r1, t);
      break;
    case 2:
      float_rows<D, 2>(job, r0, r1, t);
      break;
    case 3:
      float_rows<D, 3>(job, r0, r1, t);
      break;
    default:
      break;
  }
}

void matmul_f(const FloatJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  switch (job.dtype) {
    case DType::kF32:
      return matmul_f_typed<DType::kF32>(job, r0, r1, t0, t1);
    case DType::kF16:
      return matmul_f_typed<DType::kF16>(job, r0, r1, t0, t1);
    case DType::kBF16:
      return matmul_f_typed<DType::kBF16>(job, r0, r1, t0, t1);
    default:
      return;
  }
}

}  // namespace

const KernelSet& avx512_kernels() {
  static const KernelSet k{quantize_act_row, matmul_q, matmul_f, kTileRows, 4, false};
  return k;
}

}  // namespace cvllm::cpu::internal
