// Every tiny random Hugging Face checkpoint (tests/golden/data/hf/, one per architecture and
// variant: Llama, Mistral, Qwen2, Qwen3, Phi-3, OPT, GPT-2, Gemma 3) on the CUDA backend: the
// logits of every fixture prompt against transformers' (the fixture) and against our CPU
// backend on the same weights, and greedy continuations through cvllm::LLM with device "cuda".
//
// Tolerances are the CUDA tiny-Llama test's: the GPU holds weights in bf16 (8 significant bits),
// so logits differ from the f32 references by about 1e-3..1e-2 relative; a greedy token may differ
// only where transformers itself barely preferred its choice.
//
// Without a GPU (CI) every test skips, saying why.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "cvllm/cvllm.h"
#include "golden_util.h"
#include "kernels/cuda/cuda_backend.h"
#include "loader/hf_weight_source.h"
#include "loader/safetensors.h"

namespace cvllm {
namespace {

using testing::golden_path;
using testing::load_json;
using testing::to_floats;

constexpr double kLogitRelTol = 3e-2;   // ||cuda - ref|| / ||ref|| over a prompt's last logits
constexpr double kNearTieMargin = 0.5;  // as the CUDA tiny-Llama test
constexpr char kNoGpu[] = "no CUDA GPU available (CUDA model tests need one; CI has none)";

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Last-position logits of one prompt through the model's forward pass on `backend`.
std::vector<float> last_logits(const std::string& dir, Backend& backend,
                               const std::vector<int32_t>& ids, DType kv_dtype) {
  ModelConfig config = model_config_from_hf(dir);
  auto checkpoint =
      std::make_shared<const SafetensorsCheckpoint>(SafetensorsCheckpoint::open_dir(dir));
  HfWeightSource weights(checkpoint, hf_weight_name_map(config.architecture));
  std::unique_ptr<CausalLM> model =
      create_model(config, weights, backend, CheckpointFormat::kHuggingFace);
  std::vector<float> logits =
      testing::forward_one_prompt(*model, backend, config, ids, 16, kv_dtype);
  return std::vector<float>(logits.end() - config.vocab_size, logits.end());
}

class CudaHfCheckpoint : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!cuda::cuda_device_available()) GTEST_SKIP() << kNoGpu;
  }
  std::string dir() const { return golden_path("hf/" + GetParam()); }
  nlohmann::json fixture() const { return load_json(golden_path("hf/" + GetParam() + ".json")); }
};

TEST_P(CudaHfCheckpoint, LogitsMatchTransformersAndTheCpuBackend) {
  nlohmann::json fx = fixture();
  cuda::CudaBackend gpu(0, 2);
  cpu::CpuBackend cpu(2, cpu::MatmulPath::kReference);
  for (const auto& prompt : fx["prompts"]) {
    std::vector<int32_t> ids = prompt["token_ids"].get<std::vector<int32_t>>();
    std::vector<float> got = last_logits(dir(), gpu, ids, DType::kBF16);
    const double vs_transformers = rel_error(got, to_floats(prompt["last_logits"]));
    const double vs_cpu = rel_error(got, last_logits(dir(), cpu, ids, DType::kF32));
    EXPECT_LE(vs_transformers, kLogitRelTol) << ids.size() << " tokens, vs transformers";
    EXPECT_LE(vs_cpu, kLogitRelTol) << ids.size() << " tokens, vs the CPU backend";
    std::cout << "[ note ] " << GetParam() << ": " << ids.size() << " tokens, relative error vs "
              << "transformers " << vs_transformers << ", vs CPU " << vs_cpu << "\n";
  }
}

TEST_P(CudaHfCheckpoint, GreedyThroughLLMMatchesTransformersUpToNearTies) {
  nlohmann::json fx = fixture();
  EngineArgs args;
  args.model = dir();
  args.skip_tokenizer_init = true;
  args.device = "cuda";
  args.num_threads = 2;
  args.kv_cache_memory_bytes = 64 << 20;
  LLM llm(args);
  std::vector<Prompt> prompts;
  for (const auto& p : fx["prompts"]) prompts.emplace_back(p["token_ids"].get<std::vector<int32_t>>());
  SamplingParams greedy;
  greedy.temperature = 0.0;
  greedy.max_tokens = fx["num_new_tokens"].get<int>();
  greedy.ignore_eos = true;
  std::vector<RequestOutput> outputs = llm.generate(prompts, greedy, false);
  ASSERT_EQ(outputs.size(), prompts.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    testing::expect_greedy_up_to_near_tie(fx["prompts"][i], outputs[i].outputs[0].token_ids,
                                          kNearTieMargin, cat(GetParam(), " prompt ", i));
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaHfCheckpoint,
                         ::testing::Values("llama_f32", "llama_bf16_tied", "mistral_swa",
                                           "qwen2_f32", "qwen3_f16", "phi3_bf16", "opt_f32",
                                           "opt_post_ln_bf16", "gpt2_f16", "gemma3_f32",
                                           "gemma3_bf16_softcap"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cvllm
