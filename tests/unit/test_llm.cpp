// The offline API end to end on a tiny random Llama (tests/golden/data/tiny_llama_q8_0.gguf):
// ordering, validation errors, every stop condition, n > 1, seeds, logprobs, output kinds, abort,
// and the engine invariants that must not change results (batching, chunked prefill, prefix
// caching, preemption).
#include <gtest/gtest.h>

#include <algorithm>

#include "cvllm/cvllm.h"
#include "engine/engine_core.h"
#include "engine/llm_engine.h"
#include "tokenizer/tokenizer.h"
#include "unit/tiny_model.h"

namespace cvllm {
namespace {

using testing::tiny_model;
using testing::tiny_args;
using testing::prompt_ids;

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

std::vector<std::vector<int32_t>> generate_tokens(LLM& llm, const std::vector<Prompt>& prompts,
                                                  const SamplingParams& params) {
  std::vector<std::vector<int32_t>> tokens;
  for (const RequestOutput& out : llm.generate(prompts, params, false)) tokens.push_back(out.outputs[0].token_ids);
  return tokens;
}

std::vector<Prompt> varied_prompts(int count) {
  std::vector<Prompt> prompts;
  for (int i = 0; i < count; ++i) prompts.emplace_back(prompt_ids(1 + (i * 13) % 45, i));
  return prompts;
}

TEST(LLM, OutputsComeBackInInputOrderAndMatchRunningAlone) {
  LLM llm(tiny_args());
  std::vector<Prompt> prompts = varied_prompts(6);
  std::vector<RequestOutput> batch = llm.generate(prompts, greedy(12), false);
  ASSERT_EQ(batch.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(batch[i].prompt_token_ids, prompts[i].token_ids());
    EXPECT_TRUE(batch[i].finished);
    std::vector<RequestOutput> alone = llm.generate(prompts[i], greedy(12), false);
    EXPECT_EQ(batch[i].outputs[0].token_ids, alone[0].outputs[0].token_ids) << "prompt " << i;
    EXPECT_EQ(batch[i].outputs[0].finish_reason, "length");
  }
}

TEST(LLM, ChunkedPrefillAndPrefixCachingDoNotChangeResults) {
  std::vector<Prompt> prompts = varied_prompts(8);
  LLM plain([] { EngineArgs a = tiny_args(); a.enable_prefix_caching = false; return a; }());
  std::vector<std::vector<int32_t>> expected = generate_tokens(plain, prompts, greedy(16));

  EngineArgs chunked = tiny_args();
  chunked.max_num_batched_tokens = 7;  // every prompt is split into chunks
  LLM chunked_llm(chunked);
  EXPECT_EQ(generate_tokens(chunked_llm, prompts, greedy(16)), expected);

  LLM cached(tiny_args());
  generate_tokens(cached, prompts, greedy(16));
  EXPECT_EQ(generate_tokens(cached, prompts, greedy(16)), expected);  // second pass hits the cache
  SchedulerStats stats = cached.engine().scheduler_stats();
  EXPECT_GT(stats.prefix_cache.hits, 0);

}

// 64 mixed prompts (lengths 1..120, some sharing long prefixes): each prompt's greedy output is
// the same alone and inside the batch, with prefix caching on and off and chunked prefill forced
// small.
TEST(LLM, BatchInvarianceAcross64MixedPrompts) {
  std::mt19937 rng(11);
  std::vector<Prompt> prompts;
  std::vector<int32_t> shared = prompt_ids(70, 99);
  for (int i = 0; i < 64; ++i) {
    std::vector<int32_t> ids;
    if (i % 4 == 0) ids.assign(shared.begin(), shared.begin() + 20 + rng() % 50);
    for (int len = 1 + rng() % 60; len > 0; --len) ids.push_back(3 + rng() % 290);
    prompts.emplace_back(ids);
  }
  SamplingParams p = greedy(10);
  LLM alone_llm([] { EngineArgs a = tiny_args(); a.enable_prefix_caching = false; return a; }());
  std::vector<std::vector<int32_t>> alone;
  for (const Prompt& prompt : prompts) alone.push_back(alone_llm.generate(prompt, p, false)[0].outputs[0].token_ids);
  for (bool caching : {true, false}) {
    for (int budget : {4096, 13}) {
      EngineArgs a = tiny_args();
      a.enable_prefix_caching = caching;
      a.max_num_batched_tokens = budget;
      LLM llm(a);
      EXPECT_EQ(generate_tokens(llm, prompts, p), alone) << "prefix caching " << caching << ", budget " << budget;
    }
  }
}

// Async scheduling (on by default) schedules a step before the previous one's output is
// processed; nothing a request sees may change: tokens, text, finish and stop reasons, logprobs,
// under seeds, penalties, min_tokens, stop tokens and strings, n > 1, chunked prefill and
// preemption. On the CPU a step that samples finishes inside its launch (nothing to overlap), so
// steps go ahead after prefill chunks only; the GPU test of fed tokens is in
// test_cuda_model_runner_graphs.cpp, the scheduler's side in test_scheduler.cpp.
TEST(LLM, AsyncSchedulingGivesTheSameOutputsAsSyncScheduling) {
  std::vector<SamplingParams> cases;
  cases.push_back(greedy(24));
  SamplingParams p;
  p.temperature = 0.9;
  p.top_p = 0.8;
  p.top_k = 20;
  p.seed = 3;
  p.max_tokens = 20;
  cases.push_back(p);
  p = SamplingParams();
  p.seed = 4;
  p.repetition_penalty = 1.3;
  p.frequency_penalty = 0.4;
  p.presence_penalty = 0.2;
  p.max_tokens = 20;
  cases.push_back(p);
  p = greedy(20);
  p.ignore_eos = false;
  p.min_tokens = 6;
  p.stop_token_ids = {5, 9, 17};
  p.logprobs = 2;
  cases.push_back(p);
  p = SamplingParams();
  p.temperature = 0.7;
  p.seed = 9;
  p.n = 2;
  p.max_tokens = 16;
  p.stop = {"e"};
  cases.push_back(p);
  for (bool tight : {false, true}) {  // tight: blocks for just over one sequence (preemption)
    EngineArgs sync_args = tiny_args();
    sync_args.max_num_batched_tokens = 24;  // prompts of up to 45 tokens take chunks
    if (tight) {
      sync_args.max_model_len = 64;
      // tiny_llama_q8_0: 2 layers x 2 KV heads x 64 dims x f32, K and V, 16 tokens per block.
      sync_args.kv_cache_memory_bytes = 6 * 2 * 2 * 16 * 2 * 64 * 4;
    }
    EngineArgs async_args = sync_args;
    sync_args.async_scheduling = false;
    LLM sync(sync_args), async(async_args);
    for (const SamplingParams& params : cases) {
      std::vector<RequestOutput> want = sync.generate(varied_prompts(10), params, false);
      std::vector<RequestOutput> got = async.generate(varied_prompts(10), params, false);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].outputs.size(), want[i].outputs.size());
        for (size_t j = 0; j < got[i].outputs.size(); ++j) {
          const CompletionOutput &g = got[i].outputs[j], &w = want[i].outputs[j];
          EXPECT_EQ(g.token_ids, w.token_ids) << "case " << (&params - cases.data()) << " tight "
                                              << tight << " prompt " << i << " completion " << j;
          EXPECT_EQ(g.text, w.text);
          EXPECT_EQ(g.finish_reason, w.finish_reason);
          EXPECT_EQ(g.stop_reason, w.stop_reason);
          ASSERT_EQ(g.logprobs.has_value(), w.logprobs.has_value());
          if (g.logprobs) {
            ASSERT_EQ(g.logprobs->size(), w.logprobs->size());
            EXPECT_EQ(g.cumulative_logprob, w.cumulative_logprob);
          }
        }
      }
    }
    EXPECT_EQ(sync.engine().engine_core().num_steps_launched_ahead(), 0);
    EXPECT_EQ(async.engine().engine_core().runner().num_in_flight(), 0);  // idle holds nothing
    if (tight) {
      EXPECT_GT(async.engine().scheduler_stats().num_preemptions, 0);
    }
  }
}

TEST(LLM, PreemptionUnderMemoryPressureGivesSameTokens) {
  std::vector<Prompt> prompts = varied_prompts(8);
  LLM roomy(tiny_args());
  std::vector<std::vector<int32_t>> expected = generate_tokens(roomy, prompts, greedy(40));

  // Blocks for just over one full-length sequence: 8 requests must take turns.
  EngineArgs tight = tiny_args();
  tight.max_model_len = 128;
  tight.enable_prefix_caching = false;
  // tiny_llama_q8_0: 2 layers x 2 KV heads x 64 dims x f32, K and V, 16 tokens per block.
  const int64_t block_bytes = 2 * 2 * 16 * 2 * 64 * 4;
  tight.kv_cache_memory_bytes = 12 * block_bytes;
  LLM squeezed(tight);
  EXPECT_EQ(generate_tokens(squeezed, prompts, greedy(40)), expected);
  EXPECT_GT(squeezed.engine().scheduler_stats().num_preemptions, 0);
  EXPECT_DOUBLE_EQ(squeezed.engine().scheduler_stats().kv_cache_usage, 0.0);
}

// A preempted request keeps its random generator (vLLM's runner keeps a preempted request's
// state too): seeded sampled tokens do not depend on whether or when the request was preempted.
TEST(LLM, SeededSamplingIsTheSameUnderPreemption) {
  std::vector<Prompt> prompts = varied_prompts(8);
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 11;
  p.max_tokens = 40;
  p.ignore_eos = true;
  LLM roomy(tiny_args());
  std::vector<std::vector<int32_t>> expected = generate_tokens(roomy, prompts, p);
  EngineArgs tight = tiny_args();  // as PreemptionUnderMemoryPressureGivesSameTokens
  tight.max_model_len = 128;
  tight.enable_prefix_caching = false;
  tight.kv_cache_memory_bytes = 12 * (2 * 2 * 16 * 2 * 64 * 4);
  LLM squeezed(tight);
  EXPECT_EQ(generate_tokens(squeezed, prompts, p), expected);
  EXPECT_GT(squeezed.engine().scheduler_stats().num_preemptions, 0);
}

// On the CPU a step that samples is finished inside its launch: launching the next one first
// would only hold its tokens back by a step, so nothing goes ahead.
TEST(LLM, StepsFinishedAtLaunchAreNotOvertaken) {
  LLM llm(tiny_args());
  llm.generate(Prompt(prompt_ids(5, 1)), greedy(8), false);
  EXPECT_EQ(llm.engine().engine_core().num_steps_launched_ahead(), 0);
  EXPECT_GT(llm.engine().engine_core().num_steps(), 0);
}

TEST(LLM, ValidationErrorsNameTheField) {
  LLM llm(tiny_args());
  auto expect_error = [&](SamplingParams p, const std::string& needle) {
    try {
      llm.generate(prompt_ids(4, 1), p, false);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  SamplingParams p;
  p.temperature = -1;
  expect_error(p, "temperature");
  p = {};
  p.top_p = 0.0;
  expect_error(p, "top_p");
  p = {};
  p.top_k = -2;
  expect_error(p, "top_k");
  p = {};
  p.min_p = 1.5;
  expect_error(p, "min_p");
  p = {};
  p.max_tokens = 0;
  expect_error(p, "max_tokens");
  p = {};
  p.n = 2;
  p.temperature = 0;
  expect_error(p, "greedy");
  p = {};
  p.logprobs = 21;
  expect_error(p, "max allowed: 20");
  p = {};
  p.stop_token_ids = {100000};
  expect_error(p, "stop_token_ids");
  p = {};
  p.stop = {""};
  expect_error(p, "stop");
  p = {};
  p.presence_penalty = 3;
  expect_error(p, "presence_penalty");
  p = {};
  p.repetition_penalty = 0;
  expect_error(p, "repetition_penalty");

  EXPECT_THROW(llm.generate(std::vector<int32_t>{}, SamplingParams{}, false), ValueError);
  EXPECT_THROW(llm.generate(std::vector<int32_t>{1, 100000}, SamplingParams{}, false), ValueError);
  EXPECT_THROW(llm.generate(varied_prompts(2), std::vector<SamplingParams>(3), false), ValueError);
  EXPECT_FALSE(llm.engine().has_unfinished_requests());  // a failed batch leaves nothing behind
}

TEST(LLM, PromptLongerThanMaxModelLenIsRejected) {
  EngineArgs a = tiny_args();
  a.max_model_len = 16;
  LLM llm(a);
  try {
    llm.generate(prompt_ids(17, 0), greedy(1), false);
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("longer than the maximum model length of 16"), std::string::npos) << e.what();
  }
  // A prompt that fits stops at max_model_len with finish_reason "length".
  RequestOutput out = llm.generate(prompt_ids(10, 0), greedy(100), false)[0];
  EXPECT_EQ(out.outputs[0].token_ids.size(), 6u);
  EXPECT_EQ(out.outputs[0].finish_reason, "length");
}

TEST(LLM, StopTokenIdsEndTheSequence) {
  LLM llm(tiny_args());
  std::vector<int32_t> free_run = llm.generate(prompt_ids(9, 3), greedy(12), false)[0].outputs[0].token_ids;
  int32_t stop = free_run[4];
  size_t first = std::find(free_run.begin(), free_run.end(), stop) - free_run.begin();
  SamplingParams p = greedy(12);
  p.stop_token_ids = {stop};
  CompletionOutput out = llm.generate(prompt_ids(9, 3), p, false)[0].outputs[0];
  EXPECT_EQ(out.token_ids, std::vector<int32_t>(free_run.begin(), free_run.begin() + first + 1));
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(std::get<int32_t>(out.stop_reason), stop);

  // min_tokens masks the stop token until enough tokens exist.
  p.min_tokens = static_cast<int>(first) + 2;
  CompletionOutput later = llm.generate(prompt_ids(9, 3), p, false)[0].outputs[0];
  EXPECT_GE(later.token_ids.size(), first + 2);
  for (size_t i = 0; i + 1 < static_cast<size_t>(p.min_tokens); ++i) EXPECT_NE(later.token_ids[i], stop);
}

TEST(LLM, StopStringsTruncateText) {
  LLM llm(tiny_args());
  SamplingParams p = greedy(24);
  std::string full = llm.generate(prompt_ids(5, 7), p, false)[0].outputs[0].text;
  ASSERT_GE(full.size(), 8u) << "the tiny model should produce some text";
  std::string stop = full.substr(4, 3);
  size_t at = full.find(stop);
  p.stop = {stop};
  CompletionOutput out = llm.generate(prompt_ids(5, 7), p, false)[0].outputs[0];
  EXPECT_EQ(out.text, full.substr(0, at));
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(std::get<std::string>(out.stop_reason), stop);
  EXPECT_LT(out.token_ids.size(), 24u);
  p.include_stop_str_in_output = true;
  EXPECT_EQ(llm.generate(prompt_ids(5, 7), p, false)[0].outputs[0].text, full.substr(0, at + stop.size()));
}

TEST(LLM, SeededSamplingReproducesAndNFansOut) {
  LLM llm(tiny_args());
  SamplingParams p;
  p.temperature = 1.0;
  p.max_tokens = 10;
  p.ignore_eos = true;
  p.seed = 42;
  std::vector<int32_t> a = llm.generate(prompt_ids(6, 2), p, false)[0].outputs[0].token_ids;
  // Same seed, now batched with unseeded requests: identical.
  std::vector<SamplingParams> params = {SamplingParams{.temperature = 1.0, .max_tokens = 10}, p,
                                        SamplingParams{.temperature = 0.7, .max_tokens = 10}};
  std::vector<RequestOutput> outs = llm.generate({prompt_ids(8, 1), prompt_ids(6, 2), prompt_ids(3, 9)}, params, false);
  EXPECT_EQ(outs[1].outputs[0].token_ids, a);

  p.n = 3;
  RequestOutput fan = llm.generate(prompt_ids(6, 2), p, false)[0];
  ASSERT_EQ(fan.outputs.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(fan.outputs[i].index, i);
  EXPECT_EQ(fan.outputs[0].token_ids, a);  // child 0 uses seed + 0
  RequestOutput again = llm.generate(prompt_ids(6, 2), p, false)[0];
  for (int i = 0; i < 3; ++i) EXPECT_EQ(again.outputs[i].token_ids, fan.outputs[i].token_ids);
}

TEST(LLM, LogprobsListSampledTokenFirstAndSumToCumulative) {
  LLM llm(tiny_args());
  SamplingParams p = greedy(6);
  p.logprobs = 3;
  CompletionOutput out = llm.generate(prompt_ids(7, 4), p, false)[0].outputs[0];
  ASSERT_TRUE(out.logprobs && out.cumulative_logprob);
  ASSERT_EQ(out.logprobs->size(), out.token_ids.size());
  double sum = 0.0;
  for (size_t i = 0; i < out.token_ids.size(); ++i) {
    const PositionLogprobs& pos = (*out.logprobs)[i];
    ASSERT_GE(pos.size(), 3u);
    ASSERT_LE(pos.size(), 4u);
    EXPECT_EQ(pos[0].first, out.token_ids[i]);
    EXPECT_EQ(pos[0].second.rank, 1);  // greedy picks the top token
    sum += pos[0].second.logprob;
  }
  EXPECT_NEAR(*out.cumulative_logprob, sum, 1e-6);
  EXPECT_FALSE(llm.generate(prompt_ids(7, 4), greedy(2), false)[0].outputs[0].cumulative_logprob);
}

TEST(LLMEngine, DeltaOutputsConcatenateToTheFinalText) {
  LLMEngine engine(tiny_args());
  SamplingParams cumulative = greedy(20);
  SamplingParams delta = greedy(20);
  delta.output_kind = RequestOutputKind::kDelta;
  engine.add_request("c", Prompt(prompt_ids(5, 5)), cumulative);
  engine.add_request("d", Prompt(prompt_ids(5, 5)), delta);
  std::string final_text, streamed;
  std::vector<int32_t> streamed_ids;
  int num_delta_outputs = 0;
  while (engine.has_unfinished_requests()) {
    for (const RequestOutput& out : engine.step()) {
      if (out.request_id == "c" && out.finished) final_text = out.outputs[0].text;
      if (out.request_id == "d") {
        ++num_delta_outputs;
        streamed += out.outputs[0].text;
        streamed_ids.insert(streamed_ids.end(), out.outputs[0].token_ids.begin(), out.outputs[0].token_ids.end());
      }
    }
  }
  EXPECT_EQ(streamed, final_text);
  EXPECT_EQ(streamed_ids.size(), 20u);
  EXPECT_GT(num_delta_outputs, 1);
}

TEST(LLMEngine, AbortFreesEverything) {
  LLMEngine engine(tiny_args());
  engine.add_request("a", Prompt(prompt_ids(30, 1)), greedy(50));
  engine.add_request("b", Prompt(prompt_ids(30, 2)), greedy(50));
  engine.step();
  engine.step();
  engine.abort_request({"a", "b"});
  EXPECT_FALSE(engine.has_unfinished_requests());
  EXPECT_TRUE(engine.step().empty());
  EXPECT_DOUBLE_EQ(engine.scheduler_stats().kv_cache_usage, 0.0);
}

TEST(LLM, GenerationDefaultsComeFromTheModelUnlessTurnedOff) {
  // tiny_llama_q4_k carries general.sampling.{temp, top_p, top_k} = 0.6, 0.9, 40.
  EngineArgs a = tiny_args();
  a.model = std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/tiny_llama_q4_k.gguf";
  LLM with_defaults(a);
  SamplingParams d = with_defaults.get_default_sampling_params();
  EXPECT_NEAR(d.temperature, 0.6, 1e-6);
  EXPECT_NEAR(d.top_p, 0.9, 1e-6);
  EXPECT_EQ(d.top_k, 40);
  EXPECT_EQ(d.max_tokens, 16);  // untouched fields keep vLLM's defaults
  a.generation_config = "vllm";
  LLM plain(a);
  EXPECT_EQ(plain.get_default_sampling_params().temperature, 1.0);
  EXPECT_EQ(plain.get_default_sampling_params().top_k, 0);
  a.generation_config = "bogus";
  EXPECT_THROW(LLM bad(a), ValueError);
}

TEST(LLM, TextPromptsUseTheModelTokenizer) {
  LLM llm(tiny_args());
  RequestOutput out = llm.generate("the quick brown fox", greedy(4), false)[0];
  EXPECT_EQ(out.prompt, "the quick brown fox");
  EXPECT_EQ(out.prompt_token_ids, llm.get_tokenizer().encode("the quick brown fox", true));
  EXPECT_EQ(out.outputs[0].token_ids.size(), 4u);
  EXPECT_EQ(out.outputs[0].text, llm.get_tokenizer().decode(out.outputs[0].token_ids, true));
}

}  // namespace
}  // namespace cvllm
