// Also: which weight files of such a directory to load (open_hf_weights).
// The small JSON/text files of a Hugging Face checkpoint directory that the engine reads besides
// config.json, the weights and the tokenizer: generation_config.json (the model's default sampling
// parameters and end-of-sequence ids, as vLLM uses them) and the chat template
// (chat_template.jinja, or tokenizer_config.json's "chat_template").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loader/generation_config.h"
#include "loader/hf_weight_source.h"

namespace cvllm {

struct HfGenerationConfig {
  GenerationDefaults defaults;
  std::vector<int32_t> eos_token_ids;  // "eos_token_id": an int or a list
};

// Reads `dir`/generation_config.json; an absent file gives empty defaults. As vLLM (which applies
// transformers' GenerationConfig.to_diff_dict()), a field equal to transformers' own default
// (temperature 1.0, top_k 50, top_p 1.0, repetition_penalty 1.0) is not a model default.
// Throws Error naming the file for malformed JSON or a field of the wrong type.
HfGenerationConfig read_hf_generation_config(const std::string& dir);
HfGenerationConfig parse_hf_generation_config(const std::string& json_text,
                                              const std::string& path);

// chat_template.jinja when present, else tokenizer_config.json's "chat_template" (a string, or a
// list of {"name", "template"} where "default" is taken); nullopt when neither has one.
std::optional<std::string> read_hf_chat_template(const std::string& dir);

// The weights of a Hugging Face checkpoint directory, as transformers picks them: safetensors
// (model.safetensors.index.json or model.safetensors) when present, else PyTorch's
// pytorch_model.bin.index.json or pytorch_model.bin (torch_checkpoint.h). Throws Error naming the
// directory and the four file names when none is there.
std::unique_ptr<WeightSource> open_hf_weights(const std::string& dir, HfWeightNameMap name_map);

}  // namespace cvllm
