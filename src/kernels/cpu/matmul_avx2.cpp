// AVX2 (+FMA, F16C) matmul kernels: the fallback for x86-64 CPUs without AVX-512 VNNI. Compiled
// with AVX2 flags (see src/CMakeLists.txt); only called when cpu_features says the CPU has them.
//
// Quantized weights use the canonical form of matmul_internal.h, one 32-element chunk per ymm:
// vpmaddubsw (u8 codes x s8 activations -> pairs summed to i16) then vpmaddwd with ones gives
// 8 exact i32 lanes of 4-element dot products. The i16 pair sums cannot saturate for codes up to
// 63 (2*63*127 < 32767); Q8_0/Q8_K codes would reach 255, so those two keep their signed values
// and use the sign trick (|w| x sign(a, w)) instead of the +128 offset. Each weight row is decoded
// once per group of up to 4 tokens.
// F32/F16/BF16 weights: blocks of rows x tokens of f32 FMA dot products.
// Batch invariance: one order of f32 operations per (row, token) whatever the block shape or the
// number of tokens. Quantized: 8 f32 lanes, FMA per 32-element chunk in order, hsum_ps, plus the
// min term summed on its own; plain: 8 lanes of FMA over 8-column steps, hsum_ps, scalar tail.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/matmul_internal.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"

namespace cvllm::cpu::internal {
namespace {

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32_128(__m128i s) {
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// ---------------------------------------------------------------------------------------------
// Activation quantization: the same formulas as quantize_act_row_scalar.

void quantize_act_row(const float* x, const ActLayout& l, bool with_lane_sums, uint8_t* row) {
  auto* qs = reinterpret_cast<int8_t*>(row);
  auto* da = reinterpret_cast<float*>(row + l.da_offset);
  auto* sa = reinterpret_cast<float*>(row + l.sa_offset);
  auto* nsum = reinterpret_cast<int32_t*>(row + l.nsum_offset);
  auto* lsum = reinterpret_cast<int32_t*>(row + l.lsum_offset);
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < l.cols; b += 32) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + b + 8 * i);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign_mask, v[i]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));  // round half to even
      q[i] = _mm256_min_epi32(_mm256_max_epi32(q[i], lo), hi);
    }
    // Packs interleave 128-bit lanes; the final permute restores element order.
    const __m256i q16a = _mm256_packs_epi32(q[0], q[1]);
    const __m256i q16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i q8 = _mm256_packs_epi16(q16a, q16b);
    q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + b), q8);
    const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q8), ones16);  // sums of 4
    if (with_lane_sums) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lsum + b / 4),
                          _mm256_sub_epi32(_mm256_setzero_si256(), s4));
    }
    const int s0 = hsum_epi32_128(_mm256_castsi256_si128(s4));
    const int s1 = hsum_epi32_128(_mm256_extracti128_si256(s4, 1));
    if (l.sub_block == 32) {
      da[b / 32] = d;
      sa[b / 32] = d * static_cast<float>(s0 + s1);
      nsum[b / 32] = -(s0 + s1);
    } else {
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
// Weight codecs: decode32(row, c) gives the 32 codes of chunk c; scales(row, cols, ws, mw) the
// per-sub-block scales of a whole row. kSigned: codes are the signed Q8 values (no offset).

inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Byte i = 0xFF where bit i of `bits` is set.
inline __m256i expand_bits(uint32_t bits) {
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                                           0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// Byte l = 0xFF where bit k of q[l] is set.
inline __m256i test_bit(__m256i q, int k) {
  const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << k));
  return _mm256_cmpeq_epi8(_mm256_and_si256(q, bit), bit);
}

template <int kBytes, int kQsOffset, bool kHasMin, int kShift_>
struct CodecQ4 {
  static constexpr int kS = 32, kShift = kShift_;
  static constexpr bool kMin = kHasMin, kSigned = false;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    return nibbles32(row + c * kBytes + kQsOffset);
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / 32; ++b) {
      ws[b] = f16_at(row + b * kBytes);
      if (kHasMin) mw[b] = f16_at(row + b * kBytes + 2);
    }
  }
};
using CodecQ4_0 = CodecQ4<sizeof(BlockQ4_0), 2, false, 3>;
using CodecQ4_1 = CodecQ4<sizeof(BlockQ4_1), 4, true, 0>;

template <int kBytes, int kQhOffset, bool kHasMin>
struct CodecQ5 {
  static constexpr int kS = 32, kShift = kHasMin ? 0 : 4;
  static constexpr bool kMin = kHasMin, kSigned = false;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const uint8_t* b = row + c * kBytes;
    const __m256i high =
        _mm256_and_si256(expand_bits(load_u32(b + kQhOffset)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(b + kQhOffset + 4), high);
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / 32; ++b) {
      ws[b] = f16_at(row + b * kBytes);
      if (kHasMin) mw[b] = f16_at(row + b * kBytes + 2);
    }
  }
};
using CodecQ5_0 = CodecQ5<sizeof(BlockQ5_0), 2, false>;
using CodecQ5_1 = CodecQ5<sizeof(BlockQ5_1), 4, true>;

struct CodecQ8_0 {
  static constexpr int kS = 32, kShift = 0;
  static constexpr bool kMin = false, kSigned = true;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * sizeof(BlockQ8_0) + 2));
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / 32; ++b) ws[b] = f16_at(row + b * sizeof(BlockQ8_0));
  }
};

struct CodecQ8_K {
  static constexpr int kS = 32, kShift = 0;
  static constexpr bool kMin = false, kSigned = true;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    return _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(row + (c / 8) * sizeof(BlockQ8_K) + 4 + 32 * (c % 8)));
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / kQK_K; ++b) {
      float d;
      std::memcpy(&d, row + b * sizeof(BlockQ8_K), 4);
      for (int j = 0; j < 8; ++j) ws[8 * b + j] = d;
    }
  }
};

struct CodecQ2_K {
  static constexpr int kS = 16, kShift = 0;
  static constexpr bool kMin = true, kSigned = false;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* qs = row + (c / 8) * sizeof(BlockQ2_K) + 16 + 32 * (k / 4);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
    return _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (k % 4))),
                            _mm256_set1_epi8(3));
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / kQK_K; ++b) {
      const uint8_t* blk = row + b * sizeof(BlockQ2_K);
      const float d = f16_at(blk + 80), dmin = f16_at(blk + 82);
      for (int j = 0; j < 16; ++j) {
        ws[16 * b + j] = d * static_cast<float>(blk[j] & 0x0F);
        mw[16 * b + j] = -(dmin * static_cast<float>(blk[j] >> 4));
      }
    }
  }
};

struct CodecQ3_K {
  static constexpr int kS = 16, kShift = 2;
  static constexpr bool kMin = false, kSigned = false;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* b = row + (c / 8) * sizeof(BlockQ3_K);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 + 32 * (k / 4)));
    const __m256i low =
        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (k % 4))), _mm256_set1_epi8(3));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    return _mm256_or_si256(low, _mm256_and_si256(test_bit(hm, k), _mm256_set1_epi8(4)));
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / kQK_K; ++b) {
      const uint8_t* blk = row + b * sizeof(BlockQ3_K);
      int8_t sc[16];
      q3_k_scales(blk + 96, sc);
      const float d = f16_at(blk + 108);
      for (int j = 0; j < 16; ++j) ws[16 * b + j] = d * static_cast<float>(sc[j]);
    }
  }
};

template <bool kFive>
struct CodecQ45_K {
  static constexpr int kS = 32, kShift = 0;
  static constexpr bool kMin = true, kSigned = false;
  static constexpr int kBytes = kFive ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8);
    const uint8_t* b = row + (c / 8) * kBytes;
    const __m256i q =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (kFive ? 48 : 16) + 32 * (k / 2)));
    __m256i v = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(4 * (k % 2))),
                                 _mm256_set1_epi8(0x0F));
    if (kFive) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      v = _mm256_or_si256(v, _mm256_and_si256(test_bit(qh, k), _mm256_set1_epi8(0x10)));
    }
    return v;
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / kQK_K; ++b) {
      const uint8_t* blk = row + b * kBytes;
      const float d = f16_at(blk), dmin = f16_at(blk + 2);
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k_scale_min(blk + 4, j, &sc, &m);
        ws[8 * b + j] = d * static_cast<float>(sc);
        mw[8 * b + j] = -(dmin * static_cast<float>(m));
      }
    }
  }
};
using CodecQ4_K = CodecQ45_K<false>;
using CodecQ5_K = CodecQ45_K<true>;

struct CodecQ6_K {
  static constexpr int kS = 16, kShift = 5;
  static constexpr bool kMin = false, kSigned = false;
  static __m256i decode32(const uint8_t* row, int64_t c) {
    const int k = static_cast<int>(c % 8), h = k / 4, kk = k % 4;
    const uint8_t* b = row + (c / 8) * sizeof(BlockQ6_K);
    const __m256i ql =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * h + 32 * (kk % 2)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
    const __m256i low = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (kk / 2))),
                                         _mm256_set1_epi8(0x0F));
    const __m256i high =
        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * kk)), _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
  static void scales(const uint8_t* row, int64_t cols, float* ws, float* mw) {
    for (int64_t b = 0; b < cols / kQK_K; ++b) {
      const uint8_t* blk = row + b * sizeof(BlockQ6_K);
      const float d = f16_at(blk + 208);
      for (int j = 0; j < 16; ++j)
        ws[16 * b + j] = d * static_cast<float>(static_cast<int8_t>(blk[192 + j]));
    }
  }
};

struct RowBuffers {
  AlignedBuffer ws, mw;
};

// Rows [r0, r1) against T tokens starting at t0.
template <class C, int T>
void rows_times_tokens(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0) {
  constexpr int S = C::kS;
  const int64_t num_sub = job.cols / S;
  thread_local RowBuffers buffers;
  auto* ws = reinterpret_cast<float*>(buffers.ws.get(num_sub * sizeof(float)));
  auto* mw = reinterpret_cast<float*>(buffers.mw.get(num_sub * sizeof(float)));
  ActRow a[T];
  for (int t = 0; t < T; ++t) a[t] = act_row(job.act, job.act_base, t0 + t);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = job.w + r * job.row_bytes;
    C::scales(row, job.cols, ws, mw);
    float min_term[T] = {};
    if (C::kMin) {
      for (int t = 0; t < T; ++t) {
        __m256 acc = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= num_sub; j += 8) {
          acc = _mm256_fmadd_ps(_mm256_loadu_ps(mw + j), _mm256_loadu_ps(a[t].sa + j), acc);
        }
        min_term[t] = hsum_ps(acc);
        for (; j < num_sub; ++j) min_term[t] += mw[j] * a[t].sa[j];
      }
    }
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < job.cols / 32; ++c) {
      const __m256i w = C::decode32(row, c);
      const __m256i w_abs = C::kSigned ? _mm256_sign_epi8(w, w) : w;
      for (int t = 0; t < T; ++t) {
        __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t].qs + 32 * c));
        if (C::kSigned) x = _mm256_sign_epi8(x, w);
        __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, x), ones16);
        if (C::kShift) {
          const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t].lsum + 8 * c));
          dot = _mm256_add_epi32(dot, _mm256_slli_epi32(l, C::kShift));
        }
        __m256 scale;
        if (S == 32) {
          scale = _mm256_set1_ps(ws[c] * a[t].da[c]);
        } else {
          scale = _mm256_set_m128(_mm_set1_ps(ws[2 * c + 1] * a[t].da[2 * c + 1]),
                                  _mm_set1_ps(ws[2 * c] * a[t].da[2 * c]));
        }
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) job.y[(t0 + t) * job.rows + r] = hsum_ps(acc[t]) + min_term[t];
  }
}

template <class C>
void matmul_q_typed(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  // Blocks of 16 rows stay in L1 while every token group passes over them.
  for (int64_t rb = r0; rb < r1; rb += 16) {
    const int64_t re = std::min(r1, rb + 16);
    int64_t t = t0;
    for (; t + 4 <= t1; t += 4) rows_times_tokens<C, 4>(job, rb, re, t);
    switch (t1 - t) {
      case 1:
        rows_times_tokens<C, 1>(job, rb, re, t);
        break;
      case 2:
        rows_times_tokens<C, 2>(job, rb, re, t);
        break;
      case 3:
        rows_times_tokens<C, 3>(job, rb, re, t);
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
// F32/F16/BF16 weights: R rows x T tokens, 8 columns per step, scalar tail.

template <DType D>
inline __m256 load_w8(const uint8_t* row, int64_t k) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
    if constexpr (D == DType::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <DType D>
inline float load_w1(const uint8_t* row, int64_t k) {
  uint16_t h;
  if constexpr (D == DType::kF32) {
    float v;
    std::memcpy(&v, row + 4 * k, 4);
    return v;
  }
  std::memcpy(&h, row + 2 * k, 2);
  return D == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
}

template <DType D, int R, int T>
void float_block(const FloatJob& job, int64_t r, int64_t t) {
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = job.w + (r + i) * job.row_bytes;
  const float* xs[T];
  for (int j = 0; j < T; ++j) xs[j] = job.x + (t + j) * job.cols;
  int64_t k = 0;
  for (; k + 8 <= job.cols; k += 8) {
    __m256 x[T];
    for (int j = 0; j < T; ++j) x[j] = _mm256_loadu_ps(xs[j] + k);
    for (int i = 0; i < R; ++i) {
      const __m256 w = load_w8<D>(rows[i], k);
      for (int j = 0; j < T; ++j) acc[i][j] = _mm256_fmadd_ps(w, x[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < T; ++j) {
      float sum = hsum_ps(acc[i][j]);
      for (int64_t kk = k; kk < job.cols; ++kk) sum += load_w1<D>(rows[i], kk) * xs[j][kk];
      job.y[(t + j) * job.rows + r + i] = sum;
    }
  }
}

template <DType D, int T>
void float_rows(const FloatJob& job, int64_t r0, int64_t r1, int64_t t) {
  constexpr int R = T <= 2 ? 4 : 2;  // R*T accumulators + T activations fit 16 registers
  int64_t r = r0;
  for (; r + R <= r1; r += R) float_block<D, R, T>(job, r, t);
  for (; r < r1; ++r) float_block<D, 1, T>(job, r, t);
}

template <DType D>
void matmul_f_typed(const FloatJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t tb = t0; tb < t1; tb += 64) {
    const int64_t te = std::min(t1, tb + 64);
    int64_t t = tb;
    for (; t + 4 <= te; t += 4) float_rows<D, 4>(job, r0, r1, t);
    switch (te - t) {
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

const KernelSet& avx2_kernels() {
  static const KernelSet k{quantize_act_row, matmul_q, matmul_f, 16, 4, true};
  return k;
}

}  // namespace cvllm::cpu::internal
