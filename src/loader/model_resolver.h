// Model resolution: turns the user's `model` string into files on disk, in this order:
//  - empty: the bundled default model in the cvllm cache folder;
//  - an existing path: a .gguf file, or a Hugging Face checkpoint directory (with config.json);
//  - a bare file name found in the cvllm cache folder;
//  - a hub id "org/name": its snapshot in the Hugging Face cache (offline, as huggingface_hub lays
//    it out: <hub cache>/models--org--name/snapshots/<commit>/, with refs/<branch> holding the
//    commit of a branch or tag).
// When nothing is found, the error lists every place that was searched. resolve_model is the one
// entry point, so a downloader can be added behind it later.
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

// The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
std::string hf_hub_cache_dir();

// `revision` (hub ids only): a branch or tag name with a refs/ entry, or a commit hash with a
// snapshot; empty means "main" (or the only snapshot when the cache has no refs/main).
// Throws cvllm::ValueError listing the searched locations when the model cannot be found.
ResolvedModel resolve_model(const std::string& model, const std::string& revision = "");

}  // namespace cvllm
