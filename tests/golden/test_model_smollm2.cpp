// The default model (SmolLM2-135M-Instruct, Q4_1) against transformers, which loads the same GGUF
// and dequantizes it to float32 (fixture: data/smollm2_q4_1_greedy.json, 10 varied prompts).
// Reference kernels: identical greedy tokens and logprobs within tolerance at every prompt and
// output position. Fast (8-bit activation) kernels: identical until a genuine near-tie.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "cvllm/cvllm.h"
#include "golden_util.h"
#include "loader/model_resolver.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

using testing::golden_path;
using testing::load_json;

// Reference kernels compute what transformers computes, in another summation order.
constexpr double kLogprobAtol = 2e-3;
// With 8-bit activations (Q8_0/Q8_1 blocks, as llama.cpp uses) a logprob moves by up to ~0.15
// nats at the 99th percentile on this model, so two tokens' order can flip when the reference
// separates them by less than about twice that. A different greedy token is accepted only where
// the reference's own top-1 and the chosen token are this close (nats).
constexpr double kFastNearTieMargin = 0.3;

class SmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(default_model_path())) {
      GTEST_SKIP() << "default model not found at " << default_model_path() << " (scripts/setup.sh fetches it)";
    }
    fixture_ = load_json(golden_path("smollm2_q4_1_greedy.json"));
  }
  static EngineArgs args(const std::string& kernels) {
    EngineArgs a;
    a.cpu_kernels = kernels;
    a.max_model_len = 1024;
    a.kv_cache_memory_bytes = 256 << 20;
    return a;
  }
  std::vector<Prompt> token_prompts() const {
    std::vector<Prompt> prompts;
    for (const auto& c : fixture_["cases"]) prompts.emplace_back(c["prompt_token_ids"].get<std::vector<int32_t>>());
    return prompts;
  }
  nlohmann::json fixture_;
};

SamplingParams greedy_with_logprobs() {
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = 32;
  p.ignore_eos = true;
  p.logprobs = 5;
  p.prompt_logprobs = 5;
  return p;
}

// Reference logprob of `id` in a top-5 list, if listed.
std::optional<double> ref_logprob(const nlohmann::json& top5, int32_t id) {
  for (const auto& e : top5) {
    if (e[0].get<int32_t>() == id) return e[1].get<double>();
  }
  return std::nullopt;
}

TEST_F(SmolLM2, TokenizerMatchesPromptIds) {
  LLM llm(args("reference"));
  for (const auto& c : fixture_["cases"]) {
    EXPECT_EQ(llm.get_tokenizer().encode(c["prompt"].get<std::string>(), true),
              c["prompt_token_ids"].get<std::vector<int32_t>>())
        << "case " << c["name"];
  }
}

TEST_F(SmolLM2, ReferenceKernelsMatchTransformers) {
  LLM llm(args("reference"));
  std::vector<RequestOutput> outputs = llm.generate(token_prompts(), greedy_with_logprobs(), false);
  ASSERT_EQ(outputs.size(), fixture_["cases"].size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& c = fixture_["cases"][i];
    SCOPED_TRACE("case " + c["name"].get<std::string>());
    const CompletionOutput& out = outputs[i].outputs[0];
    EXPECT_EQ(out.token_ids, c["output_token_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(out.text, c["output_text"].get<std::string>());
    ASSERT_TRUE(out.logprobs.has_value());
    for (size_t s = 0; s < out.logprobs->size(); ++s) {
      for (const auto& [id, lp] : (*out.logprobs)[s]) {
        if (auto ref = ref_logprob(c["output_top5"][s], id)) {
          EXPECT_NEAR(lp.logprob, *ref, kLogprobAtol) << "output step " << s << " token " << id;
        }
      }
    }
    // prompt_logprobs[p] is the distribution that produced prompt token p (p >= 1), i.e. the
    // fixture's prompt_top5[p - 1].
    ASSERT_TRUE(outputs[i].prompt_logprobs.has_value());
    const auto& plp = *outputs[i].prompt_logprobs;
    ASSERT_EQ(plp.size(), c["prompt_token_ids"].size());
    EXPECT_FALSE(plp[0].has_value());
    for (size_t p = 1; p < plp.size(); ++p) {
      for (const auto& [id, lp] : *plp[p]) {
        if (auto ref = ref_logprob(c["prompt_top5"][p - 1], id)) {
          EXPECT_NEAR(lp.logprob, *ref, kLogprobAtol) << "prompt position " << p << " token " << id;
        }
      }
    }
  }
}

// The real model with the fast kernels: each prompt's greedy continuation is the same alone and
// in one batch with the others (prefix sharing, chunked prefill forced small).
TEST_F(SmolLM2, BatchInvarianceWithFastKernels) {
  std::vector<Prompt> prompts = token_prompts();
  for (const auto& c : fixture_["cases"]) {  // variants that share a prefix with the originals
    std::vector<int32_t> ids = c["prompt_token_ids"].get<std::vector<int32_t>>();
    ids.insert(ids.end(), {28, 418, 1326});
    prompts.emplace_back(ids);
  }
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = 16;
  p.ignore_eos = true;
  LLM alone_llm(args("fast"));
  std::vector<std::vector<int32_t>> alone;
  for (const Prompt& prompt : prompts) alone.push_back(alone_llm.generate(prompt, p, false)[0].outputs[0].token_ids);
  EngineArgs a = args("fast");
  a.max_num_batched_tokens = 37;
  LLM batched(a);
  std::vector<RequestOutput> outs = batched.generate(prompts, p, false);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(outs[i].outputs[0].token_ids, alone[i]) << "prompt " << i;
}

TEST_F(SmolLM2, FastKernelsAgreeUpToNearTies) {
  LLM llm(args("fast"));
  SamplingParams params = greedy_with_logprobs();
  params.prompt_logprobs.reset();
  std::vector<RequestOutput> outputs = llm.generate(token_prompts(), params, false);
  int diverged = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& c = fixture_["cases"][i];
    const std::vector<int32_t>& ours = outputs[i].outputs[0].token_ids;
    std::vector<int32_t> expected = c["output_token_ids"].get<std::vector<int32_t>>();
    for (size_t s = 0; s < expected.size(); ++s) {
      if (ours[s] == expected[s]) continue;
      double best = c["output_top5"][s][0][1].get<double>();
      std::optional<double> theirs = ref_logprob(c["output_top5"][s], ours[s]);
      ASSERT_TRUE(theirs.has_value()) << "case " << c["name"] << " step " << s << ": fast kernels chose "
                                      << ours[s] << ", outside the reference top-5";
      double margin = best - *theirs;
      EXPECT_LT(margin, kFastNearTieMargin)
          << "case " << c["name"] << " step " << s << ": fast kernels chose " << ours[s]
          << ", reference " << expected[s] << " (reference margin " << margin << ")";
      std::cout << "[ note ] case " << c["name"] << ": fast path diverges at step " << s
                << ", reference margin " << margin << " < " << kFastNearTieMargin << "\n";
      ++diverged;
      break;
    }
  }
  std::cout << "[ note ] fast kernels: " << outputs.size() - diverged << "/" << outputs.size()
            << " prompts identical to the reference for all 32 tokens\n";
}

}  // namespace
}  // namespace cvllm
