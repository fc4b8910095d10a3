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

void expect_same(const std::map<std::string, std::vector<int32_t>>& eager,
                 const std::map<std::string, std::vector<int32_t>>& replayed,
                 const std::map<std::string, std::vector<float>>& eager_lp,
                 const std::map<std::string, std::vector<float>>& replayed_lp) {
  ASSERT_EQ(eager.size(), static_cast<size_t>(testing::kGraphTestRequests));
  for (const auto& [id, toks] : eager) {
    EXPECT_EQ(toks.size(), static_cast<size_t>(testing::graph_test_max_tokens(id[1] - '0'))) << id;
    EXPECT_EQ(replayed.at(id), toks) << id;
    // Bit-identical: the same kernels on the same rows (padding rows are separate rows).
    EXPECT_EQ(replayed_lp.at(id), eager_lp.at(id)) << id;
  }
}

// Batch-invariant GEMMs: one algorithm per weight for every batch size, so padding a batch of 5
// to 8 cannot change a row.
TEST(CudaGraphs, ReplayedStepsMatchEagerOnesBitForBit) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  std::map<std::string, std::vector<float>> eager_lp, replayed_lp;
  int64_t eager_steps = 0, graph_steps = 0;
  cuda::CudaBackend eager_backend(0, 2, /*batch_invariant_gemm=*/true);
  auto eager = run_graph_test(eager_backend, {}, &eager_steps, DType::kBF16, &eager_lp);
  EXPECT_EQ(eager_steps, 0);
  cuda::CudaBackend graph_backend(0, 2, /*batch_invariant_gemm=*/true);
  auto replayed = run_graph_test(graph_backend, {1, 2, 4, 8}, &graph_steps, DType::kBF16,
                                 &replayed_lp);
  EXPECT_GT(graph_steps, 0);
  EXPECT_EQ(graph_backend.graph_replays(), graph_steps);
  expect_same(eager, replayed, eager_lp, replayed_lp);
}

// The default backend: decode batches of up to 4 tokens run matrix-vector kernels, whose rows do
// not depend on the batch, so sizes 1, 2 and 4 alone keep the results bit-identical (the batch of
// 5 runs eagerly: no size 8).
TEST(CudaGraphs, MatrixVectorStepsMatchEagerOnesBitForBit) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  std::map<std::string, std::vector<float>> eager_lp, replayed_lp;
  int64_t eager_steps = 0, graph_steps = 0;
  cuda::CudaBackend eager_backend(0, 2);
  auto eager = run_graph_test(eager_backend, {}, &eager_steps, DType::kBF16, &eager_lp);
  cuda::CudaBackend graph_backend(0, 2);
  auto replayed = run_graph_test(graph_backend, {1, 2, 4}, &graph_steps, DType::kBF16,
                                 &replayed_lp);
  EXPECT_GT(graph_steps, 0);
  EXPECT_EQ(graph_backend.graph_replays(), graph_steps);
  expect_same(eager, replayed, eager_lp, replayed_lp);
}

// A pass that cannot be recorded (an f32 KV cache, which decode_attention does not read) leaves
// the runner eager, with the same results.
TEST(CudaGraphs, UnrecordablePassFallsBackToEager) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  std::map<std::string, std::vector<float>> eager_lp, replayed_lp;
  int64_t eager_steps = 0, graph_steps = 0;
  cuda::CudaBackend eager_backend(0, 2);
  auto eager = run_graph_test(eager_backend, {}, &eager_steps, DType::kF32, &eager_lp);
  cuda::CudaBackend graph_backend(0, 2);
  auto replayed = run_graph_test(graph_backend, {1, 2, 4, 8}, &graph_steps, DType::kF32,
                                 &replayed_lp);
  EXPECT_EQ(graph_steps, 0);
  EXPECT_EQ(graph_backend.graph_replays(), 0);
  expect_same(eager, replayed, eager_lp, replayed_lp);
}

}  // namespace
}  // namespace cvllm
