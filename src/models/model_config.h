// ModelConfig: the hyper-parameters a model file needs, read from GGUF metadata (and later from a
// Hugging Face config.json). Names follow Hugging Face's config fields.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cvllm {

class GgufFile;

struct RopeScaling {
  std::string type;  // "" (none), "linear", "llama3", "yarn", "dynamic"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string architecture;  // GGUF general.architecture ("llama", "qwen2", ...)
  std::string name;          // general.name
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t rotary_dim = 0;  // dims rotated per head (== head_dim unless partial rotary)
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;

  std::string describe() const;
};

// Reads the `<arch>.*` hyper-parameters. Throws Error naming the file and key when one is missing
// or out of range.
ModelConfig model_config_from_gguf(const GgufFile& file);

}  // namespace cvllm
