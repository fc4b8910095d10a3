// Gemma 3 270M (Q4_K_M GGUF: Q8_0 embeddings, Q5_0/Q4_K/Q6_K/Q8_0 matrices) against transformers,
// which loads the same GGUF and dequantizes it to float32 (fixture:
// data/gemma3_270m_q4_k_m_greedy.json from scripts/gen_golden_gemma3_270m.py). Reference kernels:
// identical greedy tokens and logprobs within tolerance at every prompt and output position, on
// prompts that include one longer than the 512-token sliding window and one chat turn rendered
// with Gemma 3's template. Fast (8-bit activation) kernels: identical until a genuine near-tie. The
// tokenizer (sentencepiece-style, 262k pieces) encodes and decodes the hard-string corpus as
// transformers' tokenizer from the same file does. Skipped when the model file is absent
// (FETCH_TEST_MODELS=1 bash scripts/setup.sh fetches it).
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "cvllm/cvllm.h"
#include "golden/tokenizer_fixture.h"
#include "golden_util.h"
#include "real_model_checks.h"
#include "loader/gguf.h"
#include "loader/model_resolver.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

using testing::golden_path;
using testing::load_json;
using testing::expect_matches_case;
using testing::expect_fast_kernels_agree;
using testing::greedy_with_logprobs;

// Reference kernels compute what transformers computes, in another summation order.
constexpr double kLogprobAtol = 2e-3;
// With 8-bit activations a logprob moves by a few tenths of a nat at most on these prompts, so two
// tokens' order can flip where the reference separates them by little. A different greedy token
// is accepted only where the reference's top-1 and the chosen token are this close (nats).
constexpr double kFastNearTieMargin = 0.3;

std::string model_path() {
  return cvllm_cache_dir() + "/gemma-3-270m-q4_k_m.gguf";
}

class Gemma3_270M : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixture_ = load_json(golden_path("gemma3_270m_q4_k_m_greedy.json"));
  }
  void SetUp() override {
    if (!std::filesystem::exists(model_path())) {
      GTEST_SKIP() << "Gemma 3 270M not found at " << model_path()
                   << " (FETCH_TEST_MODELS=1 bash scripts/setup.sh fetches it)";
    }
  }
  static EngineArgs args(const std::string& kernels) {
    EngineArgs a;
    a.model = model_path();
    a.cpu_kernels = kernels;
    a.max_model_len = 2048;
    a.kv_cache_memory_bytes = 256 << 20;
    return a;
  }
  static std::vector<Prompt> token_prompts() {
    std::vector<Prompt> prompts;
    for (const auto& c : fixture_["cases"])
      prompts.emplace_back(c["prompt_token_ids"].get<std::vector<int32_t>>());
    return prompts;
  }
  static const nlohmann::json& find_case(const std::string& name) {
    for (const auto& c : fixture_["cases"]) {
      if (c["name"] == name) return c;
    }
    throw std::runtime_error("no case " + name);
  }
  static nlohmann::json fixture_;
};

nlohmann::json Gemma3_270M::fixture_;

TEST_F(Gemma3_270M, TokenizerMatchesPromptIds) {
  LLM llm(args("reference"));
  for (const auto& c : fixture_["cases"]) {
    if (c["name"] == "chat") continue;  // its text carries <bos> already (ChatRendersLikeJinja2)
    EXPECT_EQ(llm.get_tokenizer().encode(c["prompt"].get<std::string>(), true),
              c["prompt_token_ids"].get<std::vector<int32_t>>())
        << "case " << c["name"];
  }
}

TEST_F(Gemma3_270M, TokenizerCorpusMatchesTransformers) {
  std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(*GgufFile::open(model_path()));
  const nlohmann::json& fx = fixture_["tokenizer"];
  EXPECT_EQ(tok->vocab_size(), fx["vocab_size"].get<int32_t>());
  testing_fixture::expect_encode_matches(*tok, fx);
  testing_fixture::expect_decode_matches(*tok, fx);
  testing_fixture::expect_incremental_decode_matches(*tok, fx);
}

// The GGUF has no chat template (a base model): LLM.chat with Gemma 3's own template renders the
// text jinja2 rendered and tokenizes it to the same ids, then continues as transformers does.
TEST_F(Gemma3_270M, ChatRendersLikeJinja2) {
  const nlohmann::json& chat = fixture_["chat"];
  const nlohmann::json& c = find_case("chat");
  EXPECT_EQ(chat["text"], c["prompt"]);
  Conversation conversation;
  for (const auto& m : chat["messages"])
    conversation.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  ChatOptions options;
  options.chat_template =
      load_chat_template(CVLLM_SOURCE_DIR "/" + chat["template"].get<std::string>());
  SamplingParams p = greedy_with_logprobs();
  p.prompt_logprobs.reset();
  // Fast kernels (the reference ones take seconds per 262k-row LM head): this case's smallest
  // greedy margin is ~0.9 nats, far above what 8-bit activations move.
  ASSERT_GT(c["output_min_margin"].get<double>(), kFastNearTieMargin);
  LLM llm(args("fast"));
  std::vector<RequestOutput> outs = llm.chat(conversation, p, options, false);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].prompt, chat["text"].get<std::string>());
  EXPECT_EQ(outs[0].prompt_token_ids, c["prompt_token_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(outs[0].outputs[0].token_ids, c["output_token_ids"].get<std::vector<int32_t>>());
}

TEST_F(Gemma3_270M, ReferenceKernelsMatchTransformers) {
  LLM llm(args("reference"));
  // Prompt logprobs cost a 262k-row LM head per position with the scalar kernels; the long prompt
  // skips them (its 32 output steps all attend past the window).
  std::vector<SamplingParams> params;
  for (const auto& c : fixture_["cases"]) {
    params.push_back(greedy_with_logprobs());
    if (c["name"] == "long_past_window") params.back().prompt_logprobs.reset();
  }
  std::vector<RequestOutput> outputs = llm.generate(token_prompts(), params, false);
  ASSERT_EQ(outputs.size(), fixture_["cases"].size());
  double worst = 0.0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& c = fixture_["cases"][i];
    SCOPED_TRACE("case " + c["name"].get<std::string>());
    worst = std::max(worst, expect_matches_case(outputs[i], c, kLogprobAtol,
                                                params[i].prompt_logprobs.has_value()));
  }
  std::cout << "[ note ] largest |logprob difference| against transformers: " << worst << "\n";
}

TEST_F(Gemma3_270M, FastKernelsAgreeUpToNearTies) {
  LLM llm(args("fast"));
  expect_fast_kernels_agree(llm, token_prompts(), fixture_["cases"], kFastNearTieMargin);
}

}  // namespace
}  // namespace cvllm
