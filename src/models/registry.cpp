#include "models/registry.h"

#include "models/gemma3.h"
#include "models/gpt2.h"
#include "models/llama.h"
#include "models/opt.h"
#include "util/error.h"

namespace cvllm {
namespace {

struct ArchitectureEntry {
  const char* name;      // ModelConfig::architecture
  const char* hf_class;  // config.json architectures[0]
  // RoPE layout of GGUF files: llama.cpp's converter permutes Q/K rows of llama-family models
  // for the interleaved layout, but keeps Qwen's as they are (rotate-half). Hugging Face
  // checkpoints are always rotate-half.
  RopeStyle gguf_rope_style;
  // Loads from Hugging Face checkpoints only: llama.cpp has no OPT.
  bool hf_only = false;
};

// Mistral, Qwen2, Qwen3 and Phi-3 are the Llama decoder with options (sliding window, q/k/v bias,
// q/k norm, fused projections) that ModelConfig carries; they share its file (and, but for Phi-3's
// fused projections, its weight names). OPT and GPT-2 have their own files.
constexpr ArchitectureEntry kArchitectures[] = {
    {"llama", "LlamaForCausalLM", RopeStyle::kInterleaved},
    {"mistral", "MistralForCausalLM", RopeStyle::kInterleaved},
    {"qwen2", "Qwen2ForCausalLM", RopeStyle::kNeox},
    {"qwen3", "Qwen3ForCausalLM", RopeStyle::kNeox},
    {"phi3", "Phi3ForCausalLM", RopeStyle::kNeox},
    {"opt", "OPTForCausalLM", RopeStyle::kNeox, true},
    {"gpt2", "GPT2LMHeadModel", RopeStyle::kNeox},
    // Gemma 3 has its own file; llama.cpp keeps its Q/K rows for rotate-half RoPE.
    {"gemma3", "Gemma3ForCausalLM", RopeStyle::kNeox},
};

// Other Hugging Face classes whose checkpoints hold one of the decoders above. The Gemma 3
// 4B/12B/27B releases are Gemma3ForConditionalGeneration: the Gemma 3 decoder plus a vision tower
// and projector, which we never load (text prompts only, as vLLM serves them without images).
// Its config nests the decoder's settings (hf_config.cpp) and its weight names carry a prefix
// (Gemma3ForCausalLM's constructor finds which).
struct HfAlias {
  const char* hf_class;
  const char* name;
};
constexpr HfAlias kHfAliases[] = {{"Gemma3ForConditionalGeneration", "gemma3"}};

// OPT and GPT-2 models ask for their weights by Hugging Face name (GPT-2 picks llama.cpp's names
// itself when the file is a GGUF).
std::optional<std::string> same_name(const std::string& name) { return name; }

const ArchitectureEntry* find_entry(const std::string& name) {
  for (const ArchitectureEntry& e : kArchitectures) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

[[noreturn]] void throw_unsupported(const std::string& where, const std::string& arch) {
  std::string supported;
  for (const std::string& a : supported_architectures())
    supported += (supported.empty() ? "" : ", ") + a;
  throw ValueError(cat(where, ": model architecture '", arch,
                       "' is not supported (supported: ", supported, ")"));
}

}  // namespace

std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const ArchitectureEntry& e : kArchitectures) out.push_back(e.name);
  return out;
}

std::vector<std::string> supported_hf_architectures() {
  std::vector<std::string> out;
  for (const ArchitectureEntry& e : kArchitectures) out.push_back(e.hf_class);
  for (const HfAlias& a : kHfAliases) out.push_back(a.hf_class);
  return out;
}

std::optional<std::string> architecture_from_hf(const std::string& hf_class) {
  for (const ArchitectureEntry& e : kArchitectures) {
    if (hf_class == e.hf_class) return e.name;
  }
  for (const HfAlias& a : kHfAliases) {
    if (hf_class == a.hf_class) return a.name;
  }
  return std::nullopt;
}

HfWeightNameMap hf_weight_name_map(const std::string& architecture) {
  if (find_entry(architecture) == nullptr)
    throw_unsupported("Hugging Face checkpoint", architecture);
  if (architecture == "opt" || architecture == "gpt2") return same_name;
  if (architecture == "phi3") return phi3_hf_weight_name;
  if (architecture == "gemma3") return gemma3_hf_weight_name;
  return llama_hf_weight_name;
}

std::unique_ptr<CausalLM> create_model(const ModelConfig& config, const WeightSource& weights,
                                       Backend& backend, CheckpointFormat format) {
  const ArchitectureEntry* entry = find_entry(config.architecture);
  if (entry == nullptr) throw_unsupported(weights.path(), config.architecture);
  if (entry->hf_only && format == CheckpointFormat::kGguf) {
    throw ValueError(cat(weights.path(), ": GGUF files of architecture '", config.architecture,
                         "' are not supported yet (load its Hugging Face checkpoint)"));
  }
  if (config.architecture == "opt") return std::make_unique<OPTForCausalLM>(config, weights, backend);
  if (config.architecture == "gemma3") {  // norms scale by 1 + w: HF stores w, GGUF files 1 + w
    float norm_weight_offset = format == CheckpointFormat::kHuggingFace ? 1.0f : 0.0f;
    return std::make_unique<Gemma3ForCausalLM>(config, weights, backend, norm_weight_offset);
  }
  if (config.architecture == "gpt2")
    return std::make_unique<GPT2LMHeadModel>(config, weights, backend);
  RopeStyle style = format == CheckpointFormat::kGguf ? entry->gguf_rope_style : RopeStyle::kNeox;
  return std::make_unique<LlamaForCausalLM>(config, weights, backend, style);
}

}  // namespace cvllm
