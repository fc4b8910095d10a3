// Scheduler, KV-cache manager and block pool as pure logic: synthetic requests, a fake "model"
// that samples a fixed token, invariants checked after every step.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <optional>
#include <random>

#include "core/scheduler.h"
#include "cvllm/errors.h"
#include "util/error.h"

namespace cvllm {
namespace {

constexpr int32_t kEos = 2;

std::shared_ptr<Request> make_request(const std::string& id, int prompt_len, int max_tokens,
                                      int first_token = 100, int priority = 0,
                                      double arrival = 0.0) {
  std::vector<int32_t> prompt(prompt_len);
  std::iota(prompt.begin(), prompt.end(), first_token);
  auto params = std::make_shared<SamplingParams>();
  params->max_tokens = max_tokens;
  auto r = std::make_shared<Request>(id, prompt, params, kEos, arrival, priority);
  r->max_tokens = max_tokens;
  return r;
}

// Plays the model runner: every request whose scheduled tokens reach its end samples `token`.
ModelRunnerOutput fake_run(const SchedulerOutput& out,
                           const std::unordered_map<std::string, std::shared_ptr<Request>>& reqs,
                           int32_t token = 7) {
  ModelRunnerOutput result;
  auto add = [&](const std::string& id) {
    result.req_ids.push_back(id);
    const Request& r = *reqs.at(id);
    // schedule() already advanced num_computed_tokens: a request that caught up samples.
    bool samples = r.num_computed_tokens == r.num_tokens();
    result.sampled_token_ids.push_back(samples ? std::vector<int32_t>{token} : std::vector<int32_t>{});
  };
  for (const auto& d : out.scheduled_new_reqs) add(d.request_id);
  for (const auto& d : out.scheduled_cached_reqs) add(d.request_id);
  return result;
}

struct Harness {
  Scheduler scheduler;
  std::unordered_map<std::string, std::shared_ptr<Request>> reqs;
  std::vector<EngineCoreOutput> finished;

  Harness(SchedulerConfig cfg, int num_blocks, int block_size = 4, bool caching = true)
      : scheduler(cfg, num_blocks, block_size, caching) {}

  void add(std::shared_ptr<Request> r) {
    reqs[r->request_id] = r;
    scheduler.add_request(r);
  }
  SchedulerOutput step(int32_t token = 7) {
    SchedulerOutput out = scheduler.schedule();
    scheduler.check_invariants();
    EXPECT_LE(out.total_num_scheduled_tokens, scheduler.config().max_num_batched_tokens);
    for (const auto& o : scheduler.update_from_output(out, fake_run(out, reqs, token))) {
      if (o.finished) finished.push_back(o);
    }
    scheduler.check_invariants();
    return out;
  }
  void run_to_completion(int max_steps = 1000) {
    for (int i = 0; i < max_steps && scheduler.has_unfinished_requests(); ++i) step();
    ASSERT_FALSE(scheduler.has_unfinished_requests()) << "did not finish in " << max_steps << " steps";
  }
};

SchedulerConfig config(int max_seqs = 8, int max_tokens = 64, int max_len = 256) {
  SchedulerConfig c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = max_tokens;
  c.max_model_len = max_len;
  return c;
}

TEST(Scheduler, SingleRequestPrefillThenDecode) {
  Harness h(config(), 64);
  h.add(make_request("a", 10, 3));
  SchedulerOutput s1 = h.step();
  EXPECT_EQ(s1.num_scheduled_tokens.at("a"), 10);
  ASSERT_EQ(s1.scheduled_new_reqs.size(), 1u);
  EXPECT_EQ(s1.scheduled_new_reqs[0].block_ids.size(), 3u);  // 10 tokens, block size 4
  SchedulerOutput s2 = h.step();
  EXPECT_EQ(s2.num_scheduled_tokens.at("a"), 1);
  ASSERT_EQ(s2.scheduled_cached_reqs.size(), 1u);
  h.run_to_completion();
  ASSERT_EQ(h.finished.size(), 1u);
  EXPECT_EQ(h.finished[0].status, RequestStatus::kFinishedLengthCapped);
  EXPECT_EQ(h.reqs["a"]->num_output_tokens(), 3);
  // Every block is back in the pool (the null block stays reserved).
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 63);
}

TEST(Scheduler, ChunkedPrefillRespectsTokenBudget) {
  Harness h(config(8, 16), 64);
  h.add(make_request("long", 40, 2));
  EXPECT_EQ(h.step().num_scheduled_tokens.at("long"), 16);
  EXPECT_EQ(h.step().num_scheduled_tokens.at("long"), 16);
  EXPECT_EQ(h.reqs["long"]->num_output_tokens(), 0);  // chunks do not sample
  EXPECT_EQ(h.step().num_scheduled_tokens.at("long"), 8);
  EXPECT_EQ(h.reqs["long"]->num_output_tokens(), 1);
  h.run_to_completion();
}

TEST(Scheduler, DecodesAndPrefillsShareAStep) {
  Harness h(config(8, 20), 64);
  h.add(make_request("a", 6, 10));
  h.step();
  h.add(make_request("b", 30, 2, 500));
  SchedulerOutput s = h.step();
  EXPECT_EQ(s.num_scheduled_tokens.at("a"), 1);   // running first
  EXPECT_EQ(s.num_scheduled_tokens.at("b"), 19);  // then the waiting one, with what is left
  h.run_to_completion();
}

TEST(Scheduler, MaxNumSeqsLimitsRunning) {
  Harness h(config(2, 64), 64);
  for (int i = 0; i < 4; ++i) h.add(make_request(cat("r", i), 3, 2, 100 + 10 * i));
  SchedulerOutput s = h.step();
  EXPECT_EQ(s.num_scheduled_tokens.size(), 2u);
  EXPECT_EQ(h.scheduler.stats().num_waiting_reqs, 2);
  h.run_to_completion();
  EXPECT_EQ(h.finished.size(), 4u);
}

TEST(Scheduler, PreemptsNewestWhenBlocksRunOut) {
  // 6 usable blocks of 4 tokens; two requests of 8 prompt tokens growing to 16 each cannot both fit.
  Harness h(config(8, 64), 7);
  h.add(make_request("old", 8, 8, 100, 0, 1.0));
  h.add(make_request("new", 8, 8, 200, 0, 2.0));
  h.run_to_completion();
  EXPECT_GE(h.scheduler.stats().num_preemptions, 1);
  EXPECT_GE(h.reqs["new"]->num_preemptions, 1);
  EXPECT_EQ(h.reqs["old"]->num_preemptions, 0);
  EXPECT_EQ(h.reqs["old"]->num_output_tokens(), 8);
  EXPECT_EQ(h.reqs["new"]->num_output_tokens(), 8);
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 6);
}

TEST(Scheduler, PriorityPolicyRunsLowerValueFirst) {
  SchedulerConfig c = config(1, 64);
  c.policy = SchedulingPolicy::kPriority;
  Harness h(c, 64);
  h.add(make_request("late", 3, 1, 100, /*priority=*/5, 1.0));
  h.add(make_request("urgent", 3, 1, 200, /*priority=*/0, 2.0));
  SchedulerOutput s = h.step();
  ASSERT_EQ(s.num_scheduled_tokens.size(), 1u);
  EXPECT_TRUE(s.num_scheduled_tokens.count("urgent"));
  h.run_to_completion();
}

TEST(Scheduler, StopsOnEosAndStopTokens) {
  Harness h(config(), 64);
  auto r = make_request("a", 4, 10);
  h.add(r);
  h.step(kEos);
  ASSERT_EQ(h.finished.size(), 1u);
  EXPECT_EQ(h.finished[0].status, RequestStatus::kFinishedStopped);
  EXPECT_FALSE(h.finished[0].stop_token.has_value());

  auto params = std::make_shared<SamplingParams>();
  params->stop_token_ids = {9};
  auto r2 = std::make_shared<Request>("b", std::vector<int32_t>{5, 6, 7}, params, kEos, 0.0);
  r2->max_tokens = 10;
  h.add(r2);
  h.step(9);
  ASSERT_EQ(h.finished.size(), 2u);
  EXPECT_EQ(h.finished[1].stop_token, 9);
}

TEST(Scheduler, IgnoreEosAndMinTokensKeepGoing) {
  Harness h(config(), 64);
  auto params = std::make_shared<SamplingParams>();
  params->min_tokens = 2;
  auto r = std::make_shared<Request>("a", std::vector<int32_t>{5, 6, 7}, params, kEos, 0.0);
  r->max_tokens = 5;
  h.add(r);
  h.step(kEos);  // EOS before min_tokens is not a stop
  EXPECT_TRUE(h.finished.empty());
  h.step(kEos);
  ASSERT_EQ(h.finished.size(), 1u);
  EXPECT_EQ(r->num_output_tokens(), 2);
}

TEST(Scheduler, StopsAtMaxModelLen) {
  Harness h(config(8, 64, 12), 64);
  h.add(make_request("a", 10, 100));
  h.run_to_completion();
  EXPECT_EQ(h.reqs["a"]->num_tokens(), 12);
  EXPECT_EQ(h.finished[0].status, RequestStatus::kFinishedLengthCapped);
}

TEST(Scheduler, AbortFreesBlocks) {
  Harness h(config(), 32);
  h.add(make_request("a", 10, 50));
  h.add(make_request("b", 10, 50, 300));
  h.step();
  h.scheduler.finish_requests({"a"}, RequestStatus::kFinishedAborted);
  h.scheduler.check_invariants();
  SchedulerOutput s = h.step();
  EXPECT_EQ(s.finished_req_ids, std::vector<std::string>{"a"});
  h.scheduler.finish_requests({"b", "unknown"}, RequestStatus::kFinishedAborted);
  EXPECT_FALSE(h.scheduler.has_unfinished_requests());
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 31);
}

TEST(PrefixCache, SharedPrefixHitsCachedBlocks) {
  Harness h(config(), 64);
  h.add(make_request("first", 13, 1));
  h.run_to_completion();
  // Same 13-token prompt: 3 full blocks are cached; the last token is always recomputed.
  h.add(make_request("second", 13, 1));
  SchedulerOutput s = h.step();
  EXPECT_EQ(s.num_scheduled_tokens.at("second"), 1);
  EXPECT_EQ(h.reqs["second"]->num_cached_tokens, 12);
  EXPECT_EQ(h.scheduler.kv_cache_manager().prefix_cache_stats().hits, 12);
  h.run_to_completion();
}

TEST(PrefixCache, LastTokenRecomputedForBlockAlignedPrompt) {
  Harness h(config(), 64);
  h.add(make_request("first", 8, 1));
  h.run_to_completion();
  h.add(make_request("second", 8, 1));
  SchedulerOutput s = h.step();
  EXPECT_EQ(h.reqs["second"]->num_cached_tokens, 4);  // 8 tokens = 2 blocks, only 1 reusable
  EXPECT_EQ(s.num_scheduled_tokens.at("second"), 4);
}

TEST(PrefixCache, CacheSaltIsolates) {
  Harness h(config(), 64);
  auto a = make_request("a", 13, 1);
  a->cache_salt = "alice";
  h.add(a);
  h.run_to_completion();
  auto b = make_request("b", 13, 1);
  b->cache_salt = "bob";
  h.add(b);
  h.step();
  EXPECT_EQ(b->num_cached_tokens, 0);
}

TEST(PrefixCache, DisabledNeverHits) {
  Harness h(config(), 64, 4, /*caching=*/false);
  h.add(make_request("a", 13, 1));
  h.run_to_completion();
  h.add(make_request("b", 13, 1));
  h.step();
  EXPECT_EQ(h.reqs["b"]->num_cached_tokens, 0);
}

TEST(PrefixCache, ParallelSamplingChildrenShareThePromptBlocks) {
  // n = 4 children of one 40-token prompt arrive together: the first allocates 10 blocks and
  // registers their hashes at once, so the others hit 9 of them in the same step (the last
  // prompt token is always recomputed) and add one block each.
  Harness h(config(8, 256), 64);
  for (int i = 0; i < 4; ++i) h.add(make_request(cat(i, "_r"), 40, 2));
  SchedulerOutput s = h.step();
  EXPECT_EQ(s.num_scheduled_tokens.at("0_r"), 40);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(s.num_scheduled_tokens.at(cat(i, "_r")), 4);
  EXPECT_EQ(63 - h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 10 + 3);
  const auto& first = h.scheduler.kv_cache_manager().get_block_ids("0_r");
  const auto& second = h.scheduler.kv_cache_manager().get_block_ids("1_r");
  EXPECT_TRUE(std::equal(first.begin(), first.begin() + 9, second.begin()));
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().block(first[0]).ref_cnt, 4);
  h.run_to_completion();
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 63);
}

// Beam search primitives: a caught-up beam forks; full blocks are shared, a partial last block is
// copied (reported once in blocks_to_copy), appended tokens reach the runner, all blocks return.
TEST(BeamPrimitives, ForkSharesFullBlocksAndCopiesThePartialOne) {
  Harness h(config(8, 256), 64);
  auto beam = make_request("b", 10, 5);  // 10 tokens: 2 full blocks of 4 + 2 in a third
  beam->tokens_from_engine = true;
  h.add(beam);
  SchedulerOutput first = h.step();
  EXPECT_EQ(beam->num_output_tokens(), 0);  // the engine, not the sampler, appends
  EXPECT_EQ(beam->num_computed_tokens, 10);
  EXPECT_TRUE(h.scheduler.schedule().empty());  // waits for its token
  h.scheduler.fork_request("b", "b1", 77);
  EXPECT_FALSE(h.scheduler.append_token("b", 66));
  const auto& kv = h.scheduler.kv_cache_manager();
  const auto& parent = kv.get_block_ids("b");
  const auto& child = kv.get_block_ids("b1");
  ASSERT_EQ(child.size(), 3u);
  EXPECT_EQ(child[0], parent[0]);
  EXPECT_EQ(child[1], parent[1]);
  EXPECT_NE(child[2], parent[2]);
  EXPECT_EQ(kv.block_pool().block(parent[0]).ref_cnt, 2);
  EXPECT_EQ(kv.block_pool().block(parent[2]).ref_cnt, 1);
  SchedulerOutput next = h.scheduler.schedule();
  h.scheduler.check_invariants();
  ASSERT_EQ(next.blocks_to_copy.size(), 1u);
  EXPECT_EQ(next.blocks_to_copy[0], std::make_pair(parent[2], child[2]));
  ASSERT_EQ(next.scheduled_new_reqs.size(), 1u);  // the fork is new to the runner
  EXPECT_EQ(next.scheduled_new_reqs[0].request_id, "b1");
  EXPECT_EQ(next.scheduled_new_reqs[0].output_token_ids, std::vector<int32_t>{77});
  EXPECT_EQ(next.scheduled_new_reqs[0].num_computed_tokens, 10);
  ASSERT_EQ(next.scheduled_cached_reqs.size(), 1u);
  EXPECT_EQ(next.scheduled_cached_reqs[0].new_token_ids, std::vector<int32_t>{66});
  EXPECT_EQ(next.num_scheduled_tokens.at("b"), 1);
  EXPECT_EQ(next.num_scheduled_tokens.at("b1"), 1);
  h.scheduler.finish_requests({"b", "b1"}, RequestStatus::kFinishedAborted);
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 63);
  h.scheduler.check_invariants();
}

TEST(BeamPrimitives, BlockAlignedForkNeedsNoCopyAndLengthCapFrees) {
  Harness h(config(8, 256), 64);
  auto beam = make_request("b", 8, 1);
  beam->tokens_from_engine = true;
  h.add(beam);
  h.step();
  h.scheduler.fork_request("b", "c", 5);  // max_tokens 1: the child is done at once
  EXPECT_FALSE(h.scheduler.has_request("c"));
  EXPECT_FALSE(h.scheduler.kv_cache_manager().has_request("c"));
  EXPECT_TRUE(h.scheduler.append_token("b", 6));
  EXPECT_FALSE(h.scheduler.has_unfinished_requests());
  EXPECT_TRUE(h.scheduler.schedule().blocks_to_copy.empty());
  EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 63);
}

TEST(BlockPool, EvictsLeastRecentlyFreedFirst) {
  BlockPool pool(5, true);
  std::vector<int> a = pool.get_new_blocks(2);
  std::vector<int> b = pool.get_new_blocks(2);
  pool.cache_full_block(a[0], hash_block_tokens(nullptr, std::vector<int32_t>{1}, ""));
  pool.free_blocks(a);
  pool.free_blocks(b);
  pool.check_invariants();
  EXPECT_EQ(pool.num_free_blocks(), 4);
  // a's blocks were freed first, so they are reused first and a[0]'s cached hash is evicted.
  std::vector<int> c = pool.get_new_blocks(1);
  EXPECT_EQ(c[0], a[0]);
  EXPECT_FALSE(pool.get_cached_block(hash_block_tokens(nullptr, std::vector<int32_t>{1}, "")));
  EXPECT_EQ(pool.num_evictions(), 1);
  pool.check_invariants();
}

TEST(BlockPool, TouchRevivesFreeCachedBlock) {
  BlockPool pool(4, true);
  std::vector<int> a = pool.get_new_blocks(1);
  BlockHash h = hash_block_tokens(nullptr, std::vector<int32_t>{1, 2}, "");
  pool.cache_full_block(a[0], h);
  pool.free_blocks(a);
  ASSERT_EQ(pool.get_cached_block(h), a[0]);
  pool.touch({a[0]});
  EXPECT_EQ(pool.block(a[0]).ref_cnt, 1);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  pool.check_invariants();
  EXPECT_THROW(pool.get_new_blocks(3), Error);
}

TEST(BlockHash, ChainsParentAndSalt) {
  std::vector<int32_t> t = {1, 2, 3, 4};
  BlockHash h1 = hash_block_tokens(nullptr, t, "");
  BlockHash h2 = hash_block_tokens(&h1, t, "");
  EXPECT_NE(h1, h2);
  EXPECT_EQ(h2, hash_block_tokens(&h1, t, ""));
  EXPECT_NE(h1, hash_block_tokens(nullptr, t, "salt"));
}

// Random arrivals, lengths and budgets: invariants hold after every step and everything finishes.
TEST(Scheduler, RandomWorkloadKeepsInvariants) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    SchedulerConfig c = config(1 + rng() % 6, 8 + rng() % 40, 64);
    int block_size = 1 + rng() % 8;
    int num_blocks = 64 / block_size + 2 + rng() % 40;
    Harness h(c, num_blocks, block_size, rng() % 2);
    int next = 0;
    for (int step = 0; step < 400; ++step) {
      if (next < 30 && rng() % 3 == 0) {
        int len = 1 + rng() % 40;
        h.add(make_request(cat("r", next++), len, 1 + rng() % 20, 100 + rng() % 5 * 7));
      }
      if (h.scheduler.has_unfinished_requests()) h.step(static_cast<int32_t>(10 + rng() % 50));
      if (rng() % 17 == 0 && next > 0) {
        h.scheduler.finish_requests(std::vector<std::string>{cat("r", rng() % next)}, RequestStatus::kFinishedAborted);
        h.scheduler.check_invariants();
      }
    }
    h.run_to_completion(2000);
    EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), num_blocks - 1);
  }
}

// ---- async scheduling: one step in flight while the next is scheduled ------------------------

// The fake model's token for a request: a function of the request and how far it got, so a run
// gives the same tokens whatever the steps look like (and sometimes EOS).
int32_t next_token(const Request& r) {
  return static_cast<int32_t>((std::hash<std::string>{}(r.request_id) + 31u * r.num_output_tokens()) % 60 + 1);
}

// Plays EngineCore with async scheduling: step() schedules the next step before the output of the
// one in flight comes back. The requests that sample in a step are those it gave a placeholder.
struct AsyncHarness {
  struct Launched {
    SchedulerOutput out;
    std::vector<std::string> samples;
  };
  Scheduler scheduler;
  std::unordered_map<std::string, std::shared_ptr<Request>> reqs;
  std::vector<EngineCoreOutput> finished;
  std::optional<Launched> in_flight;
  std::unordered_map<std::string, int> times_scheduled;

  AsyncHarness(SchedulerConfig cfg, int num_blocks, int block_size = 4, bool caching = true)
      : scheduler([&] { cfg.async_scheduling = true; return cfg; }(), num_blocks, block_size,
                  caching) {}

  void add(std::shared_ptr<Request> r) {
    reqs[r->request_id] = r;
    scheduler.add_request(r);
  }
  Launched launch() {
    std::unordered_map<std::string, int> before;
    for (const auto& [id, r] : reqs) before[id] = r->num_output_placeholders;
    Launched l{scheduler.schedule(), {}};
    scheduler.check_invariants();
    for (const auto& [id, n] : l.out.num_scheduled_tokens) {
      ++times_scheduled[id];
      if (reqs.at(id)->num_output_placeholders > before[id]) l.samples.push_back(id);
    }
    return l;
  }
  void step() {
    if (!in_flight) in_flight = launch();
    std::optional<Launched> next;
    if (scheduler.has_unfinished_requests()) next = launch();
    ModelRunnerOutput result;
    for (const std::string& id : in_flight->samples) {
      result.req_ids.push_back(id);
      result.sampled_token_ids.push_back({next_token(*reqs.at(id))});
    }
    for (const auto& o : scheduler.update_from_output(in_flight->out, result)) {
      if (o.finished) finished.push_back(o);
    }
    scheduler.check_invariants();
    in_flight = std::move(next);
  }
  void run_to_completion(int max_steps = 2000) {
    for (int i = 0; i < max_steps && (scheduler.has_unfinished_requests() || in_flight); ++i) step();
    for (const auto& [id, r] : reqs) {
      if (!scheduler.has_request(id)) continue;
      ADD_FAILURE() << id << " left: status " << static_cast<int>(r->status) << " computed "
                    << r->num_computed_tokens << " of " << r->num_tokens() << " + "
                    << r->num_output_placeholders << ", outputs " << r->num_output_tokens()
                    << " of " << r->max_tokens;
    }
    ASSERT_FALSE(scheduler.has_unfinished_requests()) << "did not finish in " << max_steps << " steps";
  }
};

TEST(AsyncScheduling, TheNextStepComputesTheTokenInFlight) {
  AsyncHarness h(config(), 64);
  h.add(make_request("a", 6, 4));
  h.in_flight = h.launch();  // the prefill: samples token 1
  EXPECT_EQ(h.reqs["a"]->num_output_placeholders, 1);
  AsyncHarness::Launched next = h.launch();  // before token 1 is known: it computes it
  EXPECT_EQ(next.out.num_scheduled_tokens.at("a"), 1);
  EXPECT_EQ(h.reqs["a"]->num_output_placeholders, 2);
  EXPECT_EQ(h.reqs["a"]->num_computed_tokens, 7);
  EXPECT_EQ(h.reqs["a"]->num_tokens(), 6);
  // Nothing more until a token comes back: two are in flight at most.
  EXPECT_TRUE(h.scheduler.schedule().empty());
  h.scheduler.check_invariants();
}

TEST(AsyncScheduling, TheLastTokenIsNeverComputedAhead) {
  for (int max_tokens : {1, 2, 5}) {
    AsyncHarness h(config(), 64);
    h.add(make_request("a", 6, max_tokens));
    h.run_to_completion();
    ASSERT_EQ(h.finished.size(), 1u);
    EXPECT_EQ(h.finished[0].status, RequestStatus::kFinishedLengthCapped);
    EXPECT_EQ(h.reqs["a"]->num_output_tokens(), max_tokens);
    // One prefill, then one step per further token: no step computes a token past the limit.
    EXPECT_EQ(h.times_scheduled["a"], max_tokens) << "max_tokens " << max_tokens;
    EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), 63);
  }
}

TEST(AsyncScheduling, ARequestWithATokenInFlightIsNotPreempted) {
  // 4 usable blocks of 4 tokens: two requests of 7 prompt tokens fill them after one token each.
  AsyncHarness h(config(), 5);
  h.add(make_request("a", 7, 8, 100, 0, 1.0));
  h.add(make_request("b", 7, 8, 200, 0, 2.0));
  h.in_flight = h.launch();  // both prefill and sample
  AsyncHarness::Launched next = h.launch();  // position 7 fits in their second blocks
  EXPECT_EQ(next.out.num_scheduled_tokens.size(), 2u);
  EXPECT_TRUE(next.out.preempted_req_ids.empty());
  h.in_flight.reset();
  h.scheduler.update_from_output(
      SchedulerOutput{}, ModelRunnerOutput{{"a", "b"}, {{7}, {7}}, {}, {}});
  // Position 8 needs a third block each: none is free, and both have a token in flight.
  AsyncHarness::Launched third = h.launch();
  EXPECT_TRUE(third.out.empty());
  EXPECT_TRUE(third.out.preempted_req_ids.empty());
  EXPECT_EQ(h.scheduler.stats().num_preemptions, 0);
  // Once the tokens are back, the usual rule applies: the newest is preempted.
  h.scheduler.update_from_output(
      SchedulerOutput{}, ModelRunnerOutput{{"a", "b"}, {{7}, {7}}, {}, {}});
  AsyncHarness::Launched fourth = h.launch();
  EXPECT_EQ(fourth.out.preempted_req_ids, std::vector<std::string>{"b"});
  EXPECT_EQ(fourth.out.num_scheduled_tokens.at("a"), 1);
}

// Same requests, same tokens, same endings as without async scheduling, under chunked prefill,
// preemption, EOS and length limits.
TEST(AsyncScheduling, GivesTheSameTokensAsSyncScheduling) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    SchedulerConfig c = config(1 + rng() % 6, 8 + rng() % 40, 64);
    const int block_size = 1 + rng() % 8;
    const int num_blocks = 64 / block_size + 2 + rng() % 40;
    const bool caching = rng() % 2;
    std::vector<std::tuple<int, int, int>> plan;  // step to add at, prompt length, max_tokens
    for (int i = 0; i < 12; ++i) plan.emplace_back(rng() % 40, 1 + rng() % 40, 1 + rng() % 20);
    auto add_due = [&](auto& h, int step) {
      for (size_t i = 0; i < plan.size(); ++i) {
        auto [at, len, max_tokens] = plan[i];
        if (at == step) h.add(make_request(cat("r", i), len, max_tokens, 100 + static_cast<int>(i % 3) * 5));
      }
    };
    Harness sync(c, num_blocks, block_size, caching);
    AsyncHarness async(c, num_blocks, block_size, caching);
    for (int step = 0; step < 2000; ++step) {
      add_due(sync, step);
      if (sync.scheduler.has_unfinished_requests()) {
        SchedulerOutput out = sync.scheduler.schedule();
        ModelRunnerOutput result = fake_run(out, sync.reqs);
        for (size_t i = 0; i < result.req_ids.size(); ++i) {
          if (!result.sampled_token_ids[i].empty()) {
            result.sampled_token_ids[i] = {next_token(*sync.reqs.at(result.req_ids[i]))};
          }
        }
        sync.scheduler.update_from_output(out, result);
        sync.scheduler.check_invariants();
      }
      add_due(async, step);
      if (async.scheduler.has_unfinished_requests() || async.in_flight) async.step();
    }
    ASSERT_FALSE(sync.scheduler.has_unfinished_requests());
    ASSERT_FALSE(async.scheduler.has_unfinished_requests());
    for (size_t i = 0; i < plan.size(); ++i) {
      const std::string id = cat("r", i);
      EXPECT_EQ(async.reqs[id]->output_token_ids, sync.reqs[id]->output_token_ids) << id;
      EXPECT_EQ(async.reqs[id]->status, sync.reqs[id]->status) << id;
      EXPECT_EQ(async.reqs[id]->num_output_placeholders, 0) << id;
    }
    EXPECT_EQ(async.scheduler.kv_cache_manager().block_pool().num_free_blocks(), num_blocks - 1);
  }
}

TEST(AsyncScheduling, AbortsAndStopsWithTokensInFlightFreeEverything) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 10; ++trial) {
    const int num_blocks = 15 + rng() % 40;  // the longest request (50 tokens) fits alone
    AsyncHarness h(config(1 + rng() % 8, 8 + rng() % 40, 128), num_blocks, 4, rng() % 2);
    int next = 0;
    for (int step = 0; step < 300; ++step) {
      if (next < 30 && rng() % 3 == 0) {
        h.add(make_request(cat("r", next++), 1 + rng() % 30, 1 + rng() % 20, 100 + rng() % 5 * 7));
      }
      if (h.scheduler.has_unfinished_requests() || h.in_flight) h.step();
      if (rng() % 7 == 0 && next > 0) {  // an abort, or a stop string found by the frontend
        h.scheduler.finish_requests(std::vector<std::string>{cat("r", rng() % next)},
                                    rng() % 2 ? RequestStatus::kFinishedAborted
                                              : RequestStatus::kFinishedStopped);
        h.scheduler.check_invariants();
      }
    }
    h.run_to_completion();
    EXPECT_EQ(h.scheduler.kv_cache_manager().block_pool().num_free_blocks(), num_blocks - 1);
  }
}

}  // namespace
}  // namespace cvllm
