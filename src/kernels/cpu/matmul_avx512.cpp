// AVX-512 (F, BW, VL, DQ, VNNI) matmul kernels. Compiled with AVX-512 flags (see
// src/CMakeLists.txt); only called when cpu_features says the CPU has them.
//
// Batch invariance: y[t][r] must not depend on how many tokens share the call, so every kernel
// here adds the products of one (row, token) in one canonical order of f32 operations, whatever
// the number of tokens and whichever kernel (GEMV, GEMM, remainder) computes it.
//
// Quantized weights (canonical form: matmul_internal.h). The order: per sub-block j the exact
// integer dot product (offset correction included), then, over j in increasing order,
//     acc = fma(f32(dot_j), ws_j * da_j, acc);  if the type has a min: acc = fma(mw_j, sa_j, acc)
// starting from acc = 0 (the scalar kernel's formula with fused multiply-adds). Lanes are rows:
//  - GEMV (1..4 tokens): 16 rows at a time, streamed once. Per 64 elements and row one decode and
//    per token one vpdpbusd (16 lanes of 4-element dots); three shuffle-and-add steps over the 16
//    rows turn those into per-(row, sub-block) sums with rows in lanes, then the f32 step above.
//    Scales are decoded for 16 rows at once straight into that layout. Software prefetch keeps
//    enough DRAM reads in flight for one core.
//  - GEMM (more tokens): a tile of 32 rows is decoded once into a row-interleaved layout (each
//    64-byte vector holds 4 consecutive codes of 16 rows), then a 2x4 register-blocked micro-kernel
//    runs vpdpbusd with one broadcast 4-byte activation group against 16 rows at a time, so each
//    lane accumulates one row's exact integer dot product over a sub-block, then the same f32 step.
// F32/F16/BF16 weights: the order is 16 lanes of FMAs over columns k = lane (mod 16), then the
// _mm512_reduce_add_ps tree. Up to 4 tokens, blocks of rows x tokens stream the weights; more
// tokens run the same blocks over 32-row tiles converted to f32 once.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

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
// Weight codecs. Each gives:
//   decode32(row, c): the 32 codes of chunk c (elements 32c..32c+31) of one row as u8;
//   decode64(row, c): chunks c and c+1 (c even), in element order, or with kPermuted in the
//     128-bit lane order [elements 0-15, 32-47, 16-31, 48-63] (the GEMV permutes the activations
//     to match);
//   rows_scales(rows, g, n_sub, ws, mw): for 16 rows at once (rows[i] is row i), ws[j] and mw[j]
//     of sub-block j (< n_sub) of scale group g, row i in lane i (a group is 16 legacy blocks or
//     one K-quant super-block).

inline __m256i nibbles32(const uint8_t* qs) {  // 16 bytes -> low nibbles then high nibbles
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

// Two legacy blocks' 16 code bytes -> their 64 codes in the lane order of kPermuted (below):
// [q0 low nibbles, q1 low, q0 high, q1 high], built with loads and masked shifts only (the
// shuffle ports are the GEMV's bottleneck).
inline __m512i nibbles64(const uint8_t* qs0, const uint8_t* qs1) {
  __m512i z = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
  z = _mm512_mask_broadcast_i32x4(z, 0xF0F0,
                                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)));
  z = _mm512_mask_srli_epi16(z, 0xFFFF0000, z, 4);
  return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Scales of 16 rows at once, row i in lane i, the layout both the GEMV and the GEMM consume. They
// are transposed in registers: with hardware gathers instead the GEMV ran at half speed.

// The 16 bytes at `off` of each row, transposed: lane i of out[k] is dword k of row i's bytes.
inline void load_rows_x4(const uint8_t* const* rows, size_t off, __m512i* out) {
  __m512i v[4];  // v[m], 128-bit lane q: row 4q + m
  auto lane = [&](int row) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[row] + off)); };
  for (int m = 0; m < 4; ++m) {
    // The lane index of an insert must be a compile-time constant (clang checks it before
    // unrolling), hence three explicit inserts.
    v[m] = _mm512_castsi128_si512(lane(m));
    v[m] = _mm512_inserti32x4(v[m], lane(4 + m), 1);
    v[m] = _mm512_inserti32x4(v[m], lane(8 + m), 2);
    v[m] = _mm512_inserti32x4(v[m], lane(12 + m), 3);
  }
  const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]), t1 = _mm512_unpacklo_epi32(v[2], v[3]);
  const __m512i t2 = _mm512_unpackhi_epi32(v[0], v[1]), t3 = _mm512_unpackhi_epi32(v[2], v[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t1);
  out[1] = _mm512_unpackhi_epi64(t0, t1);
  out[2] = _mm512_unpacklo_epi64(t2, t3);
  out[3] = _mm512_unpackhi_epi64(t2, t3);
}

// The f16 in the low (high) 16 bits of each 32-bit lane, as f32.
inline __m512 f16_low(__m512i v) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}
inline __m512 f16_high(__m512i v) {
  return f16_low(_mm512_srli_epi32(v, 16));
}

// Byte k of each 32-bit lane, zero- or sign-extended.
inline __m512i byte_u(__m512i v, int k) {
  return _mm512_and_si512(_mm512_srli_epi32(v, 8 * k), _mm512_set1_epi32(0xFF));
}
inline __m512i byte_s(__m512i v, int k) {
  return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * k), 24);
}

// Legacy 32-element blocks: f16 d at byte 0, f16 m at byte 2 when there is a min; a scale group
// is 16 blocks. The scale words of one row's 16 blocks are picked out of whole 64-byte loads with
// 2-source word permutes (one per 128 bytes).
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

// Words [d_0..d_15 | m_0..m_15] of the n_sub (<= 16) blocks starting at `base`.
template <int kBlockBytes, bool kHasMin>
inline __m512i legacy_scale_words(const uint8_t* base, int n_sub) {
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
  return words;
}

// In: w[i] = [d_0..d_15 | m_0..m_15] of row i. Out: o[j] = [d_j of rows 0..15 | m_j of rows
// 0..15]. Three 8x8 word transposes inside 128-bit lanes, then one qword permute joins rows 0-7
// and 8-15.
inline void transpose_scale_words(const __m512i* w, __m512i* o) {
  __m512i s1[16], s2[16], s3[16];
  for (int i = 0; i < 16; i += 2) {
    s1[i] = _mm512_unpacklo_epi16(w[i], w[i + 1]);
    s1[i + 1] = _mm512_unpackhi_epi16(w[i], w[i + 1]);
  }
  for (int h = 0; h < 16; h += 8) {  // rows h..h+7
    for (int p = 0; p < 2; ++p) {    // rows h+4p..h+4p+3
      const __m512i* a = s1 + h + 4 * p;
      __m512i* out = s2 + h + 4 * p;
      out[0] = _mm512_unpacklo_epi32(a[0], a[2]);  // columns 0, 1 of each lane
      out[1] = _mm512_unpackhi_epi32(a[0], a[2]);  // 2, 3
      out[2] = _mm512_unpacklo_epi32(a[1], a[3]);  // 4, 5
      out[3] = _mm512_unpackhi_epi32(a[1], a[3]);  // 6, 7
    }
    for (int k = 0; k < 4; ++k) {  // s3[h + c]: column c of each lane, rows h..h+7
      s3[h + 2 * k] = _mm512_unpacklo_epi64(s2[h + k], s2[h + 4 + k]);
      s3[h + 2 * k + 1] = _mm512_unpackhi_epi64(s2[h + k], s2[h + 4 + k]);
    }
  }
  // s3[c] (rows 0-7) and s3[8 + c] (rows 8-15) hold, per 128-bit lane: d_c, d_8+c, m_c, m_8+c.
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int c = 0; c < 8; ++c) {
    o[c] = _mm512_permutex2var_epi64(s3[c], lo, s3[8 + c]);
    o[8 + c] = _mm512_permutex2var_epi64(s3[c], hi, s3[8 + c]);
  }
}

template <int kBlockBytes, bool kHasMin>
inline void legacy_rows_scales(const uint8_t* const* rows, int64_t g, int n_sub, __m512* ws,
                               __m512* mw) {
  __m512i w[16], o[16];
  for (int i = 0; i < 16; ++i) {
    w[i] = legacy_scale_words<kBlockBytes, kHasMin>(rows[i] + 16 * g * kBlockBytes, n_sub);
  }
  transpose_scale_words(w, o);
  for (int j = 0; j < n_sub; ++j) {
    ws[j] = _mm512_cvtph_ps(_mm512_castsi512_si256(o[j]));
    if (kHasMin) mw[j] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(o[j], 1));
  }
}

struct CodecQ4_0 {
  static constexpr bool kPermuted = true;
  static constexpr int kS = 32, kShift = 3, kGroupSub = 16;
  static constexpr bool kMin = false;
  static constexpr int kBytes = sizeof(BlockQ4_0);
  static __m256i decode32(const uint8_t* row, int64_t c) { return nibbles32(row + c * kBytes + 2); }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    return nibbles64(row + c * kBytes + 2, row + (c + 1) * kBytes + 2);
  }
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_rows_scales<kBytes, false>(rows, g, n, ws, mw);
  }
};

struct CodecQ4_1 {
  static constexpr bool kPermuted = true;
  static constexpr int kS = 32, kShift = 0, kGroupSub = 16;
  static constexpr bool kMin = true;
  static constexpr int kBytes = sizeof(BlockQ4_1);
  static __m256i decode32(const uint8_t* row, int64_t c) { return nibbles32(row + c * kBytes + 4); }
  static __m512i decode64(const uint8_t* row, int64_t c) {
    return nibbles64(row + c * kBytes + 4, row + (c + 1) * kBytes + 4);
  }
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_rows_scales<kBytes, true>(rows, g, n, ws, mw);
  }
};

template <int kBytes_, int kQhOffset, bool kHasMin>
struct CodecQ5 {
  static constexpr bool kPermuted = true;
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
    // High bits in the permuted order: 16 bits of block 0, 16 of block 1, 16 of 0, 16 of 1.
    const __mmask64 high = _pdep_u64(load_u32(b0 + kQhOffset), 0x0000FFFF0000FFFFull) |
                           _pdep_u64(load_u32(b1 + kQhOffset), 0xFFFF0000FFFF0000ull);
    return _mm512_or_si512(nibbles64(b0 + kQhOffset + 4, b1 + kQhOffset + 4),
                           _mm512_maskz_set1_epi8(high, 0x10));
  }
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_rows_scales<kBytes, kHasMin>(rows, g, n, ws, mw);
  }
};
using CodecQ5_0 = CodecQ5<sizeof(BlockQ5_0), 2, false>;
using CodecQ5_1 = CodecQ5<sizeof(BlockQ5_1), 4, true>;

struct CodecQ8_0 {
  static constexpr bool kPermuted = false;
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
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    legacy_rows_scales<kBytes, false>(rows, g, n, ws, mw);
  }
};

struct CodecQ8_K {
  static constexpr bool kPermuted = false;
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
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    __m512i v[4];
    load_rows_x4(rows, g * kBytes, v);
    const __m512 d = _mm512_castsi512_ps(v[0]);  // f32 d
    for (int j = 0; j < 8; ++j) ws[j] = d;
  }
};

struct CodecQ2_K {
  static constexpr bool kPermuted = false;
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
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    __m512i sc4[4], v[4];
    load_rows_x4(rows, g * kBytes, sc4);     // 16 scale bytes
    load_rows_x4(rows, g * kBytes + 68, v);  // v[3]: f16 d, dmin at bytes 80..83
    const __m512 d = f16_low(v[3]), dmin = f16_high(v[3]);
    for (int k = 0; k < 4; ++k) {
      const __m512i sc = sc4[k];
      for (int q = 0; q < 4; ++q) {
        const __m512i byte = byte_u(sc, q);
        ws[4 * k + q] =
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(byte, _mm512_set1_epi32(0x0F))));
        mw[4 * k + q] =
            _mm512_sub_ps(_mm512_setzero_ps(),
                          _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_srli_epi32(byte, 4))));
      }
    }
  }
};

struct CodecQ3_K {
  static constexpr bool kPermuted = false;
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
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    // 16 six-bit scales: low 4 bits from bytes 96..103, high 2 bits from bytes 104..107.
    __m512i v[4], dv[4];
    load_rows_x4(rows, g * kBytes + 92, v);   // v[1..3]: bytes 96..107
    load_rows_x4(rows, g * kBytes + 94, dv);  // dv[3]: bytes 106..109, f16 d at 108
    const __m512 d = f16_high(dv[3]);
    const __m512i p0 = v[1], p1 = v[2], p2 = v[3];
    for (int j = 0; j < 16; ++j) {
      const __m512i low = _mm512_and_si512(
          _mm512_srli_epi32(j % 8 < 4 ? p0 : p1, 8 * (j % 4) + 4 * (j / 8)), _mm512_set1_epi32(15));
      const __m512i high =
          _mm512_and_si512(_mm512_srli_epi32(p2, 8 * (j % 4) + 2 * (j / 4)), _mm512_set1_epi32(3));
      const __m512i sc =
          _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
      ws[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
    }
  }
};

template <bool kFive>
struct CodecQ45_K {
  static constexpr bool kPermuted = false;
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
    __m512i v = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * (k / 2))));
    v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000, v, 4), _mm512_set1_epi8(0x0F));
    if (kFive) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      const uint64_t h0 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << k)));
      const uint64_t h1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(2 << k)));
      v = _mm512_or_si512(v, _mm512_maskz_set1_epi8(h0 | (h1 << 32), 0x10));
    }
    return v;
  }
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    // Packed six-bit scales and mins (k_scale_min in dequantize.h) in words a, b, c.
    __m512i v[4];
    load_rows_x4(rows, g * kBytes, v);  // f16 d and dmin, then the 12 bytes
    const __m512 d = f16_low(v[0]), dmin = f16_high(v[0]);
    const __m512i a = v[1], b = v[2], c = v[3];
    const __m512i m6 = _mm512_set1_epi32(0x3F3F3F3F), m4 = _mm512_set1_epi32(0x0F0F0F0F);
    const __m512i top = _mm512_set1_epi32(0x30303030);
    const __m512i sc[2] = {
        _mm512_and_si512(a, m6),
        _mm512_or_si512(_mm512_and_si512(c, m4), _mm512_and_si512(_mm512_srli_epi32(a, 2), top))};
    const __m512i mn[2] = {_mm512_and_si512(b, m6),
                           _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 4), m4),
                                           _mm512_and_si512(_mm512_srli_epi32(b, 2), top))};
    for (int j = 0; j < 8; ++j) {
      ws[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(byte_u(sc[j / 4], j % 4)));
      mw[j] = _mm512_sub_ps(_mm512_setzero_ps(),
                            _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(byte_u(mn[j / 4], j % 4))));
    }
  }
};
using CodecQ4_K = CodecQ45_K<false>;
using CodecQ5_K = CodecQ45_K<true>;

struct CodecQ6_K {
  static constexpr bool kPermuted = false;
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
  static void rows_scales(const uint8_t* const* rows, int64_t g, int n, __m512* ws, __m512* mw) {
    __m512i sc4[4], v[4];
    load_rows_x4(rows, g * kBytes + 192, sc4);  // 16 int8 scales
    load_rows_x4(rows, g * kBytes + 194, v);    // v[3]: bytes 206..209, f16 d at 208
    const __m512 d = f16_high(v[3]);
    for (int k = 0; k < 4; ++k) {
      const __m512i sc = sc4[k];
      for (int q = 0; q < 4; ++q)
        ws[4 * k + q] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(byte_s(sc, q)));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// GEMV: 16 rows at a time, lanes are rows, in the GEMM's order of f32 operations.

// The dot products of 16 rows' 64 codes (chunks c, c+1) with T tokens' activations x[t], summed
// exactly per (row, sub-block): lane i of z[t][k] is row i's integer dot over sub-block k of the
// 64 codes (k < 64 / S). kHalf: only chunk c exists (the last 32 codes of a legacy row). Integer
// sums are exact, so their order is free; this one is 3 shuffle-and-add steps per 16 rows.
template <class C, int T, bool kHalf>
inline void row_dots16(const uint8_t* const* rows, int64_t c, const __m512i* x, __m512i (*z)[4]) {
  constexpr bool kPermuted = C::kPermuted && !kHalf;  // x permuted to match the codes
  __m512i y[T][4];  // y[t][m]: 128-bit lane q, element k = row 4m + k's sum over lanes 4q..4q+3
#pragma GCC unroll 4
  for (int m = 0; m < 4; ++m) {
    __m512i v[T][4];
    for (int k = 0; k < 4; ++k) {
      const uint8_t* row = rows[4 * m + k];
      const __m512i codes =
          kHalf ? _mm512_zextsi256_si512(C::decode32(row, c)) : C::decode64(row, c);
      for (int t = 0; t < T; ++t) {
        v[t][k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, x[t]);
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(v[t][0], v[t][1]),
                                         _mm512_unpackhi_epi32(v[t][0], v[t][1]));
      const __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(v[t][2], v[t][3]),
                                         _mm512_unpackhi_epi32(v[t][2], v[t][3]));
      y[t][m] = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    }
  }
  for (int t = 0; t < T; ++t) {
    const __m512i* w = y[t];
    if constexpr (C::kS == 16) {  // sub-block k = 128-bit lane k: transpose 4x4 128-bit lanes
      const __m512i a = _mm512_shuffle_i32x4(w[0], w[1], _MM_SHUFFLE(1, 0, 1, 0));
      const __m512i b = _mm512_shuffle_i32x4(w[0], w[1], _MM_SHUFFLE(3, 2, 3, 2));
      const __m512i c2 = _mm512_shuffle_i32x4(w[2], w[3], _MM_SHUFFLE(1, 0, 1, 0));
      const __m512i d = _mm512_shuffle_i32x4(w[2], w[3], _MM_SHUFFLE(3, 2, 3, 2));
      z[t][0] = _mm512_shuffle_i32x4(a, c2, _MM_SHUFFLE(2, 0, 2, 0));
      z[t][1] = _mm512_shuffle_i32x4(a, c2, _MM_SHUFFLE(3, 1, 3, 1));
      z[t][2] = _mm512_shuffle_i32x4(b, d, _MM_SHUFFLE(2, 0, 2, 0));
      z[t][3] = _mm512_shuffle_i32x4(b, d, _MM_SHUFFLE(3, 1, 3, 1));
    } else if constexpr (kPermuted) {  // sub-block k = 128-bit lanes k, k + 2
      const __m512i a = _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_i32x4(w[0], w[1], _MM_SHUFFLE(3, 2, 3, 2)));
      const __m512i b = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2], w[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_i32x4(w[2], w[3], _MM_SHUFFLE(3, 2, 3, 2)));
      z[t][0] = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));
      z[t][1] = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    } else {  // sub-block k = 128-bit lanes 2k, 2k+1
      const __m512i a = _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                         _mm512_shuffle_i32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
      const __m512i b = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2], w[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                         _mm512_shuffle_i32x4(w[2], w[3], _MM_SHUFFLE(3, 1, 3, 1)));
      z[t][0] = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));
      z[t][1] = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    }
  }
}

// -offset * sum(q over sub-block j), the integer correction of a type with an offset.
template <class C>
inline __m512i offset_term(const ActRow& a, int64_t j) {
  return _mm512_set1_epi32(a.nsum[j] * (1 << C::kShift));
}

// The canonical f32 step (top of the file) for sub-block j of 16 rows (lanes) and one token, the
// only place the GEMV and the GEMM turn integer dot products into floats. dot: exact, offset
// correction included.
template <class C>
inline __m512 scale_step(__m512 acc, __m512i dot, const ActRow& a, int64_t j, __m512 ws,
                         __m512 mw) {
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws, _mm512_set1_ps(a.da[j])), acc);
  if (C::kMin) acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.sa[j]), acc);
  return acc;
}

// Elements [e, e + 64) (or [e, e + 32) with kHalf) of 16 rows into acc[t]; ws/mw are the scales of
// the scale group, jl the index in it of the first sub-block.
template <class C, int T, bool kHalf>
inline void gemv_step(const uint8_t* const* rows, int64_t e, const ActRow* a, const __m512* ws,
                      const __m512* mw, int jl, __m512* acc) {
  __m512i x[T];
  for (int t = 0; t < T; ++t) {
    x[t] = _mm512_loadu_si512(a[t].qs + e);  // 64-byte padded rows
    if (C::kPermuted && !kHalf) x[t] = _mm512_shuffle_i32x4(x[t], x[t], _MM_SHUFFLE(3, 1, 2, 0));
  }
  __m512i z[T][4];
  row_dots16<C, T, kHalf>(rows, e / 32, x, z);
  constexpr int kSubs = kHalf ? 1 : 64 / C::kS;
  for (int k = 0; k < kSubs; ++k) {
    for (int t = 0; t < T; ++t) {
      const int64_t j = e / C::kS + k;
      const __m512i dot = C::kShift ? _mm512_add_epi32(z[t][k], offset_term<C>(a[t], j)) : z[t][k];
      const __m512 m = C::kMin ? mw[jl + k] : _mm512_setzero_ps();  // (unset without a min)
      acc[t] = scale_step<C>(acc[t], dot, a[t], j, ws[jl + k], m);
    }
  }
}

// Rows [rb, rb + n), n <= 16, against T tokens.
template <class C, int T>
void gemv_block(const QuantJob& job, int64_t rb, int n, const ActRow* a, int64_t t0) {
  constexpr int S = C::kS;
  constexpr int kGroupElems = C::kGroupSub * S;
  const uint8_t* rows[16];
  for (int i = 0; i < 16; ++i) {
    rows[i] = job.w + (rb + (i < n ? i : 0)) * job.row_bytes;  // missing rows: never stored
  }
  // Weights come from DRAM once per call; the hardware prefetcher alone keeps too few lines in
  // flight for one core to reach the memory bandwidth. Each step prefetches its share of the next
  // 16 rows (contiguous in memory), so they arrive while this block is being computed.
  const size_t pf_step = (16 * job.row_bytes / ((job.cols + 63) / 64) + 63) & ~size_t{63};
  const char* pf = reinterpret_cast<const char*>(job.w + (rb + 16) * job.row_bytes);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  __m512 ws[C::kGroupSub], mw[C::kGroupSub];
  for (int64_t e0 = 0, g = 0; e0 < job.cols; e0 += kGroupElems, ++g) {
    const int n_el = static_cast<int>(std::min<int64_t>(kGroupElems, job.cols - e0));
    C::rows_scales(rows, g, n_el / S, ws, mw);
    int p = 0;
    for (; p + 64 <= n_el; p += 64) {
      for (size_t b = 0; b < pf_step; b += 64) _mm_prefetch(pf + b, _MM_HINT_T0);
      pf += pf_step;
      gemv_step<C, T, false>(rows, e0 + p, a, ws, mw, p / S, acc);
    }
    if (p < n_el) gemv_step<C, T, true>(rows, e0 + p, a, ws, mw, p / S, acc);
  }
  for (int t = 0; t < T; ++t) {
    _mm512_mask_storeu_ps(job.y + (t0 + t) * job.rows + rb, first_lanes16(n), acc[t]);
  }
}

// GEMV: rows [r0, r1) against T tokens starting at t0.
template <class C, int T>
void gemv_rows(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0) {
  ActRow a[T];
  for (int t = 0; t < T; ++t) a[t] = act_row(job.act, job.act_base, t0 + t);
  for (int64_t rb = r0; rb < r1; rb += 16) {
    gemv_block<C, T>(job, rb, static_cast<int>(std::min<int64_t>(16, r1 - rb)), a, t0);
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
  const uint8_t* rows[kTileRows];
  for (int i = 0; i < kTileRows; ++i)
    rows[i] = i < num_rows ? job.w + (r0 + i) * job.row_bytes : nullptr;
  // Scales: [sub-block][row], 16 rows (one half of the tile) at a time, exactly as the GEMV gets
  // them. Missing rows repeat row 0 (their codes are zero and their lanes never stored).
  for (int half = 0; half < 2; ++half) {
    const uint8_t* half_rows[16];
    for (int i = 0; i < 16; ++i) half_rows[i] = rows[16 * half + i] ? rows[16 * half + i] : rows[0];
    __m512 ws[C::kGroupSub], mw[C::kGroupSub];
    for (int64_t e0 = 0, g = 0; e0 < cols; e0 += C::kGroupSub * S, ++g) {
      const int n_sub = static_cast<int>(std::min<int64_t>(C::kGroupSub, (cols - e0) / S));
      C::rows_scales(half_rows, g, n_sub, ws, mw);
      for (int j = 0; j < n_sub; ++j) {
        _mm512_store_ps(tile.ws + (e0 / S + j) * kTileRows + 16 * half, ws[j]);
        if (C::kMin) _mm512_store_ps(tile.mw + (e0 / S + j) * kTileRows + 16 * half, mw[j]);
      }
    }
  }
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
      dot[0][t] = dot[1][t] = C::kShift ? offset_term<C>(a[t], j) : _mm512_setzero_si512();
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
    for (int h = 0; h < 2; ++h) {
      const __m512 ws = _mm512_load_ps(tile.ws + j * kTileRows + 16 * h);
      const __m512 mw = C::kMin ? _mm512_load_ps(tile.mw + j * kTileRows + 16 * h) : ws;
      for (int t = 0; t < T; ++t) acc[h][t] = scale_step<C>(acc[h][t], dot[h][t], a[t], j, ws, mw);
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
// F32/F16/BF16 weights. The one order of f32 operations for every kernel: 16 lanes, lane l
// accumulating columns k = l (mod 16) by FMA in increasing k (a partial last vector reads zeros),
// then _mm512_reduce_add_ps. Few tokens stream the weights; more tokens convert 32 rows to f32
// once and run the same blocks over the converted rows, so a row's value never depends on the
// batch.

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

// Steps of the 16-lane sum below: each adds two halves of the partial sums of a and b.
inline __m512 add_halves(__m512 a, __m512 b) {  // lanes 0-7: 8 partials of a, 8-15: of b
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
inline __m512 add_quarters(__m512 a, __m512 b) {  // 128-bit lane m: 4 partials of a, b, a, b
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
inline __m512 add_pairs(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
inline __m512 add_last(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Lane i of the result = the sum of the 16 lanes of v[i], added in exactly the order
// _mm512_reduce_add_ps adds them (halves, quarters, pairs, then the last two), so either may
// reduce any (row, token) sum. Written without loops so the caller's accumulators stay in
// registers.
inline __m512 reduce16(const __m512 (&v)[16]) {
  const __m512 w0 = add_halves(v[0], v[1]), w1 = add_halves(v[2], v[3]);
  const __m512 w2 = add_halves(v[4], v[5]), w3 = add_halves(v[6], v[7]);
  const __m512 w4 = add_halves(v[8], v[9]), w5 = add_halves(v[10], v[11]);
  const __m512 w6 = add_halves(v[12], v[13]), w7 = add_halves(v[14], v[15]);
  const __m512 x0 = add_quarters(w0, w1), x1 = add_quarters(w2, w3);
  const __m512 x2 = add_quarters(w4, w5), x3 = add_quarters(w6, w7);
  // Lane 4m + q holds the sum of v[4q + m].
  const __m512 z = add_last(add_pairs(x0, x1), add_pairs(x2, x3));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, z);
}

// Where one block of rows x tokens reads and writes: rows `row_bytes` apart from w, tokens `cols`
// floats apart from x, y[t][r] at y + t * y_stride + r.
struct FloatOperands {
  const uint8_t* w;
  size_t row_bytes;
  const float* x;
  int64_t cols;
  float* y;
  int64_t y_stride;
};

template <DType D, int R, int T>
void float_block(const FloatOperands& o, int64_t r) {
  constexpr int kN = R * T < 8 ? R * T : 16;  // accumulators; the 16-at-once reduction wants 16
  __m512 acc[kN];                             // acc[R * j + i]: row r + i, token j
#pragma GCC unroll 16
  for (int k = 0; k < kN; ++k) acc[k] = _mm512_setzero_ps();  // unrolled, or GCC memsets a copy
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = o.w + (r + i) * o.row_bytes;
  for (int64_t k = 0; k < o.cols; k += 16) {
    const __mmask16 m = k + 16 <= o.cols ? 0xFFFF : first_lanes16(static_cast<int>(o.cols - k));
    __m512 x[T];
    for (int j = 0; j < T; ++j) x[j] = _mm512_maskz_loadu_ps(m, o.x + j * o.cols + k);
    for (int i = 0; i < R; ++i) {
      const __m512 w = load_w16<D>(rows[i], k, m);
      for (int j = 0; j < T; ++j) acc[R * j + i] = _mm512_fmadd_ps(w, x[j], acc[R * j + i]);
    }
  }
  if constexpr (kN < 16) {
    for (int j = 0; j < T; ++j)
      for (int i = 0; i < R; ++i)
        o.y[j * o.y_stride + r + i] = _mm512_reduce_add_ps(acc[R * j + i]);
  } else {  // the same sums, 16 at a time
    alignas(64) float sums[16];
    _mm512_store_ps(sums, reduce16(acc));
    for (int j = 0; j < T; ++j)
      for (int i = 0; i < R; ++i) o.y[j * o.y_stride + r + i] = sums[R * j + i];
  }
}

// Rows [0, num_rows) of `o` against T tokens.
template <DType D, int T>
void float_rows(const FloatOperands& o, int64_t num_rows) {
  constexpr int R = T == 1 ? 8 : 4;
  int64_t r = 0;
  for (; r + R <= num_rows; r += R) float_block<D, R, T>(o, r);
  for (; r < num_rows; ++r) float_block<D, 1, T>(o, r);
}

// Tokens [t0, t1) in blocks of up to 4.
template <DType D>
void float_tokens(FloatOperands o, int64_t num_rows, int64_t t0, int64_t t1) {
  const float* x = o.x;
  float* y = o.y;
  int64_t t = t0;
  auto at = [&](int64_t tt) {
    o.x = x + tt * o.cols;
    o.y = y + tt * o.y_stride;
    return o;
  };
  for (; t + 4 <= t1; t += 4) float_rows<D, 4>(at(t), num_rows);
  switch (t1 - t) {
    case 1:
      return float_rows<D, 1>(at(t), num_rows);
    case 2:
      return float_rows<D, 2>(at(t), num_rows);
    case 3:
      return float_rows<D, 3>(at(t), num_rows);
    default:
      return;
  }
}

// 8 tokens against rows [0, num_rows) of an f32 tile: each block of 4 rows meets tokens 0-3, then
// tokens 4-7 while it is still in L1, so the tile streams from L2 once per 8 tokens.
inline void float_rows_8_tokens(const FloatOperands& o, int64_t num_rows) {
  FloatOperands hi = o;
  hi.x += 4 * o.cols;
  hi.y += 4 * o.y_stride;
  int64_t r = 0;
  for (; r + 4 <= num_rows; r += 4) {
    float_block<DType::kF32, 4, 4>(o, r);
    float_block<DType::kF32, 4, 4>(hi, r);
  }
  for (; r < num_rows; ++r) {
    float_block<DType::kF32, 1, 4>(o, r);
    float_block<DType::kF32, 1, 4>(hi, r);
  }
}

struct FloatTileBuffer {
  AlignedBuffer tile;
};

template <DType D>
void matmul_f_typed(const FloatJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (job.num_tokens <= 4) {
    const FloatOperands o{
        job.w + r0 * job.row_bytes, job.row_bytes, job.x, job.cols, job.y + r0, job.rows};
    return float_tokens<D>(o, r1 - r0, t0, t1);
  }
  // Many tokens: 32-row tiles stay in cache while every token passes over them. Weights are
  // converted to f32 once per tile (exactly, so the FMAs see the same values as the GEMV's)
  // instead of once per 4 tokens; F32 rows are copied, as one contiguous tile streams faster.
  thread_local FloatTileBuffer buffer;
  auto* tile = reinterpret_cast<float*>(buffer.tile.get(job.cols * kTileRows * sizeof(float)));
  // Results of 8 tokens go through a small buffer, so each token's 32 outputs are written as
  // whole 64-byte vectors into lines prefetched for writing one group earlier: scattered 16-byte
  // stores to a large output wait for a read of every line.
  alignas(64) float ybuf[8 * kTileRows];
  for (int64_t rt = r0; rt < r1; rt += kTileRows) {
    const int num_rows = static_cast<int>(std::min<int64_t>(kTileRows, r1 - rt));
    for (int i = 0; i < num_rows; ++i) {
      const uint8_t* row = job.w + (rt + i) * job.row_bytes;
      for (int64_t k = 0; k < job.cols; k += 16) {
        const __mmask16 m = first_lanes16(static_cast<int>(std::min<int64_t>(16, job.cols - k)));
        _mm512_mask_storeu_ps(tile + i * job.cols + k, m, load_w16<D>(row, k, m));
      }
    }
    const __mmask16 m0 = first_lanes16(num_rows), m1 = first_lanes16(num_rows - 16);
    for (int64_t t = t0; t < t1; t += 8) {
      const int64_t n = std::min<int64_t>(8, t1 - t);
      for (int64_t j = 8; j < std::min<int64_t>(16, t1 - t); ++j) {
        const char* y = reinterpret_cast<const char*>(job.y + (t + j) * job.rows + rt);
        _mm_prefetch(y, _MM_HINT_ET0);
        _mm_prefetch(y + 64, _MM_HINT_ET0);
        _mm_prefetch(y + 127, _MM_HINT_ET0);
      }
      const FloatOperands o{reinterpret_cast<const uint8_t*>(tile),
                            job.cols * sizeof(float),
                            job.x + t * job.cols,
                            job.cols,
                            ybuf,
                            kTileRows};
      if (n == 8) {
        float_rows_8_tokens(o, num_rows);
      } else {
        float_tokens<DType::kF32>(o, num_rows, 0, n);
      }
      for (int64_t j = 0; j < n; ++j) {
        float* y = job.y + (t + j) * job.rows + rt;
        _mm512_mask_storeu_ps(y, m0, _mm512_load_ps(ybuf + j * kTileRows));
        _mm512_mask_storeu_ps(y + 16, m1, _mm512_load_ps(ybuf + j * kTileRows + 16));
      }
    }
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
