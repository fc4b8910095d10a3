// Model registry: architecture name -> constructor. An unknown architecture is a ValueError that
// lists the supported ones.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"

namespace cvllm {

enum class CheckpointFormat { kGguf, kHuggingFace };

std::unique_ptr<CausalLM> create_model(const ModelConfig& config, const WeightSource& weights,
                                       Backend& backend, CheckpointFormat format);
std::vector<std::string> supported_architectures();

}  // namespace cvllm
