#include "kernels/cpu/activation.h"

#include <cmath>

#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

template <typename Fn>
void for_range(int64_t n, ThreadPool* pool, Fn&& fn) {
  if (pool == nullptr || n < 16384) {
    fn(0, n);
    return;
  }
  pool->parallel_for(n, [&](int64_t begin, int64_t end, int) { fn(begin, end); }, 64);
}

inline float gelu_tanh_scalar(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t num_tokens, int64_t size,
              ThreadPool* pool) {
  for_range(num_tokens * size, pool, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t num_tokens,
                   int64_t size, ThreadPool* pool) {
  for_range(num_tokens * size, pool, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = gelu_tanh_scalar(gate[i]) * up[i];
  });
}

void gelu(const float* x, float* out, int64_t n, ThreadPool* pool) {
  for_range(n, pool, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678f));
  });
}

void gelu_tanh(const float* x, float* out, int64_t n, ThreadPool* pool) {
  for_range(n, pool, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = gelu_tanh_scalar(x[i]);
  });
}

void relu(const float* x, float* out, int64_t n, ThreadPool* pool) {
  for_range(n, pool, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
  });
}

}  // namespace cvllm::cpu
