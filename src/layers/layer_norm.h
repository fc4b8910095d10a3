// LayerNorm layer of the OPT and GPT-2 decoders: y = (x - mean) / sqrt(var + eps) * w + b.
#pragma once

#include <optional>

#include "kernels/backend.h"
#include "loader/weight_source.h"

namespace cvllm {

struct LayerNorm {
  Tensor weight;               // [hidden_size] f32
  std::optional<Tensor> bias;  // [hidden_size] f32
  float eps = 1e-5f;

  // x, y: [num_tokens, hidden_size]; y must not alias x.
  void forward(Backend& backend, const Tensor& x, Tensor& y) const {
    backend.layer_norm(x, weight, bias ? &*bias : nullptr, eps, y);
  }

  // `<prefix>.weight` and `<prefix>.bias` read as f32. Without elementwise affine the weight is 1
  // and there is no bias (the backend op always takes a weight).
  static LayerNorm load(const WeightSource& w, Backend& backend, const std::string& prefix,
                        int64_t size, double eps, bool affine) {
    LayerNorm ln;
    ln.eps = static_cast<float>(eps);
    if (affine) {
      ln.weight = backend.prepare_weight(w.get_f32(prefix + ".weight", {size}));
      ln.bias = backend.prepare_weight(w.get_f32(prefix + ".bias", {size}));
    } else {
      Tensor ones = Tensor::empty(DType::kF32, {size});
      for (int64_t i = 0; i < size; ++i) ones.data_as<float>()[i] = 1.0f;
      ln.weight = backend.prepare_weight(ones);
    }
    return ln;
  }
};

}  // namespace cvllm
