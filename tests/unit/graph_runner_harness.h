// Drives a ModelRunner (with a Scheduler, through EngineCore) over the tiny Llama on a given
// backend, with or without recorded decode steps: shared by the CPU test of the runner's graph path
// and the CUDA one.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/scheduler.h"
#include "engine/engine_core.h"
#include "loader/gguf.h"
#include "loader/weight_source.h"
#include "models/registry.h"
#include "runner/model_runner.h"
#include "tiny_model.h"

namespace cvllm::testing {

constexpr int kGraphTestRequests = 5;
// Request i (named "r<i>") generates this many tokens.
inline int graph_test_max_tokens(int i) { return 10 + 3 * i; }

// Greedy continuations of five prompts of different lengths, run to the end on `backend`, with
// decode steps recorded at `graph_sizes` (empty: eager). Returns each request's tokens; their
// logprobs go to `logprobs` when given. With `fed_tokens`, the steps are scheduled asynchronously
// and it receives the count of tokens the runner fed to a pass on the device.
inline std::map<std::string, std::vector<int32_t>> run_graph_test(
    Backend& backend, std::vector<int> graph_sizes, int64_t* graph_steps,
    DType kv_dtype = DType::kF32, std::map<std::string, std::vector<float>>* logprobs = nullptr,
    int64_t* fed_tokens = nullptr) {
  std::shared_ptr<GgufFile> file = GgufFile::open(tiny_model());
  ModelConfig config = model_config_from_gguf(*file);
  GgufWeightSource weights(file);
  std::unique_ptr<CausalLM> model = create_model(config, weights, backend, CheckpointFormat::kGguf);
  SchedulerConfig sched;
  sched.max_model_len = 128;
  sched.max_num_batched_tokens = 64;  // prompts are chunked beside the decode tokens
  sched.async_scheduling = fed_tokens != nullptr;
  const int num_blocks = 64, block_size = 16;
  RunnerConfig rc;
  rc.block_size = block_size;
  rc.num_kv_blocks = num_blocks;
  rc.max_model_len = sched.max_model_len;
  rc.kv_cache_dtype = kv_dtype;
  rc.graph_batch_sizes = std::move(graph_sizes);
  EngineCore core(std::make_unique<Scheduler>(sched, num_blocks, block_size, true),
                  std::make_unique<ModelRunner>(*model, backend, rc));
  for (int i = 0; i < kGraphTestRequests; ++i) {
    auto params = std::make_shared<SamplingParams>();
    params->temperature = 0.0;
    params->max_tokens = graph_test_max_tokens(i);
    params->ignore_eos = true;
    params->logprobs = 0;  // the sampled token's
    auto r = std::make_shared<Request>("r" + std::to_string(i), prompt_ids(5 + 11 * i, i),
                                       params, std::nullopt, 0.0, 0);
    r->max_tokens = *params->max_tokens;
    core.add_request(r);
  }
  std::map<std::string, std::vector<int32_t>> tokens;
  for (int guard = 0; core.has_unfinished_requests() && guard < 1000; ++guard) {
    for (const EngineCoreOutput& o : core.step()) {
      tokens[o.request_id].insert(tokens[o.request_id].end(), o.new_token_ids.begin(),
                                  o.new_token_ids.end());
      for (const TokenLogprobs& lp : o.new_logprobs) {
        if (logprobs != nullptr) (*logprobs)[o.request_id].push_back(lp.sampled_logprob);
      }
    }
  }
  EXPECT_FALSE(core.has_unfinished_requests());
  *graph_steps = core.runner().num_graph_steps();
  if (fed_tokens != nullptr) *fed_tokens = core.runner().num_fed_tokens();
  return tokens;
}

}  // namespace cvllm::testing
