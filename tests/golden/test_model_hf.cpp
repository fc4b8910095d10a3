// Tiny random-weight Hugging Face checkpoints (tests/golden/data/hf/<name>/, safetensors in f32,
// bf16 and f16, one sharded) against transformers (scripts/gen_hf_model_fixtures.py): Llama with
// llama3 and linear rope scaling, Mistral with a sliding window shorter than the prompts, Qwen2
// with q/k/v biases, Qwen3 with q/k norms, OPT pre-LN (opt-125m-like), post-LN with
// project_in/out (opt-350m-like) and without biases or LayerNorm affine, GPT-2 (Conv1D weights,
// fused c_attn), Phi-3 (fused qkv and gate_up, partial rotary, sliding window), Gemma 3 (sandwich
// (1 + w) norms, scaled embeddings, local/global layers with two RoPE bases, final logit
// soft-capping), Gemma 3 as Gemma3ForConditionalGeneration (text_config, a vision tower left
// unread, "language_model.model.*" or "model.language_model.*" names); OPT and GPT-2 also under
// their base models' key names ("decoder.*", "h.0.*").
// The forward pass is compared logit by logit; greedy continuations go through the whole engine
// (cvllm::LLM, token-id prompts, skip_tokenizer_init, all prompts in one batch).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "cvllm/cvllm.h"
#include "engine/llm_engine.h"
#include "golden_util.h"
#include "loader/hf_weight_source.h"
#include "loader/safetensors.h"
#include "models/gemma3.h"
#include "models/gpt2.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

namespace fs = std::filesystem;
using testing::closeness;
using testing::golden_path;
using testing::load_json;
using testing::to_floats;

// Both sides compute in float32 from the same (exactly upcast) weights; they differ only in
// summation order. Logits reach ~±10 and the largest difference measured is ~1e-5, so 1e-4
// absolute plus 1e-4 relative leaves a 10x margin while a wrong layer, bias, norm or RoPE layout
// is off by 1e-2 or more.
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;
constexpr double kLogprobAtol = 2e-4;

std::string checkpoint_dir(const std::string& name) {
  return golden_path("hf/" + name);
}

// One request over positions 0..T-1 through the model's forward pass, as the engine would run
// it, with a block table in reverse order so paging matters.
class HfModelHarness {
 public:
  // `tweak` edits the config before the model is built (to switch a feature off); `format` says
  // which source the model should believe the weights come from (it picks the RoPE layout).
  HfModelHarness(const std::string& dir, cpu::MatmulPath path,
                 const std::function<void(ModelConfig&)>& tweak = nullptr,
                 CheckpointFormat format = CheckpointFormat::kHuggingFace)
      : config_(model_config_from_hf(dir)),
        checkpoint_(
            std::make_shared<const SafetensorsCheckpoint>(SafetensorsCheckpoint::open_dir(dir))),
        backend_(2, path) {
    if (tweak) tweak(config_);
    HfWeightSource weights(checkpoint_, hf_weight_name_map(config_.architecture));
    model_ = create_model(config_, weights, backend_, format);
  }
  const ModelConfig& config() const { return config_; }
  const CausalLM& model() const { return *model_; }

  std::vector<float> forward(const std::vector<int32_t>& ids, int block_size = 4) {
    return testing::forward_one_prompt(*model_, backend_, config_, ids, block_size);
  }

 private:
  ModelConfig config_;
  std::shared_ptr<const SafetensorsCheckpoint> checkpoint_;
  cpu::CpuBackend backend_;
  std::unique_ptr<CausalLM> model_;
};

EngineArgs engine_args(const std::string& model, const std::string& kernels = "reference") {
  EngineArgs args;
  args.model = model;
  args.skip_tokenizer_init = true;
  args.device = "cpu";  // the f32 tolerances below are the CPU backend's
  args.cpu_kernels = kernels;
  args.num_threads = 2;
  args.kv_cache_memory_bytes = 16 << 20;
  return args;
}

// Greedy with the 5 logprobs the fixtures record.
SamplingParams greedy(int max_tokens) { return testing::greedy(max_tokens, 5); }

class HfCheckpoint : public ::testing::TestWithParam<std::string> {
 protected:
  nlohmann::json fixture() const { return load_json(golden_path("hf/" + GetParam() + ".json")); }
};

TEST_P(HfCheckpoint, LogitsMatchTransformers) {
  nlohmann::json fx = fixture();
  HfModelHarness harness(checkpoint_dir(GetParam()), cpu::MatmulPath::kReference);
  const int64_t vocab = harness.config().vocab_size;
  double worst_abs = 0.0;
  for (const auto& prompt : fx["prompts"]) {
    std::vector<int32_t> ids = prompt["token_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("prompt of " + std::to_string(ids.size()) + " tokens");
    std::vector<float> logits = harness.forward(ids);
    ASSERT_EQ(logits.size(), ids.size() * vocab);
    std::vector<float> last(logits.end() - vocab, logits.end());
    std::vector<float> expected = to_floats(prompt["last_logits"]);
    size_t at = 0;
    EXPECT_LE(closeness(last, expected, kLogitAtol, kLogitRtol, &at), 1.0)
        << "last-position logit " << at << ": ours " << last[at] << ", transformers "
        << expected[at];
    for (size_t i = 0; i < last.size(); ++i)
      worst_abs = std::max(worst_abs, std::fabs(double(last[i]) - expected[i]));
    for (size_t p = 0; p < ids.size(); ++p) {
      std::vector<float> lp = testing::log_softmax_row(logits.data() + p * vocab, vocab);
      for (const auto& entry : prompt["top5"][p]) {
        int32_t id = entry[0].get<int32_t>();
        EXPECT_NEAR(lp[id], entry[1].get<double>(), kLogprobAtol)
            << "position " << p << " token " << id;
      }
    }
  }
  std::cout << "[ note ] " << GetParam() << ": largest |logit difference| " << worst_abs << "\n";
}

// Greedy continuations of all prompts in one batch, through LLM with token-id prompts.
void expect_greedy_matches(const nlohmann::json& fx, LLM& llm, const std::string& what) {
  std::vector<Prompt> prompts;
  for (const auto& p : fx["prompts"])
    prompts.emplace_back(p["token_ids"].get<std::vector<int32_t>>());
  std::vector<RequestOutput> outputs =
      llm.generate(prompts, greedy(fx["num_new_tokens"].get<int>()), false);
  ASSERT_EQ(outputs.size(), prompts.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& ref = fx["prompts"][i];
    const CompletionOutput& out = outputs[i].outputs[0];
    EXPECT_EQ(out.token_ids, ref["greedy_token_ids"].get<std::vector<int32_t>>())
        << what << ", prompt " << i;
    EXPECT_TRUE(out.text.empty()) << "skip_tokenizer_init: no text";
    ASSERT_TRUE(out.logprobs.has_value());
    for (size_t s = 0; s < out.token_ids.size() && s < ref["greedy_top5"].size(); ++s) {
      const auto& best = ref["greedy_top5"][s][0];
      const auto& step = (*out.logprobs)[s];
      auto it = std::find_if(step.begin(), step.end(),
                             [&](const auto& e) { return e.first == best[0].get<int32_t>(); });
      ASSERT_NE(it, step.end()) << what << ", prompt " << i << " step " << s;
      EXPECT_NEAR(it->second.logprob, best[1].get<double>(), kLogprobAtol)
          << what << ", prompt " << i << " step " << s;
    }
  }
}

TEST_P(HfCheckpoint, GreedyThroughLLMMatchesTransformers) {
  nlohmann::json fx = fixture();
  LLM llm(engine_args(checkpoint_dir(GetParam())));
  EXPECT_EQ(llm.engine().tokenizer(), nullptr);
  expect_greedy_matches(fx, llm, "reference kernels");
}

// F32/F16/BF16 weights take f32 FMA on the fast path too (no activation quantization), so the
// greedy tokens must be the same; the fixtures' smallest greedy margin is 0.036 (llama_f32).
TEST_P(HfCheckpoint, GreedyWithFastKernelsMatchesTransformers) {
  nlohmann::json fx = fixture();
  LLM llm(engine_args(checkpoint_dir(GetParam()), "fast"));
  expect_greedy_matches(fx, llm, "fast kernels");
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, HfCheckpoint,
                         ::testing::Values("llama_f32", "llama_f32_sharded", "llama_bf16_tied",
                                           "mistral_swa", "qwen2_f32", "qwen3_f16", "opt_f32",
                                           "opt_post_ln_bf16", "opt_f32_bare", "opt_plain_f16",
                                           "gpt2_f16",
                                           "gpt2_f16_bare", "phi3_bf16", "gemma3_f32",
                                           "gemma3_bf16_softcap", "gemma3_mm_f32",
                                           "gemma3_mm_untied_f32"),
                         [](const auto& info) { return info.param; });

// GGUF copies of the Qwen and Gemma 3 checkpoints (same weights, llama.cpp's names and metadata
// keys, Q/K not permuted, Gemma's norms stored as 1 + w): GGUF qwen2/qwen3/gemma3 load with
// rotate-half RoPE, biases, q/k norms and Gemma's sandwich norms, and match the same transformers
// reference.
class GgufQwenCopy : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufQwenCopy, LogitsMatchTransformers) {
  nlohmann::json fx = load_json(golden_path("hf/" + GetParam() + ".json"));
  testing::ModelHarness harness(golden_path("hf/" + GetParam() + ".gguf"),
                                cpu::MatmulPath::kReference);
  const int64_t vocab = harness.config().vocab_size;
  for (const auto& prompt : fx["prompts"]) {
    std::vector<float> logits = harness.forward(prompt["token_ids"].get<std::vector<int32_t>>());
    std::vector<float> last(logits.end() - vocab, logits.end());
    EXPECT_LE(closeness(last, to_floats(prompt["last_logits"]), kLogitAtol, kLogitRtol), 1.0);
  }
}

TEST_P(GgufQwenCopy, GreedyThroughLLMMatchesTransformers) {
  nlohmann::json fx = load_json(golden_path("hf/" + GetParam() + ".json"));
  LLM llm(engine_args(golden_path("hf/" + GetParam() + ".gguf")));
  expect_greedy_matches(fx, llm, "gguf copy");
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, GgufQwenCopy,
                         ::testing::Values("qwen2_f32", "qwen3_f16", "gemma3_f32"),
                         [](const auto& info) { return info.param; });

// The RoPE layout is chosen per source: HF Llama weights read as if they came from a GGUF file
// (interleaved layout) give wrong logits, so the rotate-half choice above is what makes them match.
TEST(HfCheckpointFiles, RopeLayoutFollowsTheSource) {
  nlohmann::json fx = load_json(golden_path("hf/llama_f32.json"));
  const auto& prompt = fx["prompts"][2];
  HfModelHarness as_gguf(checkpoint_dir("llama_f32"), cpu::MatmulPath::kReference, nullptr,
                         CheckpointFormat::kGguf);
  std::vector<float> all = as_gguf.forward(prompt["token_ids"].get<std::vector<int32_t>>());
  std::vector<float> last(all.end() - as_gguf.config().vocab_size, all.end());
  EXPECT_GT(closeness(last, to_floats(prompt["last_logits"]), kLogitAtol, kLogitRtol), 100.0);
}

TEST(HfCheckpointFiles, ShardedLoadsTheSameWeightsAsSingleFile) {
  HfModelHarness single(checkpoint_dir("llama_f32"), cpu::MatmulPath::kReference);
  HfModelHarness sharded(checkpoint_dir("llama_f32_sharded"), cpu::MatmulPath::kReference);
  std::vector<int32_t> ids = {5, 17, 99, 3};
  EXPECT_EQ(single.forward(ids), sharded.forward(ids));
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open_dir(checkpoint_dir("llama_f32_sharded"));
  EXPECT_EQ(ckpt.files().size(), 4u);
}

TEST(HfCheckpointFiles, ConfigReadsEveryVariant) {
  ModelConfig llama = model_config_from_hf(checkpoint_dir("llama_f32"));
  EXPECT_EQ(llama.architecture, "llama");
  EXPECT_EQ(llama.head_dim, 16);  // explicit, != hidden / heads
  EXPECT_EQ(llama.rope_scaling.type, "llama3");
  EXPECT_EQ(llama.rope_scaling.original_max_position_embeddings, 32);
  EXPECT_FALSE(llama.tie_word_embeddings);
  ModelConfig bf16 = model_config_from_hf(checkpoint_dir("llama_bf16_tied"));
  EXPECT_TRUE(bf16.tie_word_embeddings);
  EXPECT_EQ(bf16.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(bf16.rope_scaling.factor, 2.0);
  ModelConfig mistral = model_config_from_hf(checkpoint_dir("mistral_swa"));
  EXPECT_EQ(mistral.architecture, "mistral");
  EXPECT_EQ(mistral.sliding_window, 8);
  EXPECT_TRUE(mistral.layer_uses_sliding_window(0) && mistral.layer_uses_sliding_window(1));
  EXPECT_DOUBLE_EQ(mistral.rope_theta, 1000.0);
  ModelConfig qwen2 = model_config_from_hf(checkpoint_dir("qwen2_f32"));
  EXPECT_TRUE(qwen2.qkv_bias);
  EXPECT_FALSE(qwen2.o_proj_bias);
  EXPECT_EQ(qwen2.sliding_window, -1);  // use_sliding_window is false
  ModelConfig qwen3 = model_config_from_hf(checkpoint_dir("qwen3_f16"));
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_FALSE(qwen3.qkv_bias);
  ModelConfig opt = model_config_from_hf(checkpoint_dir("opt_f32"));
  EXPECT_EQ(opt.architecture, "opt");
  EXPECT_EQ(opt.hidden_act, "relu");
  EXPECT_EQ(opt.intermediate_size, 128);  // ffn_dim
  EXPECT_EQ(opt.head_dim, 16);
  EXPECT_TRUE(opt.do_layer_norm_before && opt.final_layer_norm);
  EXPECT_TRUE(opt.qkv_bias && opt.o_proj_bias && opt.mlp_bias);
  EXPECT_TRUE(opt.tie_word_embeddings);
  EXPECT_EQ(opt.word_embed_proj_dim, 64);
  ModelConfig opt_post = model_config_from_hf(checkpoint_dir("opt_post_ln_bf16"));
  EXPECT_FALSE(opt_post.do_layer_norm_before || opt_post.final_layer_norm);
  EXPECT_EQ(opt_post.word_embed_proj_dim, 32);
  ModelConfig opt_plain = model_config_from_hf(checkpoint_dir("opt_plain_f16"));
  EXPECT_FALSE(opt_plain.qkv_bias || opt_plain.o_proj_bias || opt_plain.mlp_bias);
  EXPECT_FALSE(opt_plain.layer_norm_affine);
  ModelConfig gpt2 = model_config_from_hf(checkpoint_dir("gpt2_f16"));
  EXPECT_EQ(gpt2.architecture, "gpt2");
  EXPECT_EQ(gpt2.hidden_act, "gelu_new");
  EXPECT_EQ(gpt2.hidden_size, 64);         // n_embd
  EXPECT_EQ(gpt2.intermediate_size, 256);  // n_inner null: 4 * n_embd
  EXPECT_EQ(gpt2.max_position_embeddings, 128);
  EXPECT_TRUE(gpt2.tie_word_embeddings);
  ModelConfig phi3 = model_config_from_hf(checkpoint_dir("phi3_bf16"));
  EXPECT_EQ(phi3.architecture, "phi3");
  EXPECT_TRUE(phi3.fused_qkv && phi3.fused_gate_up);
  EXPECT_EQ(phi3.rotary_dim, 8);  // partial_rotary_factor 0.5 of head_dim 16
  EXPECT_EQ(phi3.sliding_window, 10);
}

// Phi-3's long-context variants (128k) use rope scaling we do not implement: a ValueError that
// names it, never a silently wrong model.
TEST(HfCheckpointFiles, Phi3LongRopeIsRejectedByName) {
  std::ifstream in(checkpoint_dir("phi3_bf16") + "/config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  for (const char* type : {"longrope", "su"}) {
    j.erase("rope_parameters");
    j["rope_scaling"] = {{"type", type}, {"short_factor", {1.0}}, {"long_factor", {1.0}}};
    try {
      model_config_from_hf_json(j.dump(), "phi3/config.json");
      ADD_FAILURE() << type << " accepted";
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(type), std::string::npos) << e.what();
    }
  }
}

// The fixture exercises Phi-3's partial rotary: rotating whole heads instead moves the logits far
// from transformers'.
TEST(HfCheckpointFiles, Phi3PartialRotaryMatters) {
  nlohmann::json fx = load_json(golden_path("hf/phi3_bf16.json"));
  const auto& prompt = fx["prompts"][2];
  std::vector<float> expected = to_floats(prompt["last_logits"]);
  const int64_t vocab = static_cast<int64_t>(expected.size());
  HfModelHarness whole(checkpoint_dir("phi3_bf16"), cpu::MatmulPath::kReference,
                       [](ModelConfig& c) { c.rotary_dim = c.head_dim; });
  std::vector<float> all = whole.forward(prompt["token_ids"].get<std::vector<int32_t>>());
  std::vector<float> last(all.end() - vocab, all.end());
  EXPECT_GT(closeness(last, expected, kLogitAtol, kLogitRtol), 100.0);
}

// OPT has no GGUF form (llama.cpp has no OPT): asking for one is a ValueError, not a wrong model.
// (GPT-2 GGUF files load: test_model_gguf_gpt2_phi3.cpp.)
TEST(HfCheckpointFiles, LearnedPositionModelsAreHuggingFaceOnly) {
  EXPECT_THROW(HfModelHarness(checkpoint_dir("opt_f32"), cpu::MatmulPath::kReference, nullptr,
                              CheckpointFormat::kGguf),
               ValueError);
  std::vector<std::string> archs = supported_hf_architectures();
  for (const char* name : {"OPTForCausalLM", "GPT2LMHeadModel"})
    EXPECT_NE(std::find(archs.begin(), archs.end(), name), archs.end()) << name;
}

// Conv1D [in, out] -> [out, in], every dtype kept.
TEST(HfCheckpointFiles, Conv1DTransposeKeepsTheDtype) {
  const float f[6] = {1, 2, 3, 4, 5, 6};  // [2, 3]
  Tensor t = transpose_conv1d_weight(Tensor::view(f, DType::kF32, {2, 3}));
  ASSERT_EQ(t.shape(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(std::vector<float>(t.data_as<float>(), t.data_as<float>() + 6),
            (std::vector<float>{1, 4, 2, 5, 3, 6}));
  const uint16_t h[6] = {1, 2, 3, 4, 5, 6};
  Tensor th = transpose_conv1d_weight(Tensor::view(h, DType::kBF16, {2, 3}));
  EXPECT_EQ(th.dtype(), DType::kBF16);
  EXPECT_EQ(std::vector<uint16_t>(th.data_as<uint16_t>(), th.data_as<uint16_t>() + 6),
            (std::vector<uint16_t>{1, 4, 2, 5, 3, 6}));
}

// The tied OPT checkpoint carries no lm_head.weight (transformers 5 does not save tied copies),
// so the logits test above shows the head falls back to embed_tokens.
TEST(HfCheckpointFiles, OptTiedHeadHasNoWeightInTheFile) {
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open_dir(checkpoint_dir("opt_f32"));
  EXPECT_EQ(ckpt.find("lm_head.weight").first, nullptr);
  EXPECT_NE(ckpt.find("model.decoder.embed_positions.weight").first, nullptr);
}

// The sliding window changes the answer on the long prompt: with it switched off, the logits move
// far from transformers' (so the fixture really tests the window).
TEST(HfCheckpointFiles, MistralWindowMatters) {
  nlohmann::json fx = load_json(golden_path("hf/mistral_swa.json"));
  const auto& prompt = fx["prompts"][2];
  std::vector<int32_t> ids = prompt["token_ids"].get<std::vector<int32_t>>();
  ASSERT_GT(ids.size(), 8u);
  std::vector<float> expected = to_floats(prompt["last_logits"]);
  const int64_t vocab = static_cast<int64_t>(expected.size());
  auto last_logits = [&](HfModelHarness& h) {
    std::vector<float> all = h.forward(ids);
    return std::vector<float>(all.end() - vocab, all.end());
  };
  HfModelHarness windowed(checkpoint_dir("mistral_swa"), cpu::MatmulPath::kReference);
  HfModelHarness full(checkpoint_dir("mistral_swa"), cpu::MatmulPath::kReference,
                      [](ModelConfig& c) { c.sliding_window = -1; });
  EXPECT_LE(closeness(last_logits(windowed), expected, kLogitAtol, kLogitRtol), 1.0);
  EXPECT_GT(closeness(last_logits(full), expected, kLogitAtol, kLogitRtol), 100.0);
}

// Last-position logits of the long prompt (19 tokens) of a fixture, with the config tweaked.
std::vector<float> long_prompt_logits(const std::string& name,
                                      const std::function<void(ModelConfig&)>& tweak) {
  nlohmann::json fx = load_json(golden_path("hf/" + name + ".json"));
  const auto& prompt = fx["prompts"][2];
  HfModelHarness harness(checkpoint_dir(name), cpu::MatmulPath::kReference, tweak);
  std::vector<float> all = harness.forward(prompt["token_ids"].get<std::vector<int32_t>>());
  return std::vector<float>(all.end() - harness.config().vocab_size, all.end());
}

std::vector<float> long_prompt_expected(const std::string& name) {
  return to_floats(load_json(golden_path("hf/" + name + ".json"))["prompts"][2]["last_logits"]);
}

// Each Gemma 3 feature the fixtures carry changes the answer: switching one off moves the logits
// far from transformers' (so matching them above really tests it).
TEST(HfCheckpointFiles, Gemma3FeaturesMatter) {
  struct Case {
    const char* name;
    const char* fixture;
    std::function<void(ModelConfig&)> tweak;
  };
  const Case cases[] = {
      {"no sliding window", "gemma3_f32", [](ModelConfig& c) { c.sliding_window = -1; }},
      {"local RoPE base = global", "gemma3_f32",
       [](ModelConfig& c) { c.rope_local_base_freq = c.rope_theta; }},
      {"no global rope scaling", "gemma3_f32", [](ModelConfig& c) { c.rope_scaling = {}; }},
      {"head_dim attention scale", "gemma3_bf16_softcap",
       [](ModelConfig& c) { c.query_pre_attn_scalar = static_cast<double>(c.head_dim); }},
      {"no final softcap", "gemma3_bf16_softcap",
       [](ModelConfig& c) { c.final_logit_softcapping = 0.0; }},
  };
  for (const Case& c : cases) {
    std::vector<float> expected = long_prompt_expected(c.fixture);
    EXPECT_LE(closeness(long_prompt_logits(c.fixture, nullptr), expected, kLogitAtol, kLogitRtol),
              1.0)
        << c.fixture;
    EXPECT_GT(closeness(long_prompt_logits(c.fixture, c.tweak), expected, kLogitAtol, kLogitRtol),
              100.0)
        << c.name;
  }
}

// sqrt(hidden_size) is rounded to the embedding table's dtype, as transformers casts it: bf16
// 6.9375 for hidden 48, the exact float32 root for f32 tables.
TEST(HfCheckpointFiles, Gemma3EmbeddingScaleFollowsTheWeightsDtype) {
  HfModelHarness bf16(checkpoint_dir("gemma3_bf16_softcap"), cpu::MatmulPath::kReference);
  nlohmann::json fx = load_json(golden_path("hf/gemma3_bf16_softcap.json"));
  const auto& model = dynamic_cast<const Gemma3ForCausalLM&>(bf16.model());
  EXPECT_EQ(model.embed_scale(), fx["embed_scale"].get<float>());
  EXPECT_EQ(model.embed_scale(), 6.9375f);
  HfModelHarness f32(checkpoint_dir("gemma3_f32"), cpu::MatmulPath::kReference);
  EXPECT_EQ(dynamic_cast<const Gemma3ForCausalLM&>(f32.model()).embed_scale(), std::sqrt(48.0f));
}

TEST(HfCheckpointFiles, Gemma3ConfigAndGgufKeys) {
  ModelConfig hf = model_config_from_hf(checkpoint_dir("gemma3_f32"));
  EXPECT_EQ(hf.architecture, "gemma3");
  EXPECT_EQ(hf.hidden_act, "gelu_new");
  EXPECT_EQ(hf.sliding_window, 6);
  EXPECT_EQ(hf.sliding_window_layers, (std::vector<bool>{true, true, false, true}));
  EXPECT_DOUBLE_EQ(hf.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(hf.rope_local_base_freq, 100.0);
  EXPECT_EQ(hf.rope_scaling.type, "linear");
  EXPECT_TRUE(hf.tie_word_embeddings);
  ModelConfig capped = model_config_from_hf(checkpoint_dir("gemma3_bf16_softcap"));
  EXPECT_EQ(capped.sliding_window_layers, (std::vector<bool>{false, true, true}));
  EXPECT_DOUBLE_EQ(capped.query_pre_attn_scalar, 40.0);
  EXPECT_DOUBLE_EQ(capped.final_logit_softcapping, 4.0);
  EXPECT_FALSE(capped.tie_word_embeddings);
  // The GGUF copy: the same layer kinds and RoPE from llama.cpp's keys.
  ModelConfig gguf = model_config_from_gguf(*GgufFile::open(golden_path("hf/gemma3_f32.gguf")));
  EXPECT_EQ(gguf.sliding_window, hf.sliding_window);
  EXPECT_EQ(gguf.sliding_window_layers, hf.sliding_window_layers);
  EXPECT_DOUBLE_EQ(gguf.rope_local_base_freq, hf.rope_local_base_freq);
  EXPECT_DOUBLE_EQ(gguf.query_pre_attn_scalar, 16.0);  // head_dim, as llama.cpp assumes
  // The pre-transformers-5 spelling of Hub configs (google/gemma-3-270m): rope_theta +
  // rope_local_base_freq + rope_scaling, layer pattern as an int when layer_types is absent.
  const char* old_style = R"({"architectures": ["Gemma3ForCausalLM"], "hidden_size": 640,
      "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
      "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144, "rope_theta": 1000000.0,
      "rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
      "sliding_window": 512, "_sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
      "attn_logit_softcapping": null, "final_logit_softcapping": null,
      "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768})";
  ModelConfig old = model_config_from_hf_json(old_style, "gemma3/config.json");
  EXPECT_DOUBLE_EQ(old.rope_theta, 1000000.0);
  EXPECT_DOUBLE_EQ(old.rope_local_base_freq, 10000.0);
  EXPECT_EQ(old.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(old.rope_scaling.factor, 8.0);
  ASSERT_EQ(old.sliding_window_layers.size(), 18u);
  for (int i = 0; i < 18; ++i) EXPECT_EQ(old.sliding_window_layers[i], (i + 1) % 6 != 0) << i;
  EXPECT_TRUE(old.tie_word_embeddings);  // Gemma3TextConfig's default
  EXPECT_DOUBLE_EQ(old.final_logit_softcapping, 0.0);
}

// Gemma3ForConditionalGeneration configs as the hub has them list only a few text_config keys;
// the rest are Gemma3TextConfig's defaults. Each case is checked against what transformers
// resolved it to (gemma3_mm_config_defaults.json).
TEST(HfCheckpointFiles, Gemma3MultimodalConfigTakesTextConfigDefaults) {
  nlohmann::json fx = load_json(golden_path("hf/gemma3_mm_config_defaults.json"));
  ASSERT_GE(fx["cases"].size(), 3u);
  for (const auto& tc : fx["cases"]) {
    SCOPED_TRACE(tc["name"].get<std::string>());
    const nlohmann::json& want = tc["resolved"];
    ModelConfig c = model_config_from_hf_json(tc["config"].dump(), "mm/config.json");
    EXPECT_EQ(c.architecture, "gemma3");
    EXPECT_EQ(c.vocab_size, want["vocab_size"].get<int64_t>());
    EXPECT_EQ(c.hidden_size, want["hidden_size"].get<int64_t>());
    EXPECT_EQ(c.intermediate_size, want["intermediate_size"].get<int64_t>());
    EXPECT_EQ(c.num_hidden_layers, want["num_hidden_layers"].get<int64_t>());
    EXPECT_EQ(c.num_attention_heads, want["num_attention_heads"].get<int64_t>());
    EXPECT_EQ(c.num_key_value_heads, want["num_key_value_heads"].get<int64_t>());
    EXPECT_EQ(c.head_dim, want["head_dim"].get<int64_t>());
    EXPECT_EQ(c.max_position_embeddings, want["max_position_embeddings"].get<int64_t>());
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, want["rms_norm_eps"].get<double>());
    EXPECT_DOUBLE_EQ(c.query_pre_attn_scalar, want["query_pre_attn_scalar"].get<double>());
    EXPECT_EQ(c.sliding_window, want["sliding_window"].get<int64_t>());
    std::vector<bool> local;
    for (const auto& t : want["layer_types"]) local.push_back(t == "sliding_attention");
    EXPECT_EQ(c.sliding_window_layers, local);
    EXPECT_DOUBLE_EQ(c.final_logit_softcapping,
                     want["final_logit_softcapping"].is_null()
                         ? 0.0
                         : want["final_logit_softcapping"].get<double>());
    EXPECT_EQ(want["hidden_activation"], "gelu_pytorch_tanh");
    EXPECT_EQ(c.hidden_act, "gelu_new");
    EXPECT_EQ(c.tie_word_embeddings, want["tie_word_embeddings"].get<bool>());
    EXPECT_DOUBLE_EQ(c.rope_theta, want["rope_theta"].get<double>());
    EXPECT_DOUBLE_EQ(c.rope_local_base_freq, want["rope_local_base_freq"].get<double>());
    const std::string rope_type = want["rope_type"];
    EXPECT_EQ(c.rope_scaling.type, rope_type == "default" ? "" : rope_type);
    if (rope_type != "default") {
      EXPECT_DOUBLE_EQ(c.rope_scaling.factor, want["rope_factor"].get<double>());
    }
  }
  // The fixtures: the tie is the top-level flag, text_config's true notwithstanding.
  EXPECT_TRUE(model_config_from_hf(checkpoint_dir("gemma3_mm_f32")).tie_word_embeddings);
  EXPECT_FALSE(model_config_from_hf(checkpoint_dir("gemma3_mm_untied_f32")).tie_word_embeddings);
  // A text_config that is not an object names the field.
  try {
    model_config_from_hf_json(
        R"({"architectures": ["Gemma3ForConditionalGeneration"], "text_config": 3})", "mm.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'text_config' is not an object"), std::string::npos)
        << e.what();
  }
}

// The decoder of a Gemma3ForConditionalGeneration checkpoint loads from its prefix; the vision
// tower and projector are in the file but never read. A decoder weight missing from the file is
// an error that names it as the checkpoint spells it.
TEST(HfCheckpointFiles, Gemma3MultimodalLoadsOnlyTheDecoder) {
  auto checkpoint = std::make_shared<const SafetensorsCheckpoint>(
      SafetensorsCheckpoint::open_dir(checkpoint_dir("gemma3_mm_f32")));
  ModelConfig config = model_config_from_hf(checkpoint_dir("gemma3_mm_f32"));
  std::vector<std::string> asked;
  HfWeightNameMap map = hf_weight_name_map(config.architecture);
  HfWeightSource weights(checkpoint, [&](const std::string& name) {
    std::optional<std::string> hf = map(name);
    if (hf) asked.push_back(*hf);
    return hf;
  });
  cpu::CpuBackend backend(1, cpu::MatmulPath::kReference);
  create_model(config, weights, backend, CheckpointFormat::kHuggingFace);
  ASSERT_FALSE(asked.empty());
  for (const std::string& name : asked) {
    EXPECT_TRUE(name.rfind("language_model.model.", 0) == 0 || name == "model.embed_tokens.weight")
        << name;  // the one probe under Gemma3ForCausalLM's name
  }
  const std::string last_up = "language_model.model.layers.3.mlp.up_proj.weight";
  EXPECT_NE(std::find(asked.begin(), asked.end(), last_up), asked.end());

  HfWeightSource missing(checkpoint, [&](const std::string& name) -> std::optional<std::string> {
    std::optional<std::string> hf = map(name);
    if (hf && hf->find("layers.2.self_attn.k_norm") != std::string::npos) return "nowhere";
    return hf;
  });
  try {
    create_model(config, missing, backend, CheckpointFormat::kHuggingFace);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("language_model.model.layers.2.self_attn.k_norm.weight"),
              std::string::npos)
        << e.what();
  }
}

TEST(HfCheckpointFiles, GenerationConfigGivesDefaultsAndStopIds) {
  LLM llm(engine_args(checkpoint_dir("qwen2_f32")));
  SamplingParams d = llm.get_default_sampling_params();
  EXPECT_DOUBLE_EQ(d.temperature, 0.7);
  EXPECT_EQ(d.top_k, 20);
  EXPECT_DOUBLE_EQ(d.top_p, 0.8);
  EXPECT_DOUBLE_EQ(d.repetition_penalty, 1.05);
  // generation_config's eos_token_id [2, X]: without a tokenizer the first is the EOS, the
  // second a stop id; X is a token the first prompt's greedy continuation reaches mid-way.
  nlohmann::json fx = load_json(golden_path("hf/qwen2_f32.json"));
  const int32_t stop = fx["generation_eos_token_ids"][1].get<int32_t>();
  SamplingParams p = greedy(8);
  p.ignore_eos = false;
  std::vector<RequestOutput> outs =
      llm.generate(fx["prompts"][0]["token_ids"].get<std::vector<int32_t>>(), p, false);
  std::vector<int32_t> expected = fx["prompts"][0]["greedy_token_ids"].get<std::vector<int32_t>>();
  auto at = std::find(expected.begin(), expected.end(), stop);
  ASSERT_NE(at, expected.end());
  expected.erase(at + 1, expected.end());
  EXPECT_EQ(outs[0].outputs[0].token_ids, expected);
  EXPECT_EQ(outs[0].outputs[0].finish_reason, "stop");
  p.ignore_eos = true;
  outs = llm.generate(fx["prompts"][0]["token_ids"].get<std::vector<int32_t>>(), p, false);
  EXPECT_EQ(outs[0].outputs[0].token_ids.size(), 8u);
  EXPECT_TRUE(llm.engine().chat_template().has_value());

  EngineArgs vllm_defaults = engine_args(checkpoint_dir("qwen2_f32"));
  vllm_defaults.generation_config = "vllm";
  LLM plain(vllm_defaults);
  EXPECT_DOUBLE_EQ(plain.get_default_sampling_params().temperature, SamplingParams{}.temperature);
}

TEST(HfCheckpointFiles, TokenizerFromTheDirectory) {
  nlohmann::json fx = load_json(golden_path("hf/qwen2_f32.json"));
  EngineArgs args = engine_args(checkpoint_dir("qwen2_f32"));
  args.skip_tokenizer_init = false;
  LLM llm(args);
  ASSERT_NE(llm.engine().tokenizer(), nullptr);
  for (const auto& e : fx["tokenizer"]["encodings"]) {
    EXPECT_EQ(llm.engine().tokenizer()->encode(e["text"].get<std::string>(), true),
              e["token_ids"].get<std::vector<int32_t>>())
        << e["text"];
  }
  // Text prompts run end to end.
  std::vector<RequestOutput> outs = llm.generate("Hello, world!", greedy(4), false);
  EXPECT_EQ(outs[0].outputs[0].token_ids.size(), 4u);
}

// A tokenizer with more tokens than the model has rows (qwen2_f32's 320 for a 256-token Gemma):
// a prompt that encodes to one of the extra ids is vLLM's ValueError, before any forward pass.
TEST(HfCheckpointFiles, PromptTokensOutsideTheModelsVocabularyAreAValueError) {
  EngineArgs args = engine_args(checkpoint_dir("gemma3_mm_f32"));
  args.skip_tokenizer_init = false;
  args.tokenizer = checkpoint_dir("qwen2_f32");
  LLM llm(args);
  std::vector<int32_t> ids = llm.engine().tokenizer()->encode("Hello", true);
  ASSERT_TRUE(std::any_of(ids.begin(), ids.end(), [](int32_t id) { return id >= 256; }))
      << "the probe must encode to an id past the model's vocabulary";
  try {
    llm.generate("Hello", greedy(2), false);
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("is out of vocabulary"), std::string::npos) << e.what();
  }
  EXPECT_THROW(llm.generate(Prompt(std::vector<int32_t>{1, 256}), greedy(2), false), ValueError);
}

// A hub id resolves through a Hugging Face cache laid out as huggingface_hub does.
TEST(HfCheckpointFiles, HubIdLoadsFromTheCache) {
  fs::path cache = fs::temp_directory_path() / ("cvllm_hf_golden_" + std::to_string(::getpid()));
  fs::path repo = cache / "models--tiny--llama-bf16";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots");
  fs::create_directory_symlink(fs::absolute(checkpoint_dir("llama_bf16_tied")),
                               repo / "snapshots" / "abc123");
  std::ofstream(repo / "refs" / "main") << "abc123";
  const char* old = std::getenv("HF_HUB_CACHE");
  std::string saved = old ? old : "";
  setenv("HF_HUB_CACHE", cache.c_str(), 1);
  nlohmann::json fx = load_json(golden_path("hf/llama_bf16_tied.json"));
  {
    LLM llm(engine_args("tiny/llama-bf16"));
    expect_greedy_matches(fx, llm, "hub id");
  }
  EngineArgs bad = engine_args("tiny/llama-bf16");
  bad.revision = "v9";
  EXPECT_THROW(LLM{bad}, ValueError);
  if (old) {
    setenv("HF_HUB_CACHE", saved.c_str(), 1);
  } else {
    unsetenv("HF_HUB_CACHE");
  }
  fs::remove_all(cache);
}

}  // namespace
}  // namespace cvllm
