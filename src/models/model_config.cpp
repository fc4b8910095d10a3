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
  return c;
}

}  // namespace cvllm
