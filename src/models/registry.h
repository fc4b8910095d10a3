// Model registry: architecture name -> constructor, the Hugging Face class names that load as each
// architecture, and each one's weight-name map. An unknown architecture is a ValueError that lists
// the supported ones.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "loader/hf_weight_source.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"

namespace cvllm {

enum class CheckpointFormat { kGguf, kHuggingFace };

std::unique_ptr<CausalLM> create_model(const ModelConfig& config, const WeightSource& weights,
                                       Backend& backend, CheckpointFormat format);
// Architecture names as GGUF's general.architecture spells them ("llama", "qwen2", ...).
std::vector<std::string> supported_architectures();
// Hugging Face `architectures[0]` class names we load ("LlamaForCausalLM", ...).
std::vector<std::string> supported_hf_architectures();
// "Qwen2ForCausalLM" -> "qwen2"; nullopt when not supported.
std::optional<std::string> architecture_from_hf(const std::string& hf_class);
// The architecture's map from the GGUF-style names models ask for to its Hugging Face names.
// Throws ValueError for an unsupported architecture.
HfWeightNameMap hf_weight_name_map(const std::string& architecture);

}  // namespace cvllm
