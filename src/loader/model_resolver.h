// Model resolution: turns the user's `model` string into files on disk. Today: a .gguf file path,
// or empty for the bundled default model in the cvllm cache folder. Hugging Face directories and
// hub names resolve here too once their loader exists. When nothing is found, the error lists
// every place that was searched. (A downloader can sit behind this later.)
#pragma once

#include <string>
#include <vector>

namespace cvllm {

enum class ModelFormat { kGguf, kHuggingFaceDir };

struct ResolvedModel {
  ModelFormat format = ModelFormat::kGguf;
  std::string path;  // the .gguf file, or the checkpoint directory
};

// The folder the setup script stores the default model in: $CVLLM_CACHE_DIR, else
// $XDG_CACHE_HOME/cvllm, else ~/.cache/cvllm.
std::string cvllm_cache_dir();
// File name of the bundled default model (SmolLM2-135M-Instruct, Q4_1).
inline constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
// The name the server gives the default model when none is named (its Hugging Face id).
inline constexpr const char* kDefaultModelName = "HuggingFaceTB/SmolLM2-135M-Instruct";
std::string default_model_path();

// Throws cvllm::ValueError listing the searched locations when the model cannot be found.
ResolvedModel resolve_model(const std::string& model);

}  // namespace cvllm
