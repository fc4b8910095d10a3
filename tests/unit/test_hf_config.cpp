// Hugging Face checkpoint metadata: config.json -> ModelConfig (both transformers 5's
// `rope_parameters` and the older `rope_theta` + `rope_scaling` spellings, defaults, sliding
// windows, errors), generation_config.json -> sampling defaults and EOS ids (vLLM's rules), and
// the chat template's two homes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "loader/hf_files.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;

json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 256},
          {"max_position_embeddings", 128}};
}

ModelConfig parse(const json& j) {
  return model_config_from_hf_json(j.dump(), "dir/config.json");
}

template <typename E = Error>
std::string error_of(const json& j) {
  try {
    parse(j);
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error for " << j.dump();
  return "";
}

TEST(HfConfig, LlamaDefaults) {
  ModelConfig c = parse(llama_config());
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rotary_dim, 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.sliding_window, -1);
  EXPECT_TRUE(c.rope_scaling.type.empty());
  json no_kv = llama_config();
  no_kv.erase("num_key_value_heads");
  no_kv.erase("max_position_embeddings");
  ModelConfig mha = parse(no_kv);
  EXPECT_EQ(mha.num_key_value_heads, 4);
  EXPECT_EQ(mha.max_position_embeddings, 2048);  // LlamaConfig's default
}

TEST(HfConfig, LegacyRopeSpellings) {
  json j = llama_config();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  ModelConfig c = parse(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of<ValueError>(j).find("rope scaling type 'yarn' is not supported"),
            std::string::npos);
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_NE(error_of(j).find("llama3 rope scaling needs original_max_position_embeddings"),
            std::string::npos);
}

TEST(HfConfig, RopeParametersWin) {
  json j = llama_config();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  ModelConfig c = parse(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_TRUE(c.rope_scaling.type.empty());
}

TEST(HfConfig, ArchitectureVariants) {
  json q2 = llama_config();
  q2["architectures"] = {"Qwen2ForCausalLM"};
  q2["sliding_window"] = 4096;
  q2["use_sliding_window"] = false;
  ModelConfig c = parse(q2);
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.sliding_window, -1);
  EXPECT_EQ(c.max_position_embeddings, 128);
  // use_sliding_window: layers from max_window_layers on use it.
  q2["use_sliding_window"] = true;
  q2["max_window_layers"] = 1;
  c = parse(q2);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_FALSE(c.layer_uses_sliding_window(0));
  EXPECT_TRUE(c.layer_uses_sliding_window(1));
  // layer_types (transformers 5) decides when present.
  q2["layer_types"] = {"sliding_attention", "full_attention"};
  c = parse(q2);
  EXPECT_TRUE(c.layer_uses_sliding_window(0));
  EXPECT_FALSE(c.layer_uses_sliding_window(1));
  q2["layer_types"] = {"full_attention"};
  EXPECT_NE(error_of(q2).find("layer_types has 1 entries for 2 layers"), std::string::npos);

  json q3 = llama_config();
  q3["architectures"] = {"Qwen3ForCausalLM"};
  q3["head_dim"] = 32;
  q3["attention_bias"] = true;
  c = parse(q3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_TRUE(c.qkv_bias && c.o_proj_bias);

  json m = llama_config();
  m["architectures"] = {"MistralForCausalLM"};
  m["sliding_window"] = 16;
  c = parse(m);
  EXPECT_EQ(c.architecture, "mistral");
  EXPECT_TRUE(c.layer_uses_sliding_window(0) && c.layer_uses_sliding_window(1));
  m["sliding_window"] = nullptr;
  EXPECT_EQ(parse(m).sliding_window, -1);

  json llama_window = llama_config();  // Llama has no sliding window, whatever the file says
  llama_window["sliding_window"] = 8;
  EXPECT_EQ(parse(llama_window).sliding_window, -1);
}

TEST(HfConfig, UnknownArchitectureListsSupportedOnes) {
  json j = llama_config();
  j["architectures"] = {"FalconForCausalLM"};
  std::string msg = error_of<ValueError>(j);
  EXPECT_NE(msg.find("dir/config.json: model architecture 'FalconForCausalLM' is not supported"),
            std::string::npos);
  for (const std::string& a : supported_hf_architectures())
    EXPECT_NE(msg.find(a), std::string::npos) << a;
  for (const char* a :
       {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    EXPECT_NE(msg.find(a), std::string::npos) << a;
  }
}

TEST(HfConfig, MalformedFieldsNameTheField) {
  json j = llama_config();
  j.erase("hidden_size");
  EXPECT_NE(error_of(j).find("dir/config.json: missing field 'hidden_size'"), std::string::npos);
  j = llama_config();
  j["vocab_size"] = "big";
  EXPECT_NE(error_of(j).find("field 'vocab_size' is not an integer"), std::string::npos);
  j = llama_config();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(j).find("is not a multiple of num_key_value_heads 3"), std::string::npos);
  j = llama_config();
  j["num_hidden_layers"] = 0;
  EXPECT_NE(error_of(j).find("num_hidden_layers = 0 is out of range"), std::string::npos);
  j = llama_config();
  j["hidden_act"] = "gelu";
  EXPECT_NE(error_of<ValueError>(j).find("hidden_act \"gelu\" is not supported"),
            std::string::npos);
  j = llama_config();
  j["mlp_bias"] = true;
  EXPECT_NE(error_of<ValueError>(j).find("mlp_bias"), std::string::npos);
  j = llama_config();
  j.erase("architectures");
  EXPECT_NE(error_of(j).find("missing 'architectures'"), std::string::npos);
  EXPECT_THROW(model_config_from_hf_json("{", "x"), Error);
  EXPECT_THROW(model_config_from_hf("/nonexistent-dir"), Error);
}

TEST(HfGenerationConfig, FollowsVllmDiffRules) {
  HfGenerationConfig g = parse_hf_generation_config(
      R"({"temperature": 0.6, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.0,
          "max_new_tokens": 100, "min_p": 0.05, "eos_token_id": [128001, 128009]})",
      "generation_config.json");
  EXPECT_EQ(g.defaults.temperature, 0.6);
  EXPECT_EQ(g.defaults.top_p, 0.9);
  EXPECT_FALSE(g.defaults.top_k.has_value());  // 50 is transformers' default: not a model default
  EXPECT_FALSE(g.defaults.repetition_penalty.has_value());
  EXPECT_EQ(g.defaults.max_tokens, 100);
  EXPECT_EQ(g.defaults.min_p, 0.05);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{128001, 128009}));
  g = parse_hf_generation_config(R"({"eos_token_id": 2, "temperature": 1.0})", "g");
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_TRUE(g.defaults.empty());
  EXPECT_THROW(parse_hf_generation_config(R"({"eos_token_id": "x"})", "g"), Error);
  EXPECT_THROW(parse_hf_generation_config(R"({"temperature": "hot"})", "g"), Error);
  EXPECT_THROW(parse_hf_generation_config(R"({"max_new_tokens": -3})", "g"), Error);
  EXPECT_THROW(parse_hf_generation_config("[", "g"), Error);
}

TEST(HfChatTemplate, JinjaFileThenTokenizerConfig) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("cvllm_hf_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_FALSE(read_hf_chat_template(dir.string()).has_value());
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"chat_template": [{"name": "tool_use", "template": "T"},
                                                     {"name": "default", "template": "D"}]})";
  EXPECT_EQ(read_hf_chat_template(dir.string()), "D");
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": "{{ messages }}"})";
  EXPECT_EQ(read_hf_chat_template(dir.string()), "{{ messages }}");
  std::ofstream(dir / "chat_template.jinja") << "J";
  EXPECT_EQ(read_hf_chat_template(dir.string()), "J");
  fs::remove(dir / "chat_template.jinja");
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": 5})";
  EXPECT_THROW(read_hf_chat_template(dir.string()), Error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cvllm
