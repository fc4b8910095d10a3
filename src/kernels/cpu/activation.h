// Gated and plain activations, f32.
#pragma once

#include <cstdint>

namespace cvllm {
class ThreadPool;
}

namespace cvllm::cpu {

// out[t, i] = silu(gate[t, i]) * up[t, i]   gate, up, out: [num_tokens, size] (out may alias gate)
void silu_mul(const float* gate, const float* up, float* out, int64_t num_tokens, int64_t size,
              ThreadPool* pool);
// out = gelu(gate) * up with the tanh approximation (Gemma's gelu_pytorch_tanh).
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t num_tokens,
                   int64_t size, ThreadPool* pool);
// In place: exact GELU (erf), tanh-approximated GELU, ReLU.
void gelu(float* x, int64_t n, ThreadPool* pool);
void gelu_tanh(float* x, int64_t n, ThreadPool* pool);
void relu(float* x, int64_t n, ThreadPool* pool);

}  // namespace cvllm::cpu
