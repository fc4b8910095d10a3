// Activation functions shared by the element-wise kernels and the fused matrix-vector kernel, so
// both compute bit-identical values.
#pragma once

namespace cvllm::cuda {

__device__ __forceinline__ float silu_act(float x) { return x / (1.0f + expf(-x)); }

// GELU, tanh approximation (GPT-2's gelu_new, Gemma's gelu_pytorch_tanh).
__device__ __forceinline__ float gelu_tanh_act(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

}  // namespace cvllm::cuda
