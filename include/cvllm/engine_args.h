// EngineArgs: options given when a model is loaded (vLLM's engine arguments). Designated
// initializers read like the Python keywords: `cvllm::LLM llm({.model = "..."})`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace cvllm {

struct EngineArgs {
  // A .gguf file, a local directory, or a name; empty means the bundled default model
  // (SmolLM2-135M-Instruct, fetched by scripts/setup.sh into ~/.cache/cvllm).
  std::string model;
  // Hub ids only: the branch, tag or commit of the Hugging Face cache snapshot (empty: "main").
  std::string revision;
  std::string tokenizer;             // empty: the model's own
  bool skip_tokenizer_init = false;  // prompts must be token ids; outputs carry no text
  std::string dtype = "auto";
  std::optional<int> max_model_len;  // default: the model's context length
  int max_num_seqs = 256;            // vLLM's CPU default for the LLM class
  int max_num_batched_tokens = 4096;
  int block_size = 16;
  bool enable_prefix_caching = true;
  bool enable_chunked_prefill = true;      // off: a prompt is prefilled in one step or waits
  std::string scheduling_policy = "fcfs";  // "fcfs" or "priority" (lower value first)
  int64_t seed = 0;
  // KV-cache size. 0: a fraction (cpu_kv_cache_fraction) of the memory available now, capped
  // at what max_num_seqs sequences of max_model_len tokens can use.
  int64_t kv_cache_memory_bytes = 0;
  double cpu_kv_cache_fraction = 0.25;
  int max_logprobs = 20;
  std::string generation_config = "auto";  // "auto": model defaults; "vllm": none
  // cvllm-specific: compute threads (0 = one per core) and CPU kernel path:
  // "fast" (8-bit activations, integer SIMD) or "reference" (dequantize to f32).
  int num_threads = 0;
  std::string cpu_kernels = "fast";
  // Where the model runs: "auto" (CUDA when this build has it and a GPU is present, else the
  // CPU), "cpu" or "cuda".
  std::string device = "auto";
  // CUDA: the fraction of the GPU's memory this engine may use for weights, activations and the
  // KV cache (vLLM's gpu_memory_utilization). Ignored when kv_cache_memory_bytes is set.
  double gpu_memory_utilization = 0.92;
  // CUDA: run every step eagerly instead of replaying decode steps from CUDA graphs recorded at
  // load time (vLLM's enforce_eager).
  bool enforce_eager = false;
  // Schedule and launch step N+1 while step N runs (vLLM's async_scheduling; default on). Off:
  // every step is scheduled after the previous one's output is processed.
  bool async_scheduling = true;
  bool disable_log_stats = true;
};

}  // namespace cvllm
