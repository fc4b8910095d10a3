#include "cli/commands.h"

namespace cvllm::cli {

std::set<std::string> engine_value_flags() {
  return {"model", "revision", "tokenizer", "max-model-len", "max-num-seqs", "max-num-batched-tokens",
          "block-size", "seed", "num-threads", "cpu-kernels", "kv-cache-memory-bytes", "dtype",
          "max-logprobs", "scheduling-policy", "generation-config", "device",
          "gpu-memory-utilization"};
}

std::set<std::string> engine_bool_flags() {
  return {"enable-prefix-caching", "enable-chunked-prefill", "skip-tokenizer-init",
          "enforce-eager", "async-scheduling"};
}

EngineArgs engine_args_from_flags(const Flags& f) {
  EngineArgs a;
  if (auto v = f.get("model")) a.model = *v;
  if (!f.positional().empty() && a.model.empty()) a.model = f.positional().front();
  if (auto v = f.get("revision")) a.revision = *v;
  if (auto v = f.get("tokenizer")) a.tokenizer = *v;
  if (auto v = f.get_int("max-model-len")) a.max_model_len = static_cast<int>(*v);
  if (auto v = f.get_int("max-num-seqs")) a.max_num_seqs = static_cast<int>(*v);
  if (auto v = f.get_int("max-num-batched-tokens")) a.max_num_batched_tokens = static_cast<int>(*v);
  if (auto v = f.get_int("block-size")) a.block_size = static_cast<int>(*v);
  if (auto v = f.get_int("seed")) a.seed = *v;
  if (auto v = f.get_int("num-threads")) a.num_threads = static_cast<int>(*v);
  if (auto v = f.get("cpu-kernels")) a.cpu_kernels = *v;
  if (auto v = f.get("device")) a.device = *v;
  if (auto v = f.get_double("gpu-memory-utilization")) a.gpu_memory_utilization = *v;
  if (auto v = f.get_int("kv-cache-memory-bytes")) a.kv_cache_memory_bytes = *v;
  if (auto v = f.get("dtype")) a.dtype = *v;
  if (auto v = f.get_int("max-logprobs")) a.max_logprobs = static_cast<int>(*v);
  if (auto v = f.get("scheduling-policy")) a.scheduling_policy = *v;
  if (auto v = f.get("generation-config")) a.generation_config = *v;
  a.enable_prefix_caching = f.get_bool("enable-prefix-caching", true);
  a.enable_chunked_prefill = f.get_bool("enable-chunked-prefill", true);
  a.skip_tokenizer_init = f.get_bool("skip-tokenizer-init", false);
  a.enforce_eager = f.get_bool("enforce-eager", false);
  a.async_scheduling = f.get_bool("async-scheduling", true);
  return a;
}

}  // namespace cvllm::cli
