#include "layers/rotary_embedding.h"

#include <cmath>
#include <numbers>

#include "util/error.h"

namespace cvllm {
namespace {

// Llama 3's frequency-dependent scaling: long wavelengths are divided by `factor`, short ones are
// kept, and the band between is interpolated (transformers' _compute_llama3_parameters).
void apply_llama3_scaling(std::vector<double>& inv_freq, const RopeScaling& s) {
  double old_len = static_cast<double>(s.original_max_position_embeddings);
  double low_wavelen = old_len / s.low_freq_factor;
  double high_wavelen = old_len / s.high_freq_factor;
  for (double& f : inv_freq) {
    double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_wavelen) {
      f /= s.factor;
    } else if (wavelen >= high_wavelen) {
      double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }
  }
}

}  // namespace

RotaryEmbedding::RotaryEmbedding(const ModelConfig& config, RopeStyle style,
                                 const std::vector<float>& freq_factors) {
  int64_t half = config.rotary_dim / 2;
  std::vector<double> inv(half);
  // As transformers computes it: base ** (arange(0, dim, 2) / dim), in float32.
  for (int64_t i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(config.rotary_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(config.rope_theta), exponent);
  }
  const RopeScaling& s = config.rope_scaling;
  if (!freq_factors.empty()) {
    CVLLM_CHECK(static_cast<int64_t>(freq_factors.size()) == half, "rope_freqs has ",
                freq_factors.size(), " entries, expected ", half);
    for (int64_t i = 0; i < half; ++i) inv[i] /= freq_factors[i];
  } else if (s.type == "linear") {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    apply_llama3_scaling(inv, s);
  } else if (!s.type.empty()) {
    throw ValueError(cat("rope scaling type '", s.type, "' is not supported yet"));
  }
  inv_freq_.assign(inv.begin(), inv.end());
  params_.head_size = config.head_dim;
  params_.rot_dim = config.rotary_dim;
  params_.style = style;
}

}  // namespace cvllm
