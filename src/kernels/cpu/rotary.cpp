#include "kernels/cpu/rotary.h"

#include <cmath>
#include <vector>

#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

void rotate_head(float* x, const float* cos_v, const float* sin_v, int64_t rot_dim,
                 RopeLayout layout) {
  int64_t half = rot_dim / 2;
  if (layout == RopeLayout::kNeox) {
    for (int64_t i = 0; i < half; ++i) {
      float a = x[i], b = x[i + half];
      x[i] = a * cos_v[i] - b * sin_v[i];
      x[i + half] = b * cos_v[i] + a * sin_v[i];
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      float a = x[2 * i], b = x[2 * i + 1];
      x[2 * i] = a * cos_v[i] - b * sin_v[i];
      x[2 * i + 1] = b * cos_v[i] + a * sin_v[i];
    }
  }
}

}  // namespace

void apply_rotary(float* q, float* k, const int32_t* positions, int64_t num_tokens,
                  int64_t num_heads, int64_t num_kv_heads, int64_t head_size, int64_t rot_dim,
                  const float* inv_freq, RopeLayout layout, float mscale, ThreadPool* pool) {
  int64_t half = rot_dim / 2;
  auto run = [&](int64_t begin, int64_t end, int) {
    std::vector<float> cos_v(half), sin_v(half);
    for (int64_t t = begin; t < end; ++t) {
      // Angles in float like the reference implementations: (pos * inv_freq) in f32.
      float pos = static_cast<float>(positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        float angle = pos * inv_freq[i];
        cos_v[i] = std::cos(angle) * mscale;
        sin_v[i] = std::sin(angle) * mscale;
      }
      for (int64_t h = 0; h < num_heads; ++h) {
        rotate_head(q + (t * num_heads + h) * head_size, cos_v.data(), sin_v.data(), rot_dim, layout);
      }
      for (int64_t h = 0; h < num_kv_heads; ++h) {
        rotate_head(k + (t * num_kv_heads + h) * head_size, cos_v.data(), sin_v.data(), rot_dim,
                    layout);
      }
    }
  };
  if (pool == nullptr || num_tokens < 8) {
    run(0, num_tokens, 0);
  } else {
    pool->parallel_for(num_tokens, run);
  }
}

}  // namespace cvllm::cpu
