#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/half.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

// Independent partial sums so the compiler can vectorize without reassociating (-ffast-math).
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += acc[j];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

inline float dot_f16(const float* a, const uint16_t* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * f16_to_f32(b[i + j]);
  }
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += acc[j];
  for (; i < n; ++i) sum += a[i] * f16_to_f32(b[i]);
  return sum;
}

inline void axpy(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

inline void axpy_f16(float* y, float a, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * f16_to_f32(x[i]);
}

struct QueryTask {
  int64_t token;
  int64_t req;
  int64_t position;
};

}  // namespace

void write_kv_cache(const float* k, const float* v, void* k_cache, void* v_cache,
                    DType cache_dtype, const int64_t* slot_mapping, int64_t num_tokens,
                    int64_t num_kv_heads, int64_t head_size, ThreadPool* pool) {
  // Any other dtype would otherwise be written as f16 bits.
  CVLLM_CHECK(cache_dtype == DType::kF32 || cache_dtype == DType::kF16,
              "KV cache dtype must be f32 or f16");
  int64_t row = num_kv_heads * head_size;
  for (int64_t t = 0; t < num_tokens; ++t) {
    int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    const float* ks = k + t * row;
    const float* vs = v + t * row;
    if (cache_dtype == DType::kF32) {
      std::copy(ks, ks + row, static_cast<float*>(k_cache) + slot * row);
      std::copy(vs, vs + row, static_cast<float*>(v_cache) + slot * row);
    } else {
      uint16_t* kd = static_cast<uint16_t*>(k_cache) + slot * row;
      uint16_t* vd = static_cast<uint16_t*>(v_cache) + slot * row;
      for (int64_t i = 0; i < row; ++i) {
        kd[i] = f32_to_f16(ks[i]);
        vd[i] = f32_to_f16(vs[i]);
      }
    }
  }
}

void paged_attention(const float* q, const void* k_cache, const void* v_cache, DType cache_dtype,
                     float* out, const int32_t* query_start_loc, const int32_t* seq_lens,
                     const int32_t* block_table, int64_t max_blocks_per_req, int64_t num_reqs,
                     const AttentionShape& s, ThreadPool* pool) {
  CVLLM_CHECK(cache_dtype == DType::kF32 || cache_dtype == DType::kF16,
              "KV cache dtype must be f32 or f16");
  CVLLM_CHECK(s.num_heads % s.num_kv_heads == 0, "num_heads must be a multiple of num_kv_heads");
  int64_t num_tokens = query_start_loc[num_reqs];
  std::vector<QueryTask> tasks;
  tasks.reserve(num_tokens);
  int64_t max_seq_len = 0;
  for (int64_t r = 0; r < num_reqs; ++r) {
    int64_t q_len = query_start_loc[r + 1] - query_start_loc[r];
    max_seq_len = std::max<int64_t>(max_seq_len, seq_lens[r]);
    for (int64_t j = 0; j < q_len; ++j) {
      tasks.push_back({query_start_loc[r] + j, r, seq_lens[r] - q_len + j});
    }
  }
  const int64_t group = s.num_heads / s.num_kv_heads;
  const int64_t kv_row = s.num_kv_heads * s.head_size;
  const bool f16 = cache_dtype == DType::kF16;

  auto run = [&](int64_t begin, int64_t end, int) {
    std::vector<float> scores(static_cast<size_t>(max_seq_len));
    for (int64_t item = begin; item < end; ++item) {
      const QueryTask& task = tasks[item / s.num_heads];
      int64_t h = item % s.num_heads;
      int64_t kvh = h / group;
      const float* qh = q + (task.token * s.num_heads + h) * s.head_size;
      float* oh = out + (task.token * s.num_heads + h) * s.head_size;
      const int32_t* blocks = block_table + task.req * max_blocks_per_req;
      int64_t first = 0;
      if (s.sliding_window > 0) first = std::max<int64_t>(0, task.position - s.sliding_window + 1);
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t p = first; p <= task.position; ++p) {
        int64_t slot = static_cast<int64_t>(blocks[p / s.block_size]) * s.block_size + p % s.block_size;
        int64_t off = slot * kv_row + kvh * s.head_size;
        float sc = f16 ? dot_f16(qh, static_cast<const uint16_t*>(k_cache) + off, s.head_size)
                       : dot(qh, static_cast<const float*>(k_cache) + off, s.head_size);
        sc *= s.scale;
        if (s.logit_softcap > 0.0f) sc = s.logit_softcap * std::tanh(sc / s.logit_softcap);
        scores[p] = sc;
        max_score = std::max(max_score, sc);
      }
      float denom = 0.0f;
      for (int64_t p = first; p <= task.position; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        denom += scores[p];
      }
      std::fill(oh, oh + s.head_size, 0.0f);
      float inv = 1.0f / denom;
      for (int64_t p = first; p <= task.position; ++p) {
        int64_t slot = static_cast<int64_t>(blocks[p / s.block_size]) * s.block_size + p % s.block_size;
        int64_t off = slot * kv_row + kvh * s.head_size;
        if (f16) {
          axpy_f16(oh, scores[p] * inv, static_cast<const uint16_t*>(v_cache) + off, s.head_size);
        } else {
          axpy(oh, scores[p] * inv, static_cast<const float*>(v_cache) + off, s.head_size);
        }
      }
    }
  };
  int64_t num_items = static_cast<int64_t>(tasks.size()) * s.num_heads;
  if (pool == nullptr) {
    run(0, num_items, 0);
  } else {
    pool->parallel_for(num_items, run);
  }
}

}  // namespace cvllm::cpu
