// Beam search against a reference implementation of vLLM's algorithm on transformers logits
// (scripts/gen_beam_search_fixtures.py, data/beam/*.json): the same beams in the same order, and
// per-step logprobs within tolerance, for several widths, length penalties and ignore_eos, on the
// tiny random models and the bundled model. Reference kernels (exact dequantization).
#include <gtest/gtest.h>

#include <filesystem>

#include "cvllm/cvllm.h"
#include "engine/llm_engine.h"
#include "golden_util.h"
#include "loader/model_resolver.h"

namespace cvllm {
namespace {

using testing::golden_path;
using testing::load_json;

class BeamSearchGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BeamSearchGolden, MatchesReference) {
  nlohmann::json fx = load_json(golden_path("beam/" + GetParam() + ".json"));
  std::string model_file = fx["model_file"].get<std::string>();
  std::string model = GetParam() == "smollm2_q4_1" ? default_model_path() : golden_path(model_file);
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "model not found: " << model;
  const double step_tol = GetParam() == "smollm2_q4_1" ? 2e-3 : 1e-3;
  EngineArgs args;
  args.model = model;
  args.cpu_kernels = "reference";
  args.max_model_len = GetParam() == "smollm2_q4_1" ? 512 : 256;
  args.kv_cache_memory_bytes = 128 << 20;
  LLM llm(args);
  for (const auto& c : fx["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    BeamSearchParams params(c["beam_width"].get<int>(), c["max_tokens"].get<int>());
    params.length_penalty = c["length_penalty"].get<double>();
    params.ignore_eos = c["ignore_eos"].get<bool>();
    std::vector<BeamSearchOutput> got =
        llm.beam_search(c["prompt_token_ids"].get<std::vector<int32_t>>(), params);
    const auto& want = c["beams"];
    ASSERT_EQ(got[0].sequences.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const BeamSearchSequence& seq = got[0].sequences[i];
      EXPECT_EQ(seq.tokens, want[i]["tokens"].get<std::vector<int32_t>>()) << "beam " << i;
      const auto& step_logprobs = want[i]["logprobs"];
      ASSERT_EQ(seq.logprobs.size(), step_logprobs.size()) << "beam " << i;
      const size_t prompt_len = c["prompt_token_ids"].size();
      for (size_t s = 0; s < step_logprobs.size() && prompt_len + s < seq.tokens.size(); ++s) {
        // Each step's dict is the parent beam's distribution; find the token this beam took.
        int32_t chosen = seq.tokens[prompt_len + s];
        std::optional<float> ours;
        for (const auto& [id, lp] : seq.logprobs[s]) {
          if (id == chosen) ours = lp.logprob;
        }
        ASSERT_TRUE(ours.has_value()) << "beam " << i << " step " << s << ": token not in its dict";
        EXPECT_NEAR(*ours, step_logprobs[s].get<double>(), step_tol) << "beam " << i << " step " << s;
      }
      EXPECT_NEAR(seq.cum_logprob, want[i]["cum_logprob"].get<double>(), step_tol * step_logprobs.size());
    }
  }
  EXPECT_FALSE(llm.engine().has_unfinished_requests());
}

INSTANTIATE_TEST_SUITE_P(Models, BeamSearchGolden,
                         ::testing::Values("tiny_llama_q8_0", "tiny_llama_q4_1", "tiny_llama_f32",
                                           "smollm2_q4_1"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cvllm
