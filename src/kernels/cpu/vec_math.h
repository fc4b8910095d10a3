// Small SIMD helpers in GCC vector extensions: 16 floats as one value, compiled to one AVX-512
// register, two AVX2 registers or four SSE registers depending on the function clone that inlines
// them. Functions marked CVLLM_VECTOR_CLONES are compiled for x86-64-v4 (AVX-512), v3 (AVX2) and
// baseline, and the loader picks the best one for the running CPU (GCC target_clones).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CVLLM_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CVLLM_VECTOR_CLONES
#endif

// Helpers taking or returning vectors must be inlined into each clone: an out-of-line copy would
// be compiled for one ISA's calling convention and called with another's.
#define CVLLM_VECTOR_INLINE [[gnu::always_inline]] inline

namespace cvllm::cpu {

// 16 floats / ints as one value: GCC vector extensions compile to one AVX-512 register, two AVX2
// registers or four SSE registers depending on the clone, without per-ISA intrinsics.
using v16f = float __attribute__((vector_size(64)));
using v16i = int32_t __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

CVLLM_VECTOR_INLINE v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
CVLLM_VECTOR_INLINE void store16(float* p, v16f v) { std::memcpy(p, &v, sizeof(v)); }
CVLLM_VECTOR_INLINE v16f splat(float x) { return v16f{} + x; }

// exp(x) for x <= 0 (x = -inf gives 0), ~2 ulp: x = n ln2 + r, e^r by a degree-7 polynomial,
// 2^n through the exponent bits.
CVLLM_VECTOR_INLINE v16f exp_nonpositive(v16f x) {
  const v16f clamped = x < -87.0f ? splat(-87.0f) : x;
  const v16f kRound = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const v16f n = (clamped * 1.44269504088896341f + kRound) - kRound;
  const v16f r = clamped - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  v16f p = splat(1.98412698e-4f);
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
  v16f scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const v16f e = p * scale;
  return x < -87.0f ? v16f{} : e;
}

CVLLM_VECTOR_INLINE float exp_nonpositive(float x) { return exp_nonpositive(splat(x))[0]; }

// Tree reductions over the 16 lanes (fixed shape: deterministic).
CVLLM_VECTOR_INLINE float reduce_max(v16f v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = std::max(m, v[i]);
  return m;
}
CVLLM_VECTOR_INLINE float reduce_sum(v16f v) {
  float t[8];
  for (int i = 0; i < 8; ++i) t[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) t[i] = t[i] + t[i + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

}  // namespace cvllm::cpu
