#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/vec_math.h"
#include "tensor/half.h"
#include "util/error.h"
#include "util/thread_pool.h"

// Flash-attention-style CPU kernel. Work is cut into items of (request, KV head, tile of query
// tokens, chunk of key positions); an item loads each key/value row once and uses it for every
// query row of the tile (all query heads of the KV group times the tile's tokens), keeping an
// online softmax per row. Key chunks are fixed 256-position windows, so how the work is split
// never depends on the batch or the thread count: results are identical alone or batched, with
// any number of threads. Partial results of a row's chunks are merged in chunk order.
//
// The hot loops use GCC vector extensions (16 floats as one value); the item kernel is compiled
// for AVX-512, AVX2 and baseline x86-64 and the best is picked at load time (target_clones).


namespace cvllm::cpu {
namespace {

constexpr int64_t kKeyChunk = 256;  // key positions per work item
constexpr int64_t kTileRows = 32;   // target query rows (tokens x group heads) per work item
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// acc[0..d) += sum_j w[j] * v[j][0..d), rows of v `d` apart. Chunks of 64 dimensions stay in four
// registers across the keys, so the loop is bound by arithmetic, not store-to-load latency.
CVLLM_VECTOR_INLINE void accumulate_values(float* acc, const float* w, const float* v, int64_t n, int64_t d) {
  int64_t e0 = 0;
  for (; e0 + 4 * kLanes <= d; e0 += 4 * kLanes) {
    v16f a0 = load16(acc + e0), a1 = load16(acc + e0 + 16), a2 = load16(acc + e0 + 32),
         a3 = load16(acc + e0 + 48);
    for (int64_t j = 0; j < n; ++j) {
      const float* vr = v + j * d + e0;
      const float wj = w[j];
      a0 += wj * load16(vr);
      a1 += wj * load16(vr + 16);
      a2 += wj * load16(vr + 32);
      a3 += wj * load16(vr + 48);
    }
    store16(acc + e0, a0);
    store16(acc + e0 + 16, a1);
    store16(acc + e0 + 32, a2);
    store16(acc + e0 + 48, a3);
  }
  for (int64_t j = 0; j < n && e0 < d; ++j) {
    const float wj = w[j];
    const float* vr = v + j * d;
    for (int64_t e = e0; e < d; ++e) acc[e] += wj * vr[e];
  }
}

// Scores of 16 consecutive keys for one query row: q . K^T with K^T given as [d][kt_stride].
// Four independent accumulators keep the FMA units busy.
CVLLM_VECTOR_INLINE v16f score16(const float* q, const float* kt, int64_t kt_stride, int64_t d) {
  v16f p0{}, p1{}, p2{}, p3{};
  int64_t e = 0;
  for (; e + 4 <= d; e += 4) {
    p0 += q[e] * load16(kt + e * kt_stride);
    p1 += q[e + 1] * load16(kt + (e + 1) * kt_stride);
    p2 += q[e + 2] * load16(kt + (e + 2) * kt_stride);
    p3 += q[e + 3] * load16(kt + (e + 3) * kt_stride);
  }
  for (; e < d; ++e) p0 += q[e] * load16(kt + e * kt_stride);
  return (p0 + p1) + (p2 + p3);
}

struct WorkItem {
  int32_t req;
  int32_t kv_head;
  int32_t token_begin;  // flat-batch token range of the query tile
  int32_t token_end;
  int32_t key_begin;  // key positions [key_begin, key_end)
  int32_t key_end;
  int64_t partial;  // first row of this item's partial results
};

struct Partial {  // per (item, query row): running max, sum of exponentials
  float max;
  float sum;
};

// One work item: online softmax over the item's keys for every query row of the tile; writes the
// unnormalized accumulator and (max, sum) per row.
CVLLM_VECTOR_CLONES
void run_item(const WorkItem& it, const float* q, const void* k_cache, const void* v_cache,
              bool f16, const int32_t* query_start_loc, const int32_t* seq_lens,
              const int32_t* block_table, int64_t max_blocks, const AttentionShape& s,
              Partial* partials, float* acc_out, std::vector<float>& scratch) {
  const int64_t d = s.head_size;
  const int64_t bs = s.block_size;
  const int64_t group = s.num_heads / s.num_kv_heads;
  const int64_t num_tokens = it.token_end - it.token_begin;
  const int64_t rows = num_tokens * group;
  const int32_t q_start = query_start_loc[it.req];
  const int32_t q_len = query_start_loc[it.req + 1] - q_start;
  const int32_t* blocks = block_table + it.req * max_blocks;

  // scratch: K^T of up to 16 keys [d][16] and their V [16][d], for groups that cannot be read in
  // place (f16 cache, partial or odd-sized blocks). The cache stores K transposed per block so a
  // row's 16 scores accumulate in SIMD lanes.
  scratch.resize(static_cast<size_t>(2 * kLanes * d + kLanes));
  float* ktbuf = scratch.data();
  float* vbuf = ktbuf + kLanes * d;

  std::vector<int64_t> row_pos(rows);
  std::vector<const float*> row_q(rows);
  for (int64_t t = 0; t < num_tokens; ++t) {
    int64_t token = it.token_begin + t;
    int64_t pos = seq_lens[it.req] - q_len + (token - q_start);
    for (int64_t h = 0; h < group; ++h) {
      int64_t r = t * group + h;
      row_pos[r] = pos;
      row_q[r] = q + (token * s.num_heads + it.kv_head * group + h) * d;
      partials[r] = {kNegInf, 0.0f};
    }
  }
  std::fill(acc_out, acc_out + rows * d, 0.0f);
  const int64_t last_pos = row_pos[rows - 1];
  // Keys are always walked from the chunk start, so 16-key groups sit at the same positions for
  // every row whatever its tile (batch invariance); keys outside a row's window are masked.
  const int64_t key_begin = it.key_begin;
  const int64_t key_end = std::min<int64_t>(it.key_end, last_pos + 1);
  v16i lane_index;
  for (int i = 0; i < kLanes; ++i) lane_index[i] = i;

  for (int64_t p0 = key_begin; p0 < key_end;) {
    const int64_t off = p0 % bs;
    // Consecutive keys in one block, at most 16.
    const int64_t n = std::min({bs - off, key_end - p0, kLanes});
    const int64_t block = blocks[p0 / bs];
    const int64_t k_base = (block * s.num_kv_heads + it.kv_head) * d * bs;
    const int64_t v_base = ((block * s.num_kv_heads + it.kv_head) * bs + off) * d;
    const float* kt;
    int64_t kt_stride;
    if (!f16 && bs == kLanes && off == 0) {
      kt = static_cast<const float*>(k_cache) + k_base;  // a whole block, read in place
      kt_stride = bs;
    } else {
      for (int64_t e = 0; e < d; ++e) {
        for (int64_t j = 0; j < kLanes; ++j) {
          int64_t idx = k_base + e * bs + off + j;
          ktbuf[e * kLanes + j] =
              j >= n ? 0.0f
                     : (f16 ? f16_to_f32(static_cast<const uint16_t*>(k_cache)[idx])
                            : static_cast<const float*>(k_cache)[idx]);
        }
      }
      kt = ktbuf;
      kt_stride = kLanes;
    }
    const float* vrows;
    if (f16) {
      const uint16_t* vh = static_cast<const uint16_t*>(v_cache) + v_base;
      for (int64_t i = 0; i < n * d; ++i) vbuf[i] = f16_to_f32(vh[i]);
      vrows = vbuf;
    } else {
      vrows = static_cast<const float*>(v_cache) + v_base;
    }
    const v16i pos = lane_index + static_cast<int32_t>(p0);
    for (int64_t r = 0; r < rows; ++r) {
      // Lanes past n, after the row's position or before its window are masked to -inf.
      const int32_t lo = static_cast<int32_t>(s.sliding_window > 0 ? row_pos[r] - s.sliding_window + 1 : 0);
      const int32_t hi = static_cast<int32_t>(std::min<int64_t>(row_pos[r], p0 + n - 1));
      v16f v = score16(row_q[r], kt, kt_stride, d) * s.scale;
      if (s.logit_softcap > 0.0f) {
        for (int j = 0; j < kLanes; ++j) v[j] = s.logit_softcap * std::tanh(v[j] / s.logit_softcap);
      }
      v = (pos <= hi && pos >= lo) ? v : splat(kNegInf);
      const float row_max = reduce_max(v);
      if (row_max == kNegInf) continue;  // every key of this group is masked for this row
      Partial& pr = partials[r];
      const float new_max = std::max(pr.max, row_max);
      const float correction = exp_nonpositive(pr.max - new_max);
      const v16f w = exp_nonpositive(v - new_max);
      float* acc = acc_out + r * d;
      if (correction != 1.0f) {
        for (int64_t e = 0; e < d; ++e) acc[e] *= correction;
      }
      float wj[kLanes];
      store16(wj, w);
      accumulate_values(acc, wj, vrows, n, d);
      pr.sum = pr.sum * correction + reduce_sum(w);
      pr.max = new_max;
    }
    p0 += n;
  }
}

}  // namespace

void write_kv_cache(const float* k, const float* v, void* k_cache, void* v_cache,
                    DType cache_dtype, const int64_t* slot_mapping, int64_t num_tokens,
                    int64_t num_kv_heads, int64_t head_size, int64_t block_size, ThreadPool* pool) {
  CVLLM_CHECK(cache_dtype == DType::kF32 || cache_dtype == DType::kF16,
              "KV cache dtype must be f32 or f16, got ", dtype_name(cache_dtype));
  const int64_t row = num_kv_heads * head_size;
  for (int64_t t = 0; t < num_tokens; ++t) {
    int64_t slot = slot_mapping[t];
    if (slot < 0) continue;
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      const float* ks = k + t * row + h * head_size;
      const float* vs = v + t * row + h * head_size;
      int64_t k0 = k_cache_index(slot, h, 0, num_kv_heads, head_size, block_size);
      int64_t v0 = v_cache_index(slot, h, 0, num_kv_heads, head_size, block_size);
      if (cache_dtype == DType::kF32) {
        float* kd = static_cast<float*>(k_cache);
        for (int64_t e = 0; e < head_size; ++e) kd[k0 + e * block_size] = ks[e];
        std::copy(vs, vs + head_size, static_cast<float*>(v_cache) + v0);
      } else {
        uint16_t* kd = static_cast<uint16_t*>(k_cache);
        uint16_t* vd = static_cast<uint16_t*>(v_cache) + v0;
        for (int64_t e = 0; e < head_size; ++e) {
          kd[k0 + e * block_size] = f32_to_f16(ks[e]);
          vd[e] = f32_to_f16(vs[e]);
        }
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
  const int64_t d = s.head_size;
  const int64_t group = s.num_heads / s.num_kv_heads;
  const int64_t tile_tokens = std::max<int64_t>(1, kTileRows / group);

  // Items in a fixed order; each row (token, head) owns one partial slot per key chunk it spans.
  std::vector<WorkItem> items;
  int64_t num_partial_rows = 0;
  for (int64_t r = 0; r < num_reqs; ++r) {
    int32_t q_begin = query_start_loc[r], q_end = query_start_loc[r + 1];
    int32_t q_len = q_end - q_begin;
    for (int32_t t0 = q_begin; t0 < q_end; t0 += static_cast<int32_t>(tile_tokens)) {
      int32_t t1 = std::min<int32_t>(q_end, t0 + static_cast<int32_t>(tile_tokens));
      int64_t first_pos = seq_lens[r] - q_len + (t0 - q_begin);
      int64_t last_pos = seq_lens[r] - q_len + (t1 - 1 - q_begin);
      // Chunks wholly before the tile's sliding window hold nothing any row attends to.
      int64_t first_key = s.sliding_window > 0 ? std::max<int64_t>(0, first_pos - s.sliding_window + 1) : 0;
      for (int64_t h = 0; h < s.num_kv_heads; ++h) {
        for (int64_t k0 = first_key / kKeyChunk * kKeyChunk; k0 <= last_pos; k0 += kKeyChunk) {
          items.push_back({static_cast<int32_t>(r), static_cast<int32_t>(h), t0, t1,
                           static_cast<int32_t>(k0), static_cast<int32_t>(k0 + kKeyChunk),
                           num_partial_rows});
          num_partial_rows += (t1 - t0) * group;
        }
      }
    }
  }
  std::vector<Partial> partials(num_partial_rows);
  std::vector<float> acc(static_cast<size_t>(num_partial_rows * d));
  const bool f16 = cache_dtype == DType::kF16;
  auto run = [&](int64_t begin, int64_t end, int) {
    std::vector<float> scratch;
    for (int64_t i = begin; i < end; ++i) {
      const WorkItem& it = items[i];
      run_item(it, q, k_cache, v_cache, f16, query_start_loc, seq_lens, block_table,
               max_blocks_per_req, s, partials.data() + it.partial, acc.data() + it.partial * d,
               scratch);
    }
  };
  if (pool == nullptr) {
    run(0, static_cast<int64_t>(items.size()), 0);
  } else {
    pool->parallel_for(static_cast<int64_t>(items.size()), run);
  }

  // Merge each row's chunk partials in chunk order: out = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M).
  // Items of one (request, kv head, tile) are consecutive, one per chunk.
  for (size_t i = 0; i < items.size();) {
    size_t j = i;
    while (j < items.size() && items[j].req == items[i].req && items[j].kv_head == items[i].kv_head &&
           items[j].token_begin == items[i].token_begin) {
      ++j;
    }
    const WorkItem& first = items[i];
    int64_t rows = (first.token_end - first.token_begin) * group;
    for (int64_t r = 0; r < rows; ++r) {
      float m = kNegInf;
      for (size_t c = i; c < j; ++c) m = std::max(m, partials[items[c].partial + r].max);
      int64_t token = first.token_begin + r / group;
      int64_t head = first.kv_head * group + r % group;
      float* o = out + (token * s.num_heads + head) * d;
      std::fill(o, o + d, 0.0f);
      float denom = 0.0f;
      for (size_t c = i; c < j; ++c) {
        const Partial& p = partials[items[c].partial + r];
        if (p.sum == 0.0f) continue;
        float w = exp_nonpositive(p.max - m);
        denom += p.sum * w;
        const float* a = acc.data() + (items[c].partial + r) * d;
        for (int64_t e = 0; e < d; ++e) o[e] += a[e] * w;
      }
      float inv = 1.0f / denom;
      for (int64_t e = 0; e < d; ++e) o[e] *= inv;
    }
    i = j;
  }
}

}  // namespace cvllm::cpu
