// The engine loop on its own thread: many submitting threads, streamed DELTA outputs that add up
// to the offline result, abort freeing KV blocks, synchronous validation errors, shutdown.
#include <gtest/gtest.h>

#include <thread>

#include "cvllm/cvllm.h"
#include "engine/async_engine.h"
#include "unit/tiny_model.h"

namespace cvllm {
namespace {

using testing::tiny_args;

std::vector<int32_t> ids(int len, int salt) {
  std::vector<int32_t> v;
  for (int i = 0; i < len; ++i) v.push_back(3 + (i * 31 + salt * 17) % 290);
  return v;
}

SamplingParams streaming_greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.output_kind = RequestOutputKind::kDelta;
  return p;
}

// Reads a stream to the end; returns the concatenated token ids.
std::vector<int32_t> drain(RequestStream& stream, bool* finished = nullptr) {
  std::vector<int32_t> tokens;
  RequestOutput out;
  while (true) {
    RequestStream::Status st = stream.next(out, std::chrono::milliseconds(10000));
    if (st == RequestStream::Status::kTimeout) {
      ADD_FAILURE() << "stream " << stream.request_id() << " stalled";
      break;
    }
    if (st == RequestStream::Status::kFinished) break;
    tokens.insert(tokens.end(), out.outputs[0].token_ids.begin(), out.outputs[0].token_ids.end());
    if (finished) *finished = out.finished;
  }
  return tokens;
}

TEST(AsyncEngine, ConcurrentClientsGetTheOfflineResult) {
  LLM offline(tiny_args());
  AsyncEngine engine(tiny_args());
  constexpr int kClients = 16;
  std::vector<std::vector<int32_t>> got(kClients), want(kClients);
  for (int i = 0; i < kClients; ++i) {
    SamplingParams p = streaming_greedy(12);
    p.output_kind = RequestOutputKind::kFinalOnly;
    want[i] = offline.generate(ids(5 + i, i), p, false)[0].outputs[0].token_ids;
  }
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto stream = engine.generate("req-" + std::to_string(i), ids(5 + i, i), streaming_greedy(12));
      bool finished = false;
      got[i] = drain(*stream, &finished);
      EXPECT_TRUE(finished);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(got, want);
  // The snapshot is refreshed after the outputs of a step are delivered: give the loop a moment.
  for (int i = 0; i < 200 && engine.snapshot().scheduler.kv_cache_usage > 0.0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EngineSnapshot s = engine.snapshot();
  EXPECT_EQ(s.num_requests_finished, kClients);
  EXPECT_EQ(s.generation_tokens_total, kClients * 12);
  EXPECT_DOUBLE_EQ(s.scheduler.kv_cache_usage, 0.0);
}

TEST(AsyncEngine, AbortStopsTheRequestAndFreesBlocks) {
  AsyncEngine engine(tiny_args());
  auto stream = engine.generate("long", ids(40, 1), streaming_greedy(200));
  RequestOutput out;
  ASSERT_EQ(stream->next(out, std::chrono::milliseconds(10000)), RequestStream::Status::kOutput);
  engine.abort("long");
  std::vector<int32_t> rest = drain(*stream);
  EXPECT_LT(rest.size() + out.outputs[0].token_ids.size(), 200u);
  for (int i = 0; i < 100 && engine.snapshot().scheduler.num_running_reqs > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(engine.snapshot().scheduler.num_running_reqs, 0);
  EXPECT_DOUBLE_EQ(engine.snapshot().scheduler.kv_cache_usage, 0.0);
  engine.abort("never-existed");  // ignored
}

TEST(AsyncEngine, InvalidRequestsFailOnTheCallersThread) {
  AsyncEngine engine(tiny_args());
  SamplingParams bad;
  bad.top_p = 2.0;
  EXPECT_THROW(engine.generate("x", ids(3, 0), bad), ValueError);
  EXPECT_THROW(engine.generate("y", std::vector<int32_t>{}, streaming_greedy(2)), ValueError);
  auto ok = engine.generate("z", ids(3, 0), streaming_greedy(200));
  EXPECT_THROW(engine.generate("z", ids(3, 0), streaming_greedy(2)), ValueError);  // id in use
  EXPECT_EQ(drain(*ok).size(), 200u);
  EXPECT_TRUE(engine.healthy());
}

TEST(AsyncEngine, ShutdownDrainsOrAborts) {
  {
    AsyncEngine engine(tiny_args());
    auto stream = engine.generate("a", ids(4, 2), streaming_greedy(30));
    engine.shutdown(/*drain=*/true);
    EXPECT_EQ(drain(*stream).size(), 30u);
    EXPECT_THROW(engine.generate("b", ids(4, 2), streaming_greedy(3)), Error);
  }
  {
    AsyncEngine engine(tiny_args());
    auto stream = engine.generate("a", ids(4, 2), streaming_greedy(100000 % 200 + 50));
    engine.shutdown(/*drain=*/false);
    EXPECT_LT(drain(*stream).size(), 250u);  // closed without running to the end
  }
}

}  // namespace
}  // namespace cvllm
