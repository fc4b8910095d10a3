// Checks shared by the real-model tests (SmolLM2, Qwen2.5-Coder 0.5B, Gemma 3 270M) against their
// transformers fixtures. A fixture case has prompt_token_ids, output_token_ids, output_text,
// output_top5 ([step][5 x (id, logprob)]) and prompt_top5 ([position - 1][...]).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "cvllm/cvllm.h"
#include "golden_util.h"
#include "util/error.h"

namespace cvllm::testing {

// Greedy, no EOS stop, 5 logprobs per output step and per prompt position (as the fixtures).
inline SamplingParams greedy_with_logprobs(int max_tokens = 32) {
  SamplingParams p = greedy(max_tokens, 5);
  p.prompt_logprobs = 5;
  return p;
}

// The reference logprob of `id` in a top-5 list, if listed.
inline std::optional<double> ref_logprob(const nlohmann::json& top5, int32_t id) {
  for (const auto& e : top5) {
    if (e[0].get<int32_t>() == id) return e[1].get<double>();
  }
  return std::nullopt;
}

// Identical tokens and text, and every logprob both sides list within `atol` at every output step
// and, with `prompt_logprobs`, every prompt position (prompt_logprobs[p] is the distribution that
// produced prompt token p, the fixture's prompt_top5[p - 1]). Returns the largest difference.
inline double expect_matches_case(const RequestOutput& output, const nlohmann::json& c, double atol,
                                  bool prompt_logprobs = true) {
  double worst = 0.0;
  auto check = [&](double ours, double ref, const std::string& where) {
    worst = std::max(worst, std::fabs(ours - ref));
    EXPECT_NEAR(ours, ref, atol) << where;
  };
  const CompletionOutput& out = output.outputs[0];
  EXPECT_EQ(out.token_ids, c["output_token_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(out.text, c["output_text"].get<std::string>());
  EXPECT_TRUE(out.logprobs.has_value());
  if (!out.logprobs) return worst;
  for (size_t s = 0; s < out.logprobs->size(); ++s) {
    for (const auto& [id, lp] : (*out.logprobs)[s]) {
      if (auto ref = ref_logprob(c["output_top5"][s], id))
        check(lp.logprob, *ref, cat("output step ", s, " token ", id));
    }
  }
  if (!prompt_logprobs) return worst;
  EXPECT_TRUE(output.prompt_logprobs.has_value());
  if (!output.prompt_logprobs) return worst;
  const auto& plp = *output.prompt_logprobs;
  EXPECT_EQ(plp.size(), c["prompt_token_ids"].size());
  if (!plp.empty()) {
    EXPECT_FALSE(plp[0].has_value()) << "the first prompt token has no logprobs";
  }
  for (size_t p = 1; p < plp.size(); ++p) {
    if (!plp[p]) continue;
    for (const auto& [id, lp] : *plp[p]) {
      if (auto ref = ref_logprob(c["prompt_top5"][p - 1], id))
        check(lp.logprob, *ref, cat("prompt position ", p, " token ", id));
    }
  }
  return worst;
}

// Greedy tokens identical to the reference, or differing first where the reference's top-1 and
// the token chosen are closer than `margin` nats (a near tie a different kernel may break the other
// way); later steps are not comparable. Returns whether the case diverged.
inline bool expect_same_up_to_near_tie(const RequestOutput& output, const nlohmann::json& c,
                                       double margin) {
  const std::vector<int32_t>& ours = output.outputs[0].token_ids;
  std::vector<int32_t> expected = c["output_token_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(ours.size(), expected.size()) << "case " << c["name"];
  for (size_t s = 0; s < expected.size() && s < ours.size(); ++s) {
    if (ours[s] == expected[s]) continue;
    const double best = c["output_top5"][s][0][1].get<double>();
    std::optional<double> theirs = ref_logprob(c["output_top5"][s], ours[s]);
    EXPECT_TRUE(theirs.has_value()) << "case " << c["name"] << " step " << s << ": chose "
                                    << ours[s] << ", outside the reference top-5";
    if (!theirs) return true;
    EXPECT_LT(best - *theirs, margin) << "case " << c["name"] << " step " << s << ": chose "
                                      << ours[s] << ", reference " << expected[s];
    std::cout << "[ note ] case " << c["name"] << ": diverges at step " << s
              << ", reference margin " << best - *theirs << " < " << margin << "\n";
    return true;
  }
  return false;
}

// `llm`'s greedy run of every fixture case (the fast quantized-activation kernels, or the GPU),
// each identical to the reference up to a near tie within `margin` (expect_same_up_to_near_tie).
inline void expect_fast_kernels_agree(LLM& llm, const std::vector<Prompt>& prompts,
                                      const nlohmann::json& cases, double margin,
                                      const std::string& label = "fast kernels") {
  SamplingParams params = greedy_with_logprobs();
  params.prompt_logprobs.reset();
  std::vector<RequestOutput> outputs = llm.generate(prompts, params, false);
  ASSERT_EQ(outputs.size(), cases.size());
  int diverged = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    diverged += expect_same_up_to_near_tie(outputs[i], cases[i], margin);
  }
  std::cout << "[ note ] " << label << ": " << outputs.size() - diverged << "/" << outputs.size()
            << " prompts identical to the reference for all " << params.max_tokens.value_or(0)
            << " tokens\n";
}

}  // namespace cvllm::testing
