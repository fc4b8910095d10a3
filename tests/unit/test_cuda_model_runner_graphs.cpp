// Decode steps replayed from CUDA graphs against the same steps run eagerly, through the model
// runner on the tiny Llama (bf16 KV cache, so decode_attention serves every decode token).
// Batches of 5 requests pad to the recorded size 8, of 3 to 4.
//
// Without a GPU (CI) every test skips, saying why.
#include <gtest/gtest.h>

#include "graph_runner_harness.h"
#include "kernels/cuda/cuda_backend.h"

namespace cvllm {
namespace {

using testing::run_graph_test;

constexpr char kNoGpu[] = "no CUDA GPU available (CUDA graph tests need one; CI has none)";

// Runs the requests eagerly and with decode steps recorded at `sizes`, each on a fresh backend;
// tokens and logprobs must be bit-identical (the same kernels on the same rows: padding rows are
// separate rows). Returns the steps replayed.
int64_t expect_graphs_match_eager(bool batch_invariant, std::vector<int> sizes, DType kv_dtype) {
  std::map<std::string, std::vector<float>> eager_lp, replayed_lp;
  int64_t eager_steps = 0, graph_steps = 0;
  cuda::CudaBackend eager_backend(0, 2, batch_invariant);
  auto eager = run_graph_test(eager_backend, {}, &eager_steps, kv_dtype, &eager_lp);
  EXPECT_EQ(eager_steps, 0);
  cuda::CudaBackend graph_backend(0, 2, batch_invariant);
  auto replayed = run_graph_test(graph_backend, std::move(sizes), &graph_steps, kv_dtype,
                                 &replayed_lp);
  EXPECT_EQ(graph_backend.graph_replays(), graph_steps);
  EXPECT_EQ(eager.size(), static_cast<size_t>(testing::kGraphTestRequests));
  for (const auto& [id, toks] : eager) {
    EXPECT_EQ(toks.size(), static_cast<size_t>(testing::graph_test_max_tokens(id[1] - '0'))) << id;
    EXPECT_EQ(replayed[id], toks) << id;
    EXPECT_EQ(replayed_lp[id], eager_lp[id]) << id;
  }
  return graph_steps;
}

// Batch-invariant GEMMs: one algorithm per weight for every batch size, so padding a batch of 5
// to 8 cannot change a row.
TEST(CudaGraphs, ReplayedStepsMatchEagerOnesBitForBit) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  EXPECT_GT(expect_graphs_match_eager(true, {1, 2, 4, 8}, DType::kBF16), 0);
}

// The default backend: decode batches of up to 4 tokens run matrix-vector kernels, whose rows do
// not depend on the batch, so sizes 1, 2 and 4 alone keep the results bit-identical (the batch of
// 5 runs eagerly: no size 8).
TEST(CudaGraphs, MatrixVectorStepsMatchEagerOnesBitForBit) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  EXPECT_GT(expect_graphs_match_eager(false, {1, 2, 4}, DType::kBF16), 0);
}

// A pass that cannot be recorded (an f32 KV cache, which decode_attention does not read) leaves
// the runner eager, with the same results.
TEST(CudaGraphs, UnrecordablePassFallsBackToEager) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  EXPECT_EQ(expect_graphs_match_eager(false, {1, 2, 4, 8}, DType::kF32), 0);
}

// Async scheduling: each decode step is launched before the previous one's tokens reach the host,
// its input ids written on the device from the previous step's draws. The steps are the same as
// scheduled synchronously, so tokens and logprobs are bit-identical, eager and replayed.
TEST(CudaGraphs, AsyncSchedulingFeedsDrawnTokensOnTheDevice) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  std::map<std::string, std::vector<float>> sync_lp;
  int64_t sync_steps = 0;
  cuda::CudaBackend sync_backend(0, 2, false);
  auto sync = run_graph_test(sync_backend, {1, 2, 4}, &sync_steps, DType::kBF16, &sync_lp);
  for (bool graphs : {false, true}) {
    std::map<std::string, std::vector<float>> async_lp;
    int64_t graph_steps = 0, fed = 0;
    cuda::CudaBackend backend(0, 2, false);
    auto async = run_graph_test(backend, graphs ? std::vector<int>{1, 2, 4} : std::vector<int>{},
                                &graph_steps, DType::kBF16, &async_lp, &fed);
    EXPECT_GT(fed, 0) << "graphs " << graphs;
    if (graphs) {
      EXPECT_GT(graph_steps, 0);
    }
    for (const auto& [id, toks] : sync) {
      EXPECT_EQ(async[id], toks) << id << " graphs " << graphs;
      EXPECT_EQ(async_lp[id], sync_lp[id]) << id << " graphs " << graphs;
    }
  }
}

}  // namespace
}  // namespace cvllm
