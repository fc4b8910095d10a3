// GGUF files of GPT-2 and Phi-3 as llama.cpp's converter lays them out (GPT-2: token_embd,
// position_embd, fused attn_qkv with bias, Conv1D weights already transposed, LayerNorms with
// biases, the tied head written out as output.weight; Phi-3: fused attn_qkv and ffn_up holding
// gate | up, partial rotary via rope.dimension_count, attention.sliding_window). The files
// (tests/golden/data/hf/{gpt2_f16,phi3_bf16}.gguf, from scripts/gen_gguf_from_hf_fixture.py) hold
// the same weights as the Hugging Face fixtures next to them, so they must give the logits and
// greedy tokens transformers gave for those (hf/<name>.json, scripts/gen_hf_model_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "cvllm/cvllm.h"
#include "golden_util.h"
#include "models/model_config.h"

namespace cvllm {
namespace {

using testing::closeness;
using testing::golden_path;
using testing::load_json;
using testing::to_floats;

// As test_model_hf.cpp: float32 on both sides from the same weights, only the summation order
// differs (measured ~1e-5), while a wrong layout is off by 1e-2 or more.
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;
constexpr double kLogprobAtol = 2e-4;

class GgufFromHf : public ::testing::TestWithParam<std::string> {
 protected:
  std::string gguf_path() const { return golden_path("hf/" + GetParam() + ".gguf"); }
  nlohmann::json fixture() const { return load_json(golden_path("hf/" + GetParam() + ".json")); }
};

TEST_P(GgufFromHf, ConfigMatchesCheckpoint) {
  ModelConfig from_gguf = model_config_from_gguf(*GgufFile::open(gguf_path()));
  ModelConfig from_hf = model_config_from_hf(golden_path("hf/" + GetParam()));
  EXPECT_EQ(from_gguf.architecture, from_hf.architecture);
  EXPECT_EQ(from_gguf.vocab_size, from_hf.vocab_size);
  EXPECT_EQ(from_gguf.hidden_size, from_hf.hidden_size);
  EXPECT_EQ(from_gguf.intermediate_size, from_hf.intermediate_size);
  EXPECT_EQ(from_gguf.num_hidden_layers, from_hf.num_hidden_layers);
  EXPECT_EQ(from_gguf.num_attention_heads, from_hf.num_attention_heads);
  EXPECT_EQ(from_gguf.num_key_value_heads, from_hf.num_key_value_heads);
  EXPECT_EQ(from_gguf.head_dim, from_hf.head_dim);
  EXPECT_EQ(from_gguf.max_position_embeddings, from_hf.max_position_embeddings);
  EXPECT_EQ(from_gguf.rotary_dim, from_hf.rotary_dim);
  EXPECT_EQ(from_gguf.sliding_window, from_hf.sliding_window);
  EXPECT_EQ(from_gguf.fused_qkv, from_hf.fused_qkv);
  EXPECT_EQ(from_gguf.fused_gate_up, from_hf.fused_gate_up);
  EXPECT_EQ(from_gguf.qkv_bias, from_hf.qkv_bias);
  EXPECT_EQ(from_gguf.o_proj_bias, from_hf.o_proj_bias);
  EXPECT_EQ(from_gguf.mlp_bias, from_hf.mlp_bias);
  EXPECT_EQ(from_gguf.hidden_act, from_hf.hidden_act);
  EXPECT_FLOAT_EQ(from_gguf.layer_norm_eps, from_hf.layer_norm_eps);
  if (from_hf.architecture != "gpt2") {
    EXPECT_FLOAT_EQ(from_gguf.rms_norm_eps, from_hf.rms_norm_eps);
  }
  EXPECT_DOUBLE_EQ(from_gguf.rope_theta, from_hf.rope_theta);
}

TEST_P(GgufFromHf, LogitsMatchTransformers) {
  nlohmann::json fx = fixture();
  testing::ModelHarness harness(gguf_path(), cpu::MatmulPath::kReference);
  const int64_t vocab = harness.config().vocab_size;
  double worst = 0.0;
  for (const auto& prompt : fx["prompts"]) {
    std::vector<float> logits = harness.forward(prompt["token_ids"].get<std::vector<int32_t>>());
    std::vector<float> last(logits.end() - vocab, logits.end());
    std::vector<float> ref = to_floats(prompt["last_logits"]);
    EXPECT_LE(closeness(last, ref, kLogitAtol, kLogitRtol), 1.0);
    for (size_t i = 0; i < ref.size() && i < last.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(last[i] - ref[i])));
  }
  std::cout << "[ note ] " << GetParam() << ".gguf: largest logit difference " << worst << "\n";
}

TEST_P(GgufFromHf, GreedyThroughLLMMatchesTransformers) {
  nlohmann::json fx = fixture();
  EngineArgs args;
  args.model = gguf_path();
  args.skip_tokenizer_init = true;  // the files carry no vocabulary
  args.device = "cpu";
  args.cpu_kernels = "reference";
  args.num_threads = 2;
  args.kv_cache_memory_bytes = 16 << 20;
  LLM llm(args);
  SamplingParams params;
  params.temperature = 0.0;
  params.max_tokens = fx["num_new_tokens"].get<int>();
  params.ignore_eos = true;
  params.logprobs = 5;
  std::vector<Prompt> prompts;
  for (const auto& p : fx["prompts"])
    prompts.emplace_back(p["token_ids"].get<std::vector<int32_t>>());
  std::vector<RequestOutput> outputs = llm.generate(prompts, params, false);
  ASSERT_EQ(outputs.size(), prompts.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& ref = fx["prompts"][i];
    const CompletionOutput& out = outputs[i].outputs[0];
    EXPECT_EQ(out.token_ids, ref["greedy_token_ids"].get<std::vector<int32_t>>()) << "prompt " << i;
    ASSERT_TRUE(out.logprobs.has_value());
    for (size_t s = 0; s < out.token_ids.size() && s < ref["greedy_top5"].size(); ++s) {
      const auto& best = ref["greedy_top5"][s][0];
      const auto& step = (*out.logprobs)[s];
      auto it = std::find_if(step.begin(), step.end(),
                             [&](const auto& e) { return e.first == best[0].get<int32_t>(); });
      ASSERT_NE(it, step.end()) << "prompt " << i << " step " << s;
      EXPECT_NEAR(it->second.logprob, best[1].get<double>(), kLogprobAtol)
          << "prompt " << i << " step " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, GgufFromHf, ::testing::Values("gpt2_f16", "phi3_bf16"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cvllm
