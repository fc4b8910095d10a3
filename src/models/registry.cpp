#include "models/registry.h"

#include "models/llama.h"
#include "util/error.h"

namespace cvllm {

std::vector<std::string> supported_architectures() { return {"llama"}; }

std::unique_ptr<CausalLM> create_model(const ModelConfig& config, const WeightSource& weights,
                                       Backend& backend, CheckpointFormat format) {
  if (config.architecture == "llama") {
    // GGUF llama checkpoints carry Q/K permuted for interleaved RoPE; HF ones use rotate-half.
    RopeStyle style = format == CheckpointFormat::kGguf ? RopeStyle::kInterleaved : RopeStyle::kNeox;
    return std::make_unique<LlamaForCausalLM>(config, weights, backend, style);
  }
  std::string supported;
  for (const std::string& a : supported_architectures()) supported += (supported.empty() ? "" : ", ") + a;
  throw ValueError(cat(weights.path(), ": model architecture '", config.architecture,
                       "' is not supported (supported: ", supported, ")"));
}

}  // namespace cvllm
