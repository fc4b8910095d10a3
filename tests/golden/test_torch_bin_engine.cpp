// The whole engine (cvllm::LLM) on Hugging Face directories that hold only pytorch_model.bin and
// GPT-2-style slow tokenizer files (tests/golden/data/torch_bin/, scripts/gen_torch_bin_fixtures.py):
// greedy continuations of token-id prompts match transformers for the single-file and the
// sharded checkpoint, and a text prompt goes through the slow tokenizer (OPT's "</s>" BOS
// included) to transformers' token ids, greedy tokens and decoded text.
// Needs src/engine/llm_engine.cpp to load weights with open_hf_weights and to accept
// vocab.json + merges.txt (has_hf_tokenizer_files).
#include <gtest/gtest.h>

#include "cvllm/cvllm.h"
#include "engine/llm_engine.h"
#include "golden_util.h"

namespace cvllm {
namespace {

using testing::golden_path;
using testing::greedy;
using testing::load_json;

EngineArgs engine_args(const std::string& model, bool skip_tokenizer) {
  EngineArgs args;
  args.model = model;
  args.skip_tokenizer_init = skip_tokenizer;
  args.device = "cpu";
  args.cpu_kernels = "reference";
  args.num_threads = 2;
  args.kv_cache_memory_bytes = 16 << 20;
  return args;
}

class TorchBinEngine : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchBinEngine, GreedyThroughLLMMatchesTransformers) {
  nlohmann::json fx = load_json(golden_path("torch_bin/" + GetParam() + ".json"));
  LLM llm(engine_args(golden_path("torch_bin/" + GetParam()), true));
  std::vector<Prompt> prompts;
  for (const auto& p : fx["prompts"]) prompts.emplace_back(p["token_ids"].get<std::vector<int32_t>>());
  std::vector<RequestOutput> outputs =
      llm.generate(prompts, greedy(fx["num_new_tokens"].get<int>()), false);
  ASSERT_EQ(outputs.size(), prompts.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    EXPECT_EQ(outputs[i].outputs[0].token_ids,
              fx["prompts"][i]["greedy_token_ids"].get<std::vector<int32_t>>())
        << "prompt " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, TorchBinEngine,
                         ::testing::Values("opt_f32", "opt_f16_sharded"),
                         [](const auto& info) { return info.param; });

TEST(TorchBinEngineText, TextPromptThroughSlowTokenizer) {
  nlohmann::json fx = load_json(golden_path("torch_bin/opt_f32.json"));
  const nlohmann::json& tp = fx["text_prompt"];
  LLM llm(engine_args(golden_path("torch_bin/opt_f32"), false));
  ASSERT_NE(llm.engine().tokenizer(), nullptr);
  std::vector<RequestOutput> outputs =
      llm.generate({tp["text"].get<std::string>()}, greedy(fx["num_new_tokens"].get<int>()), false);
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(outputs[0].prompt_token_ids, tp["token_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(outputs[0].outputs[0].token_ids, tp["greedy_token_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(outputs[0].outputs[0].text, tp["greedy_text"].get<std::string>());
}

}  // namespace
}  // namespace cvllm
