// Linear layers. The weight keeps its storage dtype (GGUF blocks, f16, bf16, f32); the backend
// picks the kernel, so a model file never forks per quantization.
#pragma once

#include <optional>

#include "kernels/backend.h"

namespace cvllm {

struct Linear {
  Tensor weight;              // [out_features, in_features]
  std::optional<Tensor> bias; // [out_features] f32

  int64_t out_features() const { return weight.dim(0); }
  int64_t in_features() const { return weight.dim(1); }
  // y: [num_tokens, out_features] = x: [num_tokens, in_features] W^T + b
  void forward(Backend& backend, const Tensor& x, Tensor& y) const {
    backend.linear(x, weight, bias ? &*bias : nullptr, y);
  }
};

struct RMSNorm {
  Tensor weight;  // [hidden_size] f32
  float eps = 1e-6f;
  float weight_offset = 0.0f;  // 1 where checkpoints store (weight - 1)

  void forward(Backend& backend, const Tensor& x, Tensor& y) const {
    backend.rms_norm(x, weight, eps, y, weight_offset);
  }
  // residual += x; y = norm(residual)
  void forward_residual(Backend& backend, const Tensor& x, Tensor& residual, Tensor& y) const {
    backend.add_rms_norm(x, residual, weight, eps, y, weight_offset);
  }
};

}  // namespace cvllm
