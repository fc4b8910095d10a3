// RMSNorm and LayerNorm over the last dimension, f32, with the residual add fused in as vLLM does
// (the residual stream is updated in place and normalized in one pass).
#pragma once

#include <cstdint>

namespace cvllm {
class ThreadPool;
}

namespace cvllm::cpu {

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * (weight + weight_offset)
// x, y: [num_tokens, hidden_size]; weight: [hidden_size]. y may alias x.
// weight_offset is 1 for models that store (weight - 1), such as Gemma.
void rms_norm(const float* x, const float* weight, float* y, int64_t num_tokens,
              int64_t hidden_size, float eps, ThreadPool* pool, float weight_offset = 0.0f);

// residual[t] += x[t]; y[t] = rms_norm(residual[t]).   x, residual, y: [num_tokens, hidden_size]
void add_rms_norm(const float* x, float* residual, const float* weight, float* y,
                  int64_t num_tokens, int64_t hidden_size, float eps, ThreadPool* pool,
                  float weight_offset = 0.0f);

// y[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias. bias may be null.
void layer_norm(const float* x, const float* weight, const float* bias, float* y,
                int64_t num_tokens, int64_t hidden_size, float eps, ThreadPool* pool);

}  // namespace cvllm::cpu
