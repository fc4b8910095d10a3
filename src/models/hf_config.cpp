// config.json -> ModelConfig for Hugging Face checkpoints. Field names and defaults follow
// transformers' config classes (LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config, Phi3Config,
// OPTConfig, GPT2Config, Gemma3TextConfig, Gemma3Config's text_config); both the transformers 5
// spelling (`rope_parameters`) and the older one (`rope_theta` + `rope_scaling` with `type` or
// `rope_type`) are read.
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/model_config.h"
#include "models/registry.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& path) : j_(j), path_(path) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int64_t get_int(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      throw Error(cat(path_, ": missing field '", key, "'"));
    }
    if (!j_[key].is_number_integer())
      throw Error(cat(path_, ": field '", key, "' is not an integer"));
    return j_[key].get<int64_t>();
  }
  double get_double(const char* key, double fallback) const { return number(j_, key, fallback); }
  bool get_bool(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) throw Error(cat(path_, ": field '", key, "' is not a boolean"));
    return j_[key].get<bool>();
  }
  double number(const json& obj, const char* key, double fallback) const {
    if (!obj.contains(key) || obj[key].is_null()) return fallback;
    if (!obj[key].is_number()) throw Error(cat(path_, ": field '", key, "' is not a number"));
    return obj[key].get<double>();
  }
  void check_range(const char* key, int64_t v, int64_t max) const {
    if (v <= 0 || v > max) throw Error(cat(path_, ": ", key, " = ", v, " is out of range"));
  }
  const json& raw() const { return j_; }
  const std::string& path() const { return path_; }

 private:
  const json& j_;
  const std::string& path_;
};

std::string architecture_of(const ConfigReader& r) {
  const json& j = r.raw();
  if (!j.contains("architectures") || !j["architectures"].is_array() ||
      j["architectures"].empty() || !j["architectures"][0].is_string()) {
    throw Error(cat(r.path(), ": missing 'architectures' (a list naming the model class)"));
  }
  std::string hf_class = j["architectures"][0].get<std::string>();
  if (std::optional<std::string> arch = architecture_from_hf(hf_class)) return *arch;
  std::string supported;
  for (const std::string& a : supported_hf_architectures())
    supported += (supported.empty() ? "" : ", ") + a;
  throw ValueError(cat(r.path(), ": model architecture '", hf_class,
                       "' is not supported (supported: ", supported, ")"));
}

// transformers' defaults for fields a config.json may leave out.
int64_t default_max_position_embeddings(const std::string& arch) {
  if (arch == "llama") return 2048;
  if (arch == "mistral") return 4096 * 32;
  if (arch == "phi3") return 4096;
  if (arch == "gemma3") return 131072;
  return 32768;  // qwen2, qwen3
}

void read_rope_scaling(const ConfigReader& r, const json& scaling, ModelConfig& c);

void read_rope(const ConfigReader& r, ModelConfig& c) {
  const json& j = r.raw();
  c.rope_theta = r.get_double("rope_theta", 10000.0);
  const json* scaling = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    scaling = &j["rope_parameters"];
    c.rope_theta = r.number(*scaling, "rope_theta", c.rope_theta);
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    scaling = &j["rope_scaling"];
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    throw Error(cat(r.path(), ": field 'rope_scaling' is not an object"));
  }
  if (scaling != nullptr) read_rope_scaling(r, *scaling, c);
}

// `scaling`: a rope_scaling object, or a transformers 5 rope_parameters object (the same keys).
void read_rope_scaling(const ConfigReader& r, const json& scaling_obj, ModelConfig& c) {
  const json* scaling = &scaling_obj;
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    if (scaling->contains(key) && (*scaling)[key].is_string()) {
      type = (*scaling)[key].get<std::string>();
      break;
    }
  }
  if (type.empty() || type == "default") return;
  if (type != "linear" && type != "llama3") {
    throw ValueError(cat(r.path(), ": rope scaling type '", type,
                         "' is not supported (supported: default, linear, llama3)"));
  }
  c.rope_scaling.type = type;
  c.rope_scaling.factor = r.number(*scaling, "factor", 1.0);
  c.rope_scaling.low_freq_factor = r.number(*scaling, "low_freq_factor", 1.0);
  c.rope_scaling.high_freq_factor = r.number(*scaling, "high_freq_factor", 4.0);
  double original = r.number(*scaling, "original_max_position_embeddings", 0.0);
  if (original < 0.0 || original > double{1 << 24}) {
    throw Error(cat(r.path(), ": rope scaling original_max_position_embeddings is out of range"));
  }
  c.rope_scaling.original_max_position_embeddings = static_cast<int64_t>(original);
  if (c.rope_scaling.factor <= 0.0)
    throw Error(cat(r.path(), ": rope scaling factor must be positive"));
  if (type == "llama3" && (c.rope_scaling.original_max_position_embeddings <= 0 ||
                           c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor)) {
    throw Error(cat(r.path(),
                    ": llama3 rope scaling needs original_max_position_embeddings > 0 "
                    "and high_freq_factor > low_freq_factor"));
  }
}

// Mistral: one window for every layer. Qwen2/Qwen3: layers from max_window_layers on, when
// use_sliding_window is set. transformers 5 writes the outcome as `layer_types`, which wins.
void read_sliding_window(const ConfigReader& r, ModelConfig& c) {
  const json& j = r.raw();
  if (c.architecture == "llama" || !r.has("sliding_window")) return;  // Llama has no window
  int64_t window = r.get_int("sliding_window");
  bool qwen = c.architecture == "qwen2" || c.architecture == "qwen3";
  if (qwen && !r.get_bool("use_sliding_window", false)) return;
  if (window <= 0) throw Error(cat(r.path(), ": sliding_window = ", window, " must be positive"));
  c.sliding_window = window;
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    const json& types = j["layer_types"];
    if (static_cast<int64_t>(types.size()) != c.num_hidden_layers) {
      throw Error(cat(r.path(), ": layer_types has ", types.size(), " entries for ",
                      c.num_hidden_layers, " layers"));
    }
    for (const json& t : types) {
      c.sliding_window_layers.push_back(t.is_string() &&
                                        t.get<std::string>() == "sliding_attention");
    }
  } else if (qwen) {
    int64_t first = r.get_int("max_window_layers", c.num_hidden_layers);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) c.sliding_window_layers.push_back(i >= first);
  }
}

// Range checks shared by every architecture.
void check_sizes(const ConfigReader& r, const ModelConfig& c) {
  r.check_range("vocab_size", c.vocab_size, int64_t{1} << 24);
  r.check_range("hidden_size", c.hidden_size, 1 << 20);
  r.check_range("intermediate_size", c.intermediate_size, 1 << 22);
  r.check_range("num_hidden_layers", c.num_hidden_layers, 1 << 12);
  r.check_range("num_attention_heads", c.num_attention_heads, 1 << 12);
  r.check_range("num_key_value_heads", c.num_key_value_heads, c.num_attention_heads);
  r.check_range("max_position_embeddings", c.max_position_embeddings, int64_t{1} << 24);
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw Error(cat(r.path(), ": num_attention_heads ", c.num_attention_heads,
                    " is not a multiple of num_key_value_heads ", c.num_key_value_heads));
  }
}

// No explicit head_dim in OPT/GPT-2 configs: heads split hidden_size evenly.
void split_heads(const ConfigReader& r, ModelConfig& c) {
  if (c.hidden_size % c.num_attention_heads != 0) {
    throw Error(cat(r.path(), ": hidden size ", c.hidden_size,
                    " is not a multiple of the number of heads ", c.num_attention_heads));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.rotary_dim = 0;  // learned positions, no RoPE
}

// Phi-3 (and Phi-4-mini, the same class): fused projections, partial rotary (top-level
// `partial_rotary_factor` or, in transformers 5, inside `rope_parameters`).
void read_phi3(const ConfigReader& r, ModelConfig& c) {
  const json& j = r.raw();
  c.fused_qkv = c.fused_gate_up = true;
  double factor = r.get_double("partial_rotary_factor", 1.0);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
    factor = r.number(j["rope_parameters"], "partial_rotary_factor", factor);
  const auto rot = static_cast<int64_t>(static_cast<double>(c.head_dim) * factor);
  if (!(factor > 0.0 && factor <= 1.0) || rot < 2 || rot % 2 != 0) {
    throw Error(cat(r.path(), ": partial_rotary_factor ", factor, " is invalid for head_dim ",
                    c.head_dim));
  }
  c.rotary_dim = rot;
}

// The Llama family: LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config, Phi3Config.
void read_llama_family(const ConfigReader& r, ModelConfig& c) {
  const json& j = r.raw();
  const std::string& path = r.path();
  c.vocab_size = r.get_int("vocab_size");
  c.hidden_size = r.get_int("hidden_size");
  c.intermediate_size = r.get_int("intermediate_size");
  c.num_hidden_layers = r.get_int("num_hidden_layers");
  c.num_attention_heads = r.get_int("num_attention_heads");
  c.num_key_value_heads = r.get_int("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings =
      r.get_int("max_position_embeddings", default_max_position_embeddings(c.architecture));
  check_sizes(r, c);
  c.head_dim = r.get_int("head_dim", c.hidden_size / c.num_attention_heads);
  r.check_range("head_dim", c.head_dim, 1 << 12);
  if (c.head_dim % 2 != 0)
    throw Error(cat(path, ": head_dim ", c.head_dim, " must be even for RoPE"));
  c.rotary_dim = c.head_dim;
  c.rms_norm_eps = r.get_double("rms_norm_eps", 1e-6);
  read_rope(r, c);
  if (c.architecture == "phi3") read_phi3(r, c);
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);
  if (r.has("hidden_act") && (!j["hidden_act"].is_string() || j["hidden_act"] != "silu")) {
    throw ValueError(
        cat(path, ": hidden_act ", j["hidden_act"].dump(), " is not supported (silu)"));
  }
  if (r.get_bool("mlp_bias", false))
    throw ValueError(cat(path, ": mlp_bias = true is not supported"));
  bool attention_bias = r.get_bool("attention_bias", false);
  c.qkv_bias = c.architecture == "qwen2" || attention_bias;
  c.o_proj_bias = c.architecture != "qwen2" && attention_bias;
  c.qk_norm = c.architecture == "qwen3";
  read_sliding_window(r, c);
}

// `key` must be a string among `allowed` (activation names).
std::string read_activation(const ConfigReader& r, const char* key, const char* fallback,
                            std::initializer_list<const char*> allowed) {
  std::string act = fallback;
  if (r.has(key)) {
    if (!r.raw()[key].is_string())
      throw Error(cat(r.path(), ": field '", key, "' is not a string"));
    act = r.raw()[key].get<std::string>();
  }
  std::string names;
  for (const char* a : allowed) {
    if (act == a) return act;
    names += (names.empty() ? "" : ", ") + std::string(a);
  }
  throw ValueError(cat(r.path(), ": ", key, " '", act, "' is not supported (", names, ")"));
}

// OPTConfig: no RoPE, learned positions, LayerNorm (eps 1e-5, nn.LayerNorm's default), pre- or
// post-LN, optional project_in/out around the decoder.
void read_opt(const ConfigReader& r, ModelConfig& c) {
  c.vocab_size = r.get_int("vocab_size");
  c.hidden_size = r.get_int("hidden_size");
  c.intermediate_size = r.get_int("ffn_dim");
  c.num_hidden_layers = r.get_int("num_hidden_layers");
  c.num_attention_heads = r.get_int("num_attention_heads");
  c.num_key_value_heads = c.num_attention_heads;
  c.max_position_embeddings = r.get_int("max_position_embeddings", 2048);
  check_sizes(r, c);
  split_heads(r, c);
  c.word_embed_proj_dim = r.get_int("word_embed_proj_dim", c.hidden_size);
  r.check_range("word_embed_proj_dim", c.word_embed_proj_dim, 1 << 20);
  c.hidden_act = read_activation(r, "activation_function", "relu", {"relu"});
  c.layer_norm_eps = 1e-5;
  c.layer_norm_affine = r.get_bool("layer_norm_elementwise_affine", true);
  c.do_layer_norm_before = r.get_bool("do_layer_norm_before", true);
  c.final_layer_norm = c.do_layer_norm_before && !r.get_bool("_remove_final_layer_norm", false);
  bool bias = r.get_bool("enable_bias", true);
  c.qkv_bias = c.o_proj_bias = c.mlp_bias = bias;
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", true);
}

// GPT2Config: n_* field names, learned positions, gelu_new MLP of n_inner (default 4 * n_embd).
void read_gpt2(const ConfigReader& r, ModelConfig& c) {
  c.vocab_size = r.get_int("vocab_size");
  c.hidden_size = r.get_int("n_embd");
  c.num_hidden_layers = r.get_int("n_layer");
  c.num_attention_heads = r.get_int("n_head");
  c.num_key_value_heads = c.num_attention_heads;
  c.intermediate_size = r.get_int("n_inner", 4 * c.hidden_size);
  c.max_position_embeddings = r.get_int("n_positions", 1024);
  check_sizes(r, c);
  split_heads(r, c);
  // Two names of the same function (the tanh approximation).
  read_activation(r, "activation_function", "gelu_new", {"gelu_new", "gelu_pytorch_tanh"});
  c.hidden_act = "gelu_new";
  c.layer_norm_eps = r.get_double("layer_norm_epsilon", 1e-5);
  if (!r.get_bool("scale_attn_weights", true))
    throw ValueError(cat(r.path(), ": scale_attn_weights = false is not supported"));
  if (r.get_bool("scale_attn_by_inverse_layer_idx", false))
    throw ValueError(cat(r.path(), ": scale_attn_by_inverse_layer_idx = true is not supported"));
  c.qkv_bias = c.o_proj_bias = c.mlp_bias = true;
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", true);
}

// Gemma3TextConfig: GELU-tanh, query_pre_attn_scalar, local/global layers (layer_types, else
// every sliding_window_pattern-th layer global), and a RoPE per layer kind: transformers 5's
// rope_parameters {"full_attention": {...}, "sliding_attention": {...}}, or the older rope_theta
// + rope_scaling (global) and rope_local_base_freq (local). Defaults are the config class's.
void read_gemma3(const ConfigReader& r, ModelConfig& c) {
  const json& j = r.raw();
  const std::string& path = r.path();
  c.vocab_size = r.get_int("vocab_size", 262208);
  c.hidden_size = r.get_int("hidden_size", 2304);
  c.intermediate_size = r.get_int("intermediate_size", 9216);
  c.num_hidden_layers = r.get_int("num_hidden_layers", 26);
  c.num_attention_heads = r.get_int("num_attention_heads", 8);
  c.num_key_value_heads = r.get_int("num_key_value_heads", 4);
  c.max_position_embeddings = r.get_int("max_position_embeddings", 131072);
  check_sizes(r, c);
  c.head_dim = r.get_int("head_dim", 256);
  r.check_range("head_dim", c.head_dim, 1 << 12);
  if (c.head_dim % 2 != 0)
    throw Error(cat(path, ": head_dim ", c.head_dim, " must be even for RoPE"));
  c.rotary_dim = c.head_dim;
  c.rms_norm_eps = r.get_double("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", true);
  read_activation(r, "hidden_activation", "gelu_pytorch_tanh", {"gelu_pytorch_tanh"});
  c.hidden_act = "gelu_new";  // the same tanh form
  if (r.get_bool("attention_bias", false))
    throw ValueError(cat(path, ": attention_bias = true is not supported"));
  if (r.get_bool("use_bidirectional_attention", false))
    throw ValueError(cat(path, ": use_bidirectional_attention = true is not supported"));
  c.qk_norm = true;
  c.query_pre_attn_scalar = r.get_double("query_pre_attn_scalar", 256.0);
  c.attn_logit_softcapping = r.get_double("attn_logit_softcapping", 0.0);
  c.final_logit_softcapping = r.get_double("final_logit_softcapping", 0.0);
  if (c.query_pre_attn_scalar <= 0.0 || c.attn_logit_softcapping < 0.0 ||
      c.final_logit_softcapping < 0.0) {
    throw Error(cat(path, ": query_pre_attn_scalar and the softcaps must be positive"));
  }

  c.sliding_window = r.get_int("sliding_window", 4096);
  if (c.sliding_window <= 0)
    throw Error(cat(path, ": sliding_window = ", c.sliding_window, " must be positive"));
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    const json& types = j["layer_types"];
    if (static_cast<int64_t>(types.size()) != c.num_hidden_layers) {
      throw Error(cat(path, ": layer_types has ", types.size(), " entries for ",
                      c.num_hidden_layers, " layers"));
    }
    for (const json& t : types) {
      if (!t.is_string() || (t != "sliding_attention" && t != "full_attention"))
        throw Error(cat(path, ": layer_types entry ", t.dump(), " is not supported"));
      c.sliding_window_layers.push_back(t == "sliding_attention");
    }
  } else {
    int64_t every = r.get_int("sliding_window_pattern", r.get_int("_sliding_window_pattern", 6));
    r.check_range("sliding_window_pattern", every, 1 << 12);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i)
      c.sliding_window_layers.push_back((i + 1) % every != 0);
  }

  const json* params = j.contains("rope_parameters") && j["rope_parameters"].is_object()
                           ? &j["rope_parameters"]
                           : nullptr;
  if (params != nullptr && params->contains("full_attention")) {
    const json& global = (*params)["full_attention"];
    const json& local = params->value("sliding_attention", json::object());
    if (!global.is_object() || !local.is_object())
      throw Error(cat(path, ": rope_parameters entries must be objects"));
    c.rope_theta = r.number(global, "rope_theta", 1000000.0);
    read_rope_scaling(r, global, c);
    c.rope_local_base_freq = r.number(local, "rope_theta", 10000.0);
    std::string local_type = "default";
    if (local.contains("rope_type") && local["rope_type"].is_string())
      local_type = local["rope_type"].get<std::string>();
    if (local_type != "default")
      throw ValueError(
          cat(path, ": rope type '", local_type, "' on sliding layers is not supported"));
  } else {
    read_rope(r, c);
    c.rope_theta = r.get_double("rope_theta", 1000000.0);
    if (params != nullptr) c.rope_theta = r.number(*params, "rope_theta", c.rope_theta);
    c.rope_local_base_freq = r.get_double("rope_local_base_freq", 10000.0);
  }
  if (c.rope_theta <= 0.0 || c.rope_local_base_freq <= 0.0)
    throw Error(cat(path, ": rope bases must be positive"));
}

// Gemma3ForConditionalGeneration (Gemma 3 4B/12B/27B): Gemma3Config nests the decoder's settings
// under `text_config`, and the hub's files list only the keys that differ from Gemma3TextConfig's
// defaults (4B's has five), so read_gemma3's defaults do the rest; an absent text_config is all
// defaults. The vision tower's settings are ignored (text prompts only). The LM head tie is the
// top-level tie_word_embeddings (default true), which is the one transformers 5 ties by; when only
// text_config has one, that is used.
void read_gemma3_multimodal(const ConfigReader& r, ModelConfig& c) {
  static const json kEmpty = json::object();
  const json& j = r.raw();
  const json* text = &kEmpty;
  if (r.has("text_config")) {
    if (!j["text_config"].is_object())
      throw Error(cat(r.path(), ": field 'text_config' is not an object"));
    text = &j["text_config"];
  }
  const std::string text_path = r.path() + " (text_config)";
  ConfigReader text_reader(*text, text_path);
  read_gemma3(text_reader, c);
  if (r.has("tie_word_embeddings")) c.tie_word_embeddings = r.get_bool("tie_word_embeddings", true);
}

}  // namespace

ModelConfig model_config_from_hf_json(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(cat(path, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object()) throw Error(cat(path, ": not a JSON object"));
  ConfigReader r(j, path);
  ModelConfig c;
  c.architecture = architecture_of(r);
  c.name = j.contains("_name_or_path") && j["_name_or_path"].is_string()
               ? j["_name_or_path"].get<std::string>()
               : "";
  if (c.architecture == "opt") {
    read_opt(r, c);
  } else if (c.architecture == "gpt2") {
    read_gpt2(r, c);
  } else if (c.architecture == "gemma3") {
    if (j["architectures"][0] == "Gemma3ForConditionalGeneration") {
      read_gemma3_multimodal(r, c);
    } else {
      read_gemma3(r, c);
    }
  } else {
    read_llama_family(r, c);
  }
  return c;
}

ModelConfig model_config_from_hf(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  return model_config_from_hf_json(text.str(), path);
}

}  // namespace cvllm
