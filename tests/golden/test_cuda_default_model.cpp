// The default model (SmolLM2-135M-Instruct, Q4_1) on the CUDA backend: its greedy continuations of
// the fixture's 10 prompts (data/smollm2_q4_1_greedy.json, transformers on the same GGUF) against
// the CPU backend's reference kernels, which reproduce the fixture exactly (test_model_smollm2).
// The GPU holds the dequantized weights in bf16, so a token may differ only at a near tie of the
// reference, and the rest of that continuation is then not compared.
//
// Skips without a GPU (CI) or without the model. The GPU machine takes at most 64 MiB of files a
// call, so the 98 MB file goes in parts (scripts/device_test.sh, DEFAULT_MODEL_PARTS).
#include <gtest/gtest.h>

#include <filesystem>

#include "cvllm/cvllm.h"
#include "golden_util.h"
#include "kernels/cuda/cuda_backend.h"
#include "loader/model_resolver.h"
#include "real_model_checks.h"

namespace cvllm {
namespace {

using testing::golden_path;
using testing::greedy_with_logprobs;
using testing::load_json;

constexpr double kNearTieMargin = 0.5;  // nats, as the CUDA tiny-model tests

TEST(CudaDefaultModel, GreedyMatchesTheCpuBackendUpToNearTies) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << "no CUDA GPU available (CI has none)";
  if (!std::filesystem::exists(default_model_path())) {
    GTEST_SKIP() << "default model not found at " << default_model_path();
  }
  nlohmann::json fixture = load_json(golden_path("smollm2_q4_1_greedy.json"));
  std::vector<Prompt> prompts;
  for (const auto& c : fixture["cases"]) {
    prompts.emplace_back(c["prompt_token_ids"].get<std::vector<int32_t>>());
  }
  EngineArgs a;
  a.max_model_len = 1024;
  a.kv_cache_memory_bytes = 256 << 20;
  a.cpu_kernels = "reference";
  a.device = "cpu";
  SamplingParams params = greedy_with_logprobs();
  params.prompt_logprobs.reset();
  {
    LLM cpu(a);
    std::vector<RequestOutput> outputs = cpu.generate(prompts, params, false);
    ASSERT_EQ(outputs.size(), fixture["cases"].size());
    for (size_t i = 0; i < outputs.size(); ++i) {
      EXPECT_EQ(outputs[i].outputs[0].token_ids,
                fixture["cases"][i]["output_token_ids"].get<std::vector<int32_t>>())
          << "CPU reference kernels, case " << i;
    }
  }
  a.device = "cuda";
  LLM gpu(a);
  testing::expect_fast_kernels_agree(gpu, prompts, fixture["cases"], kNearTieMargin, "CUDA backend");
}

}  // namespace
}  // namespace cvllm
