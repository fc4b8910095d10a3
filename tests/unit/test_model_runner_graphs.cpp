// The model runner's recorded decode steps (CUDA graphs), on the CPU: a backend that "records" a
// pass by keeping its forward function and "replays" it on the padded batch, so CI checks the
// runner's side (which steps replay, padding to the recorded shape, picking the real rows). The
// CUDA backend's graphs themselves run in tests/golden/test_cuda_tiny_llama.cpp on a GPU.
#include <gtest/gtest.h>

#include <memory>

#include "graph_runner_harness.h"
#include "kernels/cpu/cpu_backend.h"

namespace cvllm {
namespace {

using testing::run_graph_test;

class RecordingBackend : public cpu::CpuBackend {
 public:
  RecordingBackend() : cpu::CpuBackend(2, cpu::MatmulPath::kFast) {}

  std::unique_ptr<CapturedForward> capture_forward(const ForwardBatch& batch,
                                                   const ForwardFn& forward) override {
    auto recorded = std::make_unique<Recorded>();
    recorded->forward = forward;
    recorded->shape = batch;
    ++captures;
    return recorded;
  }
  Tensor replay_forward(CapturedForward& captured, const ForwardBatch& batch) override {
    auto& recorded = dynamic_cast<Recorded&>(captured);
    EXPECT_EQ(batch.num_reqs(), recorded.shape.num_reqs());
    EXPECT_EQ(batch.num_tokens(), batch.num_reqs());
    EXPECT_EQ(batch.max_blocks_per_req, recorded.shape.max_blocks_per_req);
    // The recorded pass's output is every row's logits (the LM head is recorded too): the runner
    // replays only steps where each real row (padding writes no slot) samples, in order.
    int64_t real_rows = 0;
    for (int64_t slot : batch.slot_mapping) real_rows += slot >= 0 ? 1 : 0;
    EXPECT_EQ(static_cast<int64_t>(batch.logits_indices.size()), real_rows);
    for (size_t i = 0; i < batch.logits_indices.size(); ++i) EXPECT_EQ(batch.logits_indices[i], i);
    ++replays;
    std::unique_ptr<StepMetadata> step = prepare_step(batch);
    return recorded.forward(*step);
  }

  int captures = 0;
  int replays = 0;

 private:
  struct Recorded : CapturedForward {
    ForwardFn forward;
    ForwardBatch shape;
  };
};

TEST(ModelRunnerGraphs, ReplayedDecodeStepsGiveTheEagerTokens) {
  cpu::CpuBackend eager_backend(2, cpu::MatmulPath::kFast);
  int64_t eager_steps = 0;
  auto eager = run_graph_test(eager_backend, {}, &eager_steps);
  EXPECT_EQ(eager_steps, 0);

  // Sizes 2 and 8 only: batches of 1 pad to 2, of 3..5 to 8.
  RecordingBackend recording;
  int64_t graph_steps = 0;
  auto replayed = run_graph_test(recording, {8, 2}, &graph_steps);
  EXPECT_EQ(recording.captures, 2);
  EXPECT_GT(graph_steps, 0);
  EXPECT_EQ(recording.replays, graph_steps);
  ASSERT_EQ(eager.size(), static_cast<size_t>(testing::kGraphTestRequests));
  for (const auto& [id, toks] : eager) {
    EXPECT_EQ(toks.size(), static_cast<size_t>(testing::graph_test_max_tokens(id[1] - '0'))) << id;
    EXPECT_EQ(replayed[id], toks) << id;
  }
}

TEST(ModelRunnerGraphs, PadDecodeBatchFillsTheRecordedShape) {
  ForwardBatch b;
  b.input_ids = {7, 9};
  b.positions = {20, 3};
  b.slot_mapping = {52, 67};
  b.query_start_loc = {0, 1, 2};
  b.seq_lens = {21, 4};
  b.block_table = {3, 4, 5, 0};  // widths 2
  b.max_blocks_per_req = 2;
  b.logits_indices = {0, 1};
  pad_decode_batch(b, 4, 3);
  EXPECT_EQ(b.input_ids, (std::vector<int32_t>{7, 9, 0, 0}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{20, 3, 0, 0}));
  EXPECT_EQ(b.slot_mapping, (std::vector<int64_t>{52, 67, -1, -1}));
  EXPECT_EQ(b.query_start_loc, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(b.seq_lens, (std::vector<int32_t>{21, 4, 1, 1}));
  EXPECT_EQ(b.block_table, (std::vector<int32_t>{3, 4, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(b.max_blocks_per_req, 3);
  EXPECT_EQ(b.logits_indices, (std::vector<int32_t>{0, 1}));  // only the real rows

  ForwardBatch prefill = b;
  prefill.input_ids.push_back(1);  // a request with two tokens is not a decode batch
  EXPECT_THROW(pad_decode_batch(prefill, 8, 3), Error);
  ForwardBatch wide = b;
  EXPECT_THROW(pad_decode_batch(wide, 4, 2), Error);  // narrower than its block table
}

TEST(ModelRunnerGraphs, DefaultSizesFollowVllm) {
  EXPECT_EQ(default_graph_batch_sizes(1), (std::vector<int>{1}));
  EXPECT_EQ(default_graph_batch_sizes(3), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(default_graph_batch_sizes(20), (std::vector<int>{1, 2, 4, 8, 16, 24}));
  const std::vector<int> big = default_graph_batch_sizes(100000);
  EXPECT_EQ(big.back(), 512);
  EXPECT_EQ(big.size(), 3u + 64u);
}

}  // namespace
}  // namespace cvllm
