// Beam search inside the engine on the tiny model: width 1 is greedy, results equal a brute-force
// enumeration where beam search is exact, beams share KV blocks and give every block back, and
// beam search mixed with sampling requests changes neither.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "cvllm/cvllm.h"
#include "engine/engine_core.h"
#include "engine/llm_engine.h"
#include "golden/golden_util.h"
#include "unit/tiny_model.h"

namespace cvllm {
namespace {

using testing::tiny_model;
using testing::tiny_args;
using testing::prompt_ids;

BeamSearchParams beam_params(int width, int max_tokens, bool ignore_eos = false,
                             double length_penalty = 1.0) {
  BeamSearchParams p(width, max_tokens);
  p.ignore_eos = ignore_eos;
  p.length_penalty = length_penalty;
  return p;
}

TEST(BeamSearch, WidthOneIsGreedy) {
  LLM llm(tiny_args());
  SamplingParams greedy;
  greedy.temperature = 0.0;
  greedy.max_tokens = 8;
  greedy.ignore_eos = true;
  for (int salt = 0; salt < 3; ++salt) {
    std::vector<int32_t> prompt = prompt_ids(5 + salt * 7, salt);
    std::vector<int32_t> want = llm.generate(prompt, greedy, false)[0].outputs[0].token_ids;
    std::vector<BeamSearchOutput> got = llm.beam_search(prompt, beam_params(1, 8, true));
    ASSERT_EQ(got[0].sequences.size(), 1u);
    std::vector<int32_t> generated(got[0].sequences[0].tokens.begin() + prompt.size(), got[0].sequences[0].tokens.end());
    EXPECT_EQ(generated, want);
  }
}

TEST(BeamSearch, RejectsInvalidParams) {
  LLM llm(tiny_args());
  EXPECT_THROW(llm.beam_search(prompt_ids(3, 0), beam_params(0, 4)), ValueError);
  EXPECT_THROW(llm.beam_search(prompt_ids(3, 0), beam_params(2, 0)), ValueError);
  EXPECT_FALSE(llm.engine().has_unfinished_requests());
}

// With beam_width >= vocabulary size and two steps, beam search keeps every candidate, so it must
// equal scoring every 1- and 2-token continuation by brute force (EOS ends a sequence early).
TEST(BeamSearch, EqualsBruteForceWhereExact) {
  EngineArgs args = tiny_args();
  args.cpu_kernels = "reference";
  args.kv_cache_memory_bytes = 256 << 20;
  args.max_num_seqs = 128;  // fewer than the 300 beams: the rest wait and are recomputed
  LLM llm(args);
  testing::ModelHarness harness(tiny_model(), cpu::MatmulPath::kReference);
  const int64_t vocab = harness.config().vocab_size;
  const int32_t eos = 2;
  const std::vector<int32_t> prompt = prompt_ids(6, 4);
  for (double length_penalty : {1.0, 0.5}) {
    struct Seq {
      std::vector<int32_t> tokens;
      double cum;
      double score;
    };
    std::vector<Seq> all;
    std::vector<float> first = harness.forward(prompt);
    std::vector<float> lp1 = testing::log_softmax_row(first.data() + (prompt.size() - 1) * vocab, vocab);
    for (int32_t t = 0; t < vocab; ++t) {
      std::vector<int32_t> one = prompt;
      one.push_back(t);
      if (t == eos) {
        all.push_back({one, lp1[t], beam_search_score(one, lp1[t], eos, length_penalty)});
        continue;
      }
      std::vector<float> second = harness.forward(one);
      std::vector<float> lp2 = testing::log_softmax_row(second.data() + (one.size() - 1) * vocab, vocab);
      for (int32_t u = 0; u < vocab; ++u) {
        std::vector<int32_t> two = one;
        two.push_back(u);
        double cum = static_cast<double>(lp1[t]) + lp2[u];
        all.push_back({two, cum, beam_search_score(two, cum, eos, length_penalty)});
      }
    }
    std::stable_sort(all.begin(), all.end(), [](const Seq& a, const Seq& b) { return a.score > b.score; });
    const int width = static_cast<int>(vocab);
    std::vector<BeamSearchOutput> got =
        llm.beam_search(prompt, beam_params(width, 2, false, length_penalty));
    ASSERT_EQ(got[0].sequences.size(), static_cast<size_t>(width));
    for (int k = 0; k < 20; ++k) {
      const BeamSearchSequence& s = got[0].sequences[k];
      EXPECT_NEAR(s.cum_logprob, all[k].cum, 2e-5) << "rank " << k;
      if (std::fabs(all[k].score - (k + 1 < width ? all[k + 1].score : -1e30)) > 1e-5 &&
          (k == 0 || std::fabs(all[k].score - all[k - 1].score) > 1e-5)) {
        EXPECT_EQ(s.tokens, all[k].tokens) << "rank " << k << " length_penalty " << length_penalty;
      }
    }
  }
  EXPECT_FALSE(llm.engine().has_unfinished_requests());
  EXPECT_DOUBLE_EQ(llm.engine().scheduler_stats().kv_cache_usage, 0.0);
}

// Beams of one prompt share their prompt's KV blocks; every block comes back at the end.
TEST(BeamSearch, BeamsShareBlocksAndReturnThem) {
  LLMEngine engine(tiny_args());
  std::vector<int32_t> prompt = prompt_ids(40, 2);  // 2.5 blocks of 16
  engine.add_beam_search_request("b", Prompt(prompt), beam_params(4, 6, true));
  int max_live = 0, max_shared_refs = 0;
  while (engine.has_unfinished_requests()) {
    engine.step();
    const KVCacheManager& kv = engine.engine_core().scheduler().kv_cache_manager();
    const BlockPool& pool = kv.block_pool();
    max_live = std::max(max_live, engine.scheduler_stats().num_running_reqs);
    for (int id = 1; id < pool.num_blocks(); ++id) max_shared_refs = std::max(max_shared_refs, pool.block(id).ref_cnt);
    engine.engine_core().scheduler().check_invariants();
  }
  std::vector<BeamSearchResult> results = engine.take_finished_beam_searches();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].beams.size(), 4u);
  EXPECT_EQ(max_live, 4);
  EXPECT_EQ(max_shared_refs, 4);  // the two full prompt blocks are held by all four beams
  EXPECT_DOUBLE_EQ(engine.scheduler_stats().kv_cache_usage, 0.0);
}

// Beam search and sampling requests in one batch give the same results as run alone.
TEST(BeamSearch, MixedWithSamplingRequestsChangesNothing) {
  BeamSearchParams beam = beam_params(3, 7, true);
  SamplingParams seeded;
  seeded.temperature = 0.8;
  seeded.seed = 5;
  seeded.max_tokens = 9;
  seeded.ignore_eos = true;
  LLM alone(tiny_args());
  std::vector<BeamSearchOutput> beams_alone = alone.beam_search(prompt_ids(9, 1), beam);
  std::vector<int32_t> sampled_alone = alone.generate(prompt_ids(12, 3), seeded, false)[0].outputs[0].token_ids;

  LLMEngine engine(tiny_args());
  engine.add_request("s", Prompt(prompt_ids(12, 3)), seeded);
  engine.add_beam_search_request("b", Prompt(prompt_ids(9, 1)), beam);
  std::vector<int32_t> sampled_mixed;
  while (engine.has_unfinished_requests()) {
    for (const RequestOutput& out : engine.step()) {
      if (out.finished) sampled_mixed = out.outputs[0].token_ids;
    }
  }
  std::vector<BeamSearchResult> mixed = engine.take_finished_beam_searches();
  ASSERT_EQ(mixed.size(), 1u);
  EXPECT_EQ(sampled_mixed, sampled_alone);
  ASSERT_EQ(mixed[0].beams.size(), beams_alone[0].sequences.size());
  for (size_t i = 0; i < mixed[0].beams.size(); ++i) {
    EXPECT_EQ(mixed[0].beams[i].tokens, beams_alone[0].sequences[i].tokens);
    EXPECT_DOUBLE_EQ(mixed[0].beams[i].cum_logprob, beams_alone[0].sequences[i].cum_logprob);
  }
}

// Under KV-cache pressure and a seat limit below the width, beams get preempted and recomputed;
// the result does not change.
TEST(BeamSearch, MemoryPressureDoesNotChangeBeams) {
  BeamSearchParams beam = beam_params(6, 10, true);
  std::vector<Prompt> prompts = {prompt_ids(30, 1), prompt_ids(21, 2)};
  LLM roomy(tiny_args());
  std::vector<BeamSearchOutput> want = roomy.beam_search(prompts, beam);
  EngineArgs tight = tiny_args();
  tight.max_model_len = 64;
  tight.max_num_seqs = 4;
  const int64_t block_bytes = 2 * 2 * 16 * 2 * 64 * 4;  // tiny_llama_q8_0, f32 K and V
  tight.kv_cache_memory_bytes = 12 * block_bytes;
  LLM squeezed(tight);
  std::vector<BeamSearchOutput> got = squeezed.beam_search(prompts, beam);
  ASSERT_EQ(got.size(), want.size());
  for (size_t p = 0; p < got.size(); ++p) {
    ASSERT_EQ(got[p].sequences.size(), want[p].sequences.size());
    for (size_t i = 0; i < got[p].sequences.size(); ++i) {
      EXPECT_EQ(got[p].sequences[i].tokens, want[p].sequences[i].tokens) << "prompt " << p << " beam " << i;
    }
  }
  EXPECT_GT(squeezed.engine().scheduler_stats().num_preemptions, 0);
  EXPECT_DOUBLE_EQ(squeezed.engine().scheduler_stats().kv_cache_usage, 0.0);
}

TEST(BeamSearch, GenerateReturnsGeneratedPartsBestFirst) {
  LLM llm(tiny_args());
  std::vector<int32_t> prompt = prompt_ids(5, 6);
  std::vector<RequestOutput> outs = llm.generate(prompt, beam_params(3, 5, true));
  ASSERT_EQ(outs.size(), 1u);
  ASSERT_EQ(outs[0].outputs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(outs[0].outputs[i].token_ids.size(), 5u);
    EXPECT_EQ(outs[0].outputs[i].finish_reason, "length");
    if (i > 0) {
      // With equal lengths the score order is the cumulative logprob order.
      EXPECT_GE(*outs[0].outputs[i - 1].cumulative_logprob, *outs[0].outputs[i].cumulative_logprob);
    }
  }
}

}  // namespace
}  // namespace cvllm
