// Rotary position embedding applied in place to query and key heads.
//
// Two layouts pair different dimensions of a head: kNeox ("rotate half", HF Llama, Qwen2) rotates
// (i, i + rot_dim/2); kInterleaved (GGUF llama checkpoints, whose Q/K rows were permuted by the
// converter; GPT-J) rotates (2i, 2i+1). Frequencies are given explicitly so every scaling variant
// (linear, llama3, yarn, dynamic) is only a different inv_freq table / attention factor.
#pragma once

#include <cstdint>

namespace cvllm {
class ThreadPool;
}

namespace cvllm::cpu {

enum class RopeLayout { kNeox, kInterleaved };

// q: [num_tokens, num_heads, head_size], k: [num_tokens, num_kv_heads, head_size];
// positions: [num_tokens]; inv_freq: [rot_dim / 2]; only the first rot_dim dims rotate.
// cos/sin are multiplied by mscale (yarn's attention factor; 1 otherwise).
void apply_rotary(float* q, float* k, const int32_t* positions, int64_t num_tokens,
                  int64_t num_heads, int64_t num_kv_heads, int64_t head_size, int64_t rot_dim,
                  const float* inv_freq, RopeLayout layout, float mscale, ThreadPool* pool);

}  // namespace cvllm::cpu
