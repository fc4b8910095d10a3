#include "kernels/cpu/norm.h"

#include <cmath>

#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

// Rows are independent; split them across threads only when there is enough work to pay for it.
template <typename Fn>
void for_each_row(int64_t num_tokens, int64_t hidden_size, ThreadPool* pool, Fn&& fn) {
  if (pool == nullptr || num_tokens * hidden_size < 32768) {
    for (int64_t t = 0; t < num_tokens; ++t) fn(t);
    return;
  }
  pool->parallel_for(num_tokens, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) fn(t);
  });
}

inline void rms_norm_row(const float* x, const float* weight, float* y, int64_t n, float eps,
                         float weight_offset) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * (weight[i] + weight_offset);
}

}  // namespace

void rms_norm(const float* x, const float* weight, float* y, int64_t num_tokens,
              int64_t hidden_size, float eps, ThreadPool* pool, float weight_offset) {
  for_each_row(num_tokens, hidden_size, pool, [&](int64_t t) {
    rms_norm_row(x + t * hidden_size, weight, y + t * hidden_size, hidden_size, eps, weight_offset);
  });
}

void add_rms_norm(const float* x, float* residual, const float* weight, float* y,
                  int64_t num_tokens, int64_t hidden_size, float eps, ThreadPool* pool,
                  float weight_offset) {
  for_each_row(num_tokens, hidden_size, pool, [&](int64_t t) {
    float* r = residual + t * hidden_size;
    const float* xr = x + t * hidden_size;
    for (int64_t i = 0; i < hidden_size; ++i) r[i] += xr[i];
    rms_norm_row(r, weight, y + t * hidden_size, hidden_size, eps, weight_offset);
  });
}

void layer_norm(const float* x, const float* weight, const float* bias, float* y,
                int64_t num_tokens, int64_t hidden_size, float eps, ThreadPool* pool) {
  for_each_row(num_tokens, hidden_size, pool, [&](int64_t t) {
    const float* xr = x + t * hidden_size;
    float* yr = y + t * hidden_size;
    float mean = 0.0f;
    for (int64_t i = 0; i < hidden_size; ++i) mean += xr[i];
    mean /= static_cast<float>(hidden_size);
    float var = 0.0f;
    for (int64_t i = 0; i < hidden_size; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<float>(hidden_size);
    float scale = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < hidden_size; ++i) {
      yr[i] = (xr[i] - mean) * scale * weight[i] + (bias ? bias[i] : 0.0f);
    }
  });
}

}  // namespace cvllm::cpu
