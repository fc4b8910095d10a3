// Paged attention on the CPU: K/V live in a block-paged cache and each request finds its keys
// through its row of the block table. Prefill chunks and decode tokens of many requests ride in
// one flat batch; attention is causal within each request's new tokens.
//
// Token slot s lives in block s / block_size at offset s % block_size. Per layer, in f32 or f16:
//   K: [num_blocks, num_kv_heads, head_size, block_size]  (each block's keys transposed, so the
//      same dimension of consecutive keys is contiguous: scores of 16 keys form one SIMD vector)
//   V: [num_blocks, num_kv_heads, block_size, head_size]
// Both hold num_blocks * block_size * num_kv_heads * head_size elements.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace cvllm {
class ThreadPool;
}

namespace cvllm::cpu {

// Element index of dimension e of kv_head's key / value at a slot, in the layout above.
inline int64_t k_cache_index(int64_t slot, int64_t kv_head, int64_t e, int64_t num_kv_heads,
                             int64_t head_size, int64_t block_size) {
  return ((slot / block_size * num_kv_heads + kv_head) * head_size + e) * block_size + slot % block_size;
}
inline int64_t v_cache_index(int64_t slot, int64_t kv_head, int64_t e, int64_t num_kv_heads,
                             int64_t head_size, int64_t block_size) {
  return ((slot / block_size * num_kv_heads + kv_head) * block_size + slot % block_size) * head_size + e;
}

// k, v: [num_tokens, num_kv_heads, head_size]; slot_mapping: [num_tokens] (-1 = skip, e.g. padding)
void write_kv_cache(const float* k, const float* v, void* k_cache, void* v_cache,
                    DType cache_dtype, const int64_t* slot_mapping, int64_t num_tokens,
                    int64_t num_kv_heads, int64_t head_size, int64_t block_size, ThreadPool* pool);

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t block_size = 16;
  float scale = 1.0f;           // usually 1/sqrt(head_size)
  float logit_softcap = 0.0f;   // > 0: scores = softcap * tanh(scores / softcap) (Gemma 2)
  int64_t sliding_window = -1;  // > 0: attend only to the last `sliding_window` positions
};

// out[t, h, :] = softmax(q[t, h, :] . K^T * scale) V over the request's keys at positions
// [0, pos(t)], pos(t) = seq_len - query_len + (t - query_start).
// q, out: [num_tokens, num_heads, head_size]; query_start_loc: [num_reqs + 1];
// seq_lens: [num_reqs] (tokens in the cache after this step, new ones included);
// block_table: [num_reqs, max_blocks_per_req].
void paged_attention(const float* q, const void* k_cache, const void* v_cache, DType cache_dtype,
                     float* out, const int32_t* query_start_loc, const int32_t* seq_lens,
                     const int32_t* block_table, int64_t max_blocks_per_req, int64_t num_reqs,
                     const AttentionShape& shape, ThreadPool* pool);

}  // namespace cvllm::cpu
