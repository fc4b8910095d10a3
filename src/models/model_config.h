// ModelConfig: the hyper-parameters a model file needs, read from GGUF metadata or from a Hugging
// Face config.json. Names follow Hugging Face's config fields.
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
  bool qkv_bias = false;     // q/k/v projections have biases (Qwen2; Llama/Qwen3 attention_bias)
  bool o_proj_bias = false;  // the attention output projection has one (Llama/Qwen3 attention_bias)
  bool qk_norm = false;      // per-head RMSNorm of q and k before RoPE (Qwen3)
  // Phi-3 stores q|k|v as one qkv_proj and gate|up as one gate_up_proj; split by rows at load.
  bool fused_qkv = false;
  bool fused_gate_up = false;
  int64_t sliding_window = -1;  // > 0: attention sees only the last `sliding_window` positions
  // [num_hidden_layers] which layers use the sliding window; empty means all (when it is set).
  std::vector<bool> sliding_window_layers;

  // LayerNorm decoders with learned positions (OPT, GPT-2); the Llama family ignores these.
  std::string hidden_act = "silu";  // "silu", "relu" (OPT), "gelu_new" (GPT-2, Gemma 3: tanh form)
  double layer_norm_eps = 1e-5;
  bool layer_norm_affine = true;       // LayerNorms have weight and bias (OPT may switch off)
  bool mlp_bias = false;               // fc1/fc2 biases (OPT enable_bias, GPT-2)
  bool do_layer_norm_before = true;    // OPT: pre-LN (125m, 1.3b...) or post-LN (350m)
  bool final_layer_norm = true;        // OPT: only pre-LN models end with one
  int64_t word_embed_proj_dim = 0;     // OPT: embedding width when != hidden_size (project_in/out)

  // Gemma 3 (the Llama family ignores these).
  double query_pre_attn_scalar = 0.0;  // > 0: attention scale is its -1/2 power, not head_dim's
  double rope_local_base_freq = 0.0;   // RoPE base of sliding-window layers (no rope scaling)
  double attn_logit_softcapping = 0.0;   // > 0 when configured (Gemma 3 does not apply it)
  double final_logit_softcapping = 0.0;  // > 0: logits = cap * tanh(logits / cap)

  bool layer_uses_sliding_window(int64_t layer) const {
    if (sliding_window <= 0) return false;
    return sliding_window_layers.empty() || sliding_window_layers.at(layer);
  }
  std::string describe() const;
};

// Reads the `<arch>.*` hyper-parameters. Throws Error naming the file and key when one is missing
// or out of range.
ModelConfig model_config_from_gguf(const GgufFile& file);

// Reads `dir`/config.json (a Hugging Face checkpoint). `architectures[0]` picks the architecture
// (models/registry.h); an unknown one is a ValueError listing the supported ones. Missing or
// malformed fields are an Error naming config.json and the field.
ModelConfig model_config_from_hf(const std::string& dir);
// The same, from config.json's text; `path` names it in errors (tests, fuzzing).
ModelConfig model_config_from_hf_json(const std::string& json_text, const std::string& path);

}  // namespace cvllm
