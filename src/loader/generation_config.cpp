#include "loader/generation_config.h"

#include "loader/gguf.h"
#include "util/error.h"

namespace cvllm {

SamplingParams GenerationDefaults::apply_to(SamplingParams p) const {
  if (temperature) p.temperature = *temperature;
  if (top_k) p.top_k = *top_k;
  if (top_p) p.top_p = *top_p;
  if (min_p) p.min_p = *min_p;
  if (repetition_penalty) p.repetition_penalty = *repetition_penalty;
  if (max_tokens) p.max_tokens = *max_tokens;
  return p;
}

std::string GenerationDefaults::describe() const {
  std::string out;
  auto add = [&](const char* name, const auto& v) {
    if (v) out += cat(out.empty() ? "" : ", ", name, "=", *v);
  };
  add("temperature", temperature);
  add("top_k", top_k);
  add("top_p", top_p);
  add("min_p", min_p);
  add("repetition_penalty", repetition_penalty);
  add("max_tokens", max_tokens);
  return out;
}

GenerationDefaults generation_defaults_from_gguf(const GgufFile& f) {
  // Keys llama.cpp's converter writes from generation_config.json.
  GenerationDefaults d;
  d.temperature = f.get_float("general.sampling.temp");
  if (auto k = f.get_int("general.sampling.top_k")) d.top_k = static_cast<int>(*k);
  d.top_p = f.get_float("general.sampling.top_p");
  d.min_p = f.get_float("general.sampling.min_p");
  d.repetition_penalty = f.get_float("general.sampling.penalty_repeat");
  return d;
}

}  // namespace cvllm
