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
// Non-gated, element-wise over n: exact GELU (erf), tanh-approximated GELU (GPT-2's gelu_new),
// ReLU (OPT).  x, out: [n] (out may alias x)
void gelu(const float* x, float* out, int64_t n, ThreadPool* pool);
void gelu_tanh(const float* x, float* out, int64_t n, ThreadPool* pool);
void relu(const float* x, float* out, int64_t n, ThreadPool* pool);

}  // namespace cvllm::cpu
