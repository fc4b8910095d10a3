// The tiny random-weight Llama the engine-level unit tests run on (tests/golden/data, vocabulary
// 300: byte b is id 3 + b), with small engine arguments and deterministic prompts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cvllm/engine_args.h"

namespace cvllm::testing {

inline std::string tiny_model() {
  return std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/tiny_llama_q8_0.gguf";
}

inline EngineArgs tiny_args() {
  EngineArgs a;
  a.model = tiny_model();
  a.num_threads = 2;
  a.kv_cache_memory_bytes = 16 << 20;
  return a;
}

// `len` ids in the vocabulary, different for each `salt`.
inline std::vector<int32_t> prompt_ids(int len, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < len; ++i) ids.push_back(3 + (i * 37 + salt * 101) % 290);
  return ids;
}

}  // namespace cvllm::testing
