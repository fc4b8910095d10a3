// The model's own sampling defaults (vLLM's generation_config="auto"): from Hugging Face's
// generation_config.json, or from a GGUF file's `general.sampling.*` keys. Only the fields vLLM
// takes over (temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens) are kept.
#pragma once

#include <optional>
#include <string>

#include "cvllm/sampling_params.h"

namespace cvllm {

class GgufFile;

struct GenerationDefaults {
  std::optional<double> temperature;
  std::optional<int> top_k;
  std::optional<double> top_p;
  std::optional<double> min_p;
  std::optional<double> repetition_penalty;
  std::optional<int> max_tokens;

  bool empty() const {
    return !temperature && !top_k && !top_p && !min_p && !repetition_penalty && !max_tokens;
  }
  // Fields set here replace the corresponding fields of `params`.
  SamplingParams apply_to(SamplingParams params) const;
  std::string describe() const;  // "temperature=0.6, top_p=0.9"
};

GenerationDefaults generation_defaults_from_gguf(const GgufFile& file);

}  // namespace cvllm
