#include "models/model_config.h"

#include "loader/gguf.h"
#include "util/error.h"

namespace cvllm {
namespace {

int64_t require_int(const GgufFile& f, const std::string& key) {
  std::optional<int64_t> v = f.get_int(key);
  if (!v) throw Error(cat(f.path(), ": missing metadata key '", key, "'"));
  return *v;
}

void check_positive(const GgufFile& f, const char* name, int64_t v, int64_t max) {
  if (v <= 0 || v > max) throw Error(cat(f.path(), ": ", name, " = ", v, " is out of range"));
}

// llama.cpp's "gpt2" files: LayerNorms with their own epsilon key, the fused attn_qkv with a bias,
// gelu (tanh form), biases everywhere, learned positions (no RoPE).
void read_gpt2(const GgufFile& f, ModelConfig& c) {
  c.layer_norm_eps = f.get_float(c.architecture + ".attention.layer_norm_epsilon").value_or(1e-5);
  c.hidden_act = "gelu_new";
  c.qkv_bias = c.o_proj_bias = c.mlp_bias = true;
  c.rotary_dim = 0;
}

// llama.cpp's "phi3" files keep qkv_proj and gate_up_proj fused (attn_qkv, ffn_up) and write the
// window as attention.sliding_window (0: none). The long-context (128k) variants carry LongRoPE
// factor tables, which we do not implement: refuse them rather than run a wrong model.
void read_phi3(const GgufFile& f, ModelConfig& c) {
  if (f.find_tensor("rope_factors_long.weight") != nullptr) {
    throw ValueError(cat(f.path(), ": Phi-3 LongRoPE (rope_factors_long/short) is not supported"));
  }
  c.fused_qkv = f.find_tensor("blk.0.attn_qkv.weight") != nullptr;
  c.fused_gate_up = f.find_tensor("blk.0.ffn_gate.weight") == nullptr;
  int64_t window = f.get_int(c.architecture + ".attention.sliding_window").value_or(0);
  if (window < 0)
    throw Error(cat(f.path(), ": attention.sliding_window = ", window, " is invalid"));
  c.sliding_window = window > 0 ? window : -1;
}

// llama.cpp's "gemma3" files carry the window but not which layers use it, nor the local RoPE
// base or the attention scale: those follow llama.cpp's own defaults for the architecture (every
// 6th layer global, local base 10000, query_pre_attn_scalar = head_dim except the 62-layer 27B,
// whose config has hidden_size / num_heads), with the optional keys winning where present.
void read_gemma3(const GgufFile& f, ModelConfig& c) {
  const std::string& a = c.architecture;
  c.hidden_act = "gelu_new";
  c.sliding_window = f.get_int(a + ".attention.sliding_window").value_or(-1);
  if (c.sliding_window == 0 || c.sliding_window < -1)
    throw Error(cat(f.path(), ": attention.sliding_window = ", c.sliding_window, " is invalid"));
  const std::string pattern_key = a + ".attention.sliding_window_pattern";
  const GgufValue* pattern = f.find(pattern_key);
  if (pattern != nullptr && pattern->type == GgufValueType::kArray) {
    if (static_cast<int64_t>(pattern->array.size()) != c.num_hidden_layers)
      throw Error(cat(f.path(), ": ", pattern_key, " has ", pattern->array.size(), " entries for ",
                      c.num_hidden_layers, " layers"));
    for (const GgufValue& v : pattern->array)
      c.sliding_window_layers.push_back(v.type == GgufValueType::kBool ? v.bool_value
                                                                       : v.int_value != 0);
  } else {
    // An int n: every n-th layer is global ((i + 1) % n == 0), the others local.
    int64_t every = f.get_int(pattern_key).value_or(6);
    if (every <= 0) throw Error(cat(f.path(), ": ", pattern_key, " = ", every, " is invalid"));
    for (int64_t i = 0; i < c.num_hidden_layers; ++i)
      c.sliding_window_layers.push_back((i + 1) % every != 0);
  }
  c.rope_local_base_freq = f.get_float(a + ".rope.freq_base_swa").value_or(10000.0);
  c.query_pre_attn_scalar = c.num_hidden_layers == 62
                                ? static_cast<double>(c.hidden_size / c.num_attention_heads)
                                : static_cast<double>(c.head_dim);
  c.attn_logit_softcapping = f.get_float(a + ".attn_logit_softcapping").value_or(0.0);
  c.final_logit_softcapping = f.get_float(a + ".final_logit_softcapping").value_or(0.0);
}

}  // namespace

std::string ModelConfig::describe() const {
  return cat(architecture, " (layers=", num_hidden_layers, ", hidden=", hidden_size,
             ", heads=", num_attention_heads, "/", num_key_value_heads, ", head_dim=", head_dim,
             ", ffn=", intermediate_size, ", vocab=", vocab_size, ", ctx=", max_position_embeddings,
             ")");
}

ModelConfig model_config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  std::optional<std::string> arch = f.get_string("general.architecture");
  if (!arch) throw Error(cat(f.path(), ": missing metadata key 'general.architecture'"));
  c.architecture = *arch;
  c.name = f.get_string("general.name").value_or("");
  const std::string& a = c.architecture;
  c.num_hidden_layers = require_int(f, a + ".block_count");
  c.hidden_size = require_int(f, a + ".embedding_length");
  c.intermediate_size = require_int(f, a + ".feed_forward_length");
  c.num_attention_heads = require_int(f, a + ".attention.head_count");
  c.num_key_value_heads = f.get_int(a + ".attention.head_count_kv").value_or(c.num_attention_heads);
  c.max_position_embeddings = f.get_int(a + ".context_length").value_or(2048);
  c.rms_norm_eps = f.get_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_theta = f.get_float(a + ".rope.freq_base").value_or(10000.0);
  check_positive(f, "block_count", c.num_hidden_layers, 1 << 12);
  check_positive(f, "embedding_length", c.hidden_size, 1 << 20);
  check_positive(f, "feed_forward_length", c.intermediate_size, 1 << 22);
  check_positive(f, "attention.head_count", c.num_attention_heads, 1 << 12);
  check_positive(f, "attention.head_count_kv", c.num_key_value_heads, c.num_attention_heads);
  check_positive(f, "context_length", c.max_position_embeddings, int64_t{1} << 24);
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw Error(cat(f.path(), ": head_count ", c.num_attention_heads,
                    " is not a multiple of head_count_kv ", c.num_key_value_heads));
  }
  c.head_dim = f.get_int(a + ".attention.key_length").value_or(c.hidden_size / c.num_attention_heads);
  check_positive(f, "attention.key_length", c.head_dim, 1 << 12);
  c.rotary_dim = f.get_int(a + ".rope.dimension_count").value_or(c.head_dim);
  if (c.rotary_dim <= 0 || c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0) {
    throw Error(cat(f.path(), ": rope.dimension_count ", c.rotary_dim, " is invalid for head size ",
                    c.head_dim));
  }
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  c.vocab_size = f.get_int(a + ".vocab_size").value_or(tokens ? static_cast<int64_t>(tokens->array.size()) : 0);
  if (std::optional<std::string> type = f.get_string(a + ".rope.scaling.type")) {
    c.rope_scaling.type = *type == "none" ? "" : *type;
    c.rope_scaling.factor = f.get_float(a + ".rope.scaling.factor").value_or(1.0);
    c.rope_scaling.original_max_position_embeddings =
        f.get_int(a + ".rope.scaling.original_context_length").value_or(0);
  }
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  // Qwen2 always has q/k/v biases and Qwen3 normalizes q and k per head; other files say so by
  // carrying the tensors.
  c.qkv_bias = a == "qwen2" || f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.o_proj_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  c.qk_norm = a == "qwen3" || f.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  if (a == "gemma3") read_gemma3(f, c);
  if (a == "gpt2") read_gpt2(f, c);
  if (a == "phi3") read_phi3(f, c);
  return c;
}

}  // namespace cvllm
