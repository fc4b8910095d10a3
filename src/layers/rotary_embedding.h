// RotaryEmbedding: the inverse-frequency table of a model (with its rope scaling variant) and the
// layout its checkpoint expects. Applied to q and k by the backend.
#pragma once

#include <vector>

#include "kernels/backend.h"
#include "models/model_config.h"

namespace cvllm {

class RotaryEmbedding {
 public:
  // freq_factors (GGUF `rope_freqs.weight`, Llama 3.1): per-pair divisors of the frequencies; when
  // given they replace the llama3 scaling computation.
  RotaryEmbedding(const ModelConfig& config, RopeStyle style,
                  const std::vector<float>& freq_factors = {});

  // What Backend::rope_attention (or rotary) takes for this layer.
  RopeParams params() const {
    RopeParams params = params_;
    params.inv_freq = inv_freq_.data();  // set here so copies of the layer stay valid
    return params;
  }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  std::vector<float> inv_freq_;  // [rotary_dim / 2]
  RopeParams params_;
};

}  // namespace cvllm
