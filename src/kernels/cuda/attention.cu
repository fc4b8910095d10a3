// Paged attention: writing this step's K/V into the block-paged cache, and attention of every new
// token over its request's cached keys (causal within the new tokens, GQA, sliding window, logit
// softcap).
//
// The attention kernel runs one block per (work item, query head): a work item is one piece of
// one token's key positions (split-KV, see cuda_ops.h: contexts run as several blocks, merged
// afterwards in piece order). A block walks its keys in tiles of kTile positions with an online
// softmax. A token's result depends only on its position and its request's keys, always visited
// in the same order, so it is identical alone or batched.
#include <cfloat>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/pdl.cuh"

namespace cvllm::cuda {
namespace {

constexpr int kThreads = 256;  // = kTile: one thread scores each key of a tile
constexpr int kTile = 256;
constexpr int kMaxDimsPerThread = 2;
static_assert(kThreads * kMaxDimsPerThread == kMaxAttentionHeadSize);
static_assert(kTile == kThreads, "one thread scores each key of a tile");

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) { return __float2bfloat16_rn(v); }

__device__ float warp_sum(float v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ float warp_max(float v) {
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Reductions over the block (kThreads wide); every thread gets the result. They begin with a
// barrier, so shared memory written before the call is visible to all threads after it.
__device__ float block_reduce(float v, bool is_max) {
  __shared__ float partial[kThreads / 32];
  v = is_max ? warp_max(v) : warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < kThreads / 32; ++w) v = is_max ? fmaxf(v, partial[w]) : v + partial[w];
  return v;
}

// One block per (token, KV head): its K and V rows (head_size values each) go to its slot.
template <typename T>
__global__ void write_kv_kernel(const float* k, const float* v, T* k_cache, T* v_cache,
                                const int64_t* slot_mapping, int64_t head_size,
                                int64_t block_size) {
  pdl_launch_dependents();
  const int64_t t = blockIdx.x, h = blockIdx.y, num_kv_heads = gridDim.y;
  const int64_t slot = slot_mapping[t];  // step metadata: ready before the previous kernel ends
  pdl_wait();
  if (slot < 0) return;
  const int64_t dst = ((slot / block_size * num_kv_heads + h) * block_size + slot % block_size) *
                      head_size;
  const int64_t src = (t * num_kv_heads + h) * head_size;
  for (int e = threadIdx.x; e < head_size; e += blockDim.x) {
    k_cache[dst + e] = from_float<T>(k[src + e]);
    v_cache[dst + e] = from_float<T>(v[src + e]);
  }
}

// RoPE, and with a cache the KV write: one thread per (token, head, pair); blockIdx.x is the
// token, blockIdx.y a range of its (head, pair) indices over q's heads then k's. Each thread
// computes its own cos/sin (a decode step has one token: spreading its ~2,500 pairs over many
// threads matters more than sharing them) and rotates its pair in place. Given a cache, a KV
// head's thread also writes the pair, v's elements i, i + half, ... and k's unrotated ones
// (partial rotary) to the token's slot, as write_kv_kernel would.
template <typename T>
__global__ void rope_kernel(float* q, float* k, const float* v, T* k_cache, T* v_cache,
                            const int64_t* slot_mapping, RopeArgs rope, int num_heads,
                            int num_kv_heads, int head_size, int64_t block_size) {
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const int half = static_cast<int>(rope.rot_dim / 2);
  const int idx = blockIdx.y * blockDim.x + threadIdx.x;
  if (idx >= (num_heads + num_kv_heads) * half) {
    pdl_wait();  // (see pdl.cuh: every block waits)
    return;
  }
  const int head = idx / half, i = idx % half;
  // As the CPU reference: the angle is pos * inv_freq rounded to f32.
  const float angle = __fmul_rn(static_cast<float>(rope.positions[t]), rope.inv_freq[i]);
  const float c = cosf(angle) * rope.mscale, s = sinf(angle) * rope.mscale;
  const int64_t slot = k_cache != nullptr ? slot_mapping[t] : -1;
  pdl_wait();  // the angle and slot needed only the step's metadata
  const bool is_k = head >= num_heads;
  const int64_t h = head - num_heads;
  float* x = is_k ? k + (t * num_kv_heads + h) * head_size : q + (t * num_heads + head) * head_size;
  const int ia = rope.neox ? i : 2 * i;
  const int ib = rope.neox ? i + half : 2 * i + 1;
  const float a = x[ia], b = x[ib];
  const float ra = a * c - b * s, rb = b * c + a * s;
  x[ia] = ra;
  x[ib] = rb;
  if (!is_k || slot < 0) return;
  const int64_t dst = ((slot / block_size * num_kv_heads + h) * block_size + slot % block_size) *
                      head_size;
  k_cache[dst + ia] = from_float<T>(ra);
  k_cache[dst + ib] = from_float<T>(rb);
  for (int64_t e = rope.rot_dim + i; e < head_size; e += half) k_cache[dst + e] = from_float<T>(x[e]);
  const float* vr = v + (t * num_kv_heads + h) * head_size;
  for (int64_t e = i; e < head_size; e += half) v_cache[dst + e] = from_float<T>(vr[e]);
}

constexpr unsigned kRopeThreads = 256;

dim3 rope_grid(int64_t num_tokens, int64_t heads, int64_t half) {
  return dim3(static_cast<unsigned>(num_tokens),
              static_cast<unsigned>((heads * half + kRopeThreads - 1) / kRopeThreads));
}

// q . k over d dimensions, q in shared memory. 16-byte loads when the row allows them (K rows
// start at multiples of d elements, so d decides the alignment).
__device__ __forceinline__ float dot_row(const float* q, const bf16* __restrict__ k, int64_t d) {
  float acc = 0.0f, acc2 = 0.0f;  // two chains: even and odd dimensions
  if (d % 8 == 0) {
    const uint4* k4 = reinterpret_cast<const uint4*>(k);
    for (int64_t i = 0; i < d / 8; ++i) {
      const uint4 raw = k4[i];
      const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float2 f = __bfloat1622float2(h[w]);
        acc += q[8 * i + 2 * w] * f.x;
        acc2 += q[8 * i + 2 * w + 1] * f.y;
      }
    }
    return acc + acc2;
  }
  for (int64_t e = 0; e < d; ++e) acc += q[e] * __bfloat162float(k[e]);
  return acc;
}

__device__ __forceinline__ float dot_row(const float* q, const float* __restrict__ k, int64_t d) {
  float acc = 0.0f, acc2 = 0.0f;
  if (d % 4 == 0) {
    const float4* k4 = reinterpret_cast<const float4*>(k);
    for (int64_t i = 0; i < d / 4; ++i) {
      const float4 f = k4[i];
      acc += q[4 * i] * f.x;
      acc2 += q[4 * i + 1] * f.y;
      acc += q[4 * i + 2] * f.z;
      acc2 += q[4 * i + 3] * f.w;
    }
    return acc + acc2;
  }
  for (int64_t e = 0; e < d; ++e) acc += q[e] * k[e];
  return acc;
}

// acc + sum over keys j = first, first + stride, ... < n of probs[j] * V[j][dim], in that order.
// The value loads of kBatch keys are issued before their products, so their latencies overlap
// (each depends on a shared-memory row offset; without this the loop waits on one load at a time).
template <typename T>
__device__ __forceinline__ float accumulate_values(float acc, const T* __restrict__ v_cache,
                                                   const float* probs, const int64_t* key_base,
                                                   int64_t dim, int first, int stride, int n) {
  constexpr int kBatch = 8;
  int j = first;
  for (; j + (kBatch - 1) * stride < n; j += kBatch * stride) {
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) v[u] = to_float(v_cache[key_base[j + u * stride] + dim]);
#pragma unroll
    for (int u = 0; u < kBatch; ++u) acc += probs[j + u * stride] * v[u];
  }
  for (; j < n; j += stride) acc += probs[j] * to_float(v_cache[key_base[j] + dim]);
  return acc;
}

// One block per (work item, query head): the item's token attends over one piece of its keys
// (see AttentionWork). Per tile of kTile key positions: thread j scores key j (a
// whole K row, 16-byte loads), the block takes the tile's max and sum, then threads accumulate
// values. When head_size <= kThreads the threads form kThreads / head_size groups, thread
// (g, e) summing dimension e over the tile's keys j = g, g + groups, ...; the groups' partial sums
// are added in group order at the end. Every order is fixed, so results are deterministic.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    paged_attention_kernel(const float* __restrict__ q, const T* __restrict__ k_cache,
                           const T* __restrict__ v_cache, float* __restrict__ out,
                           const int32_t* token_to_req, const int32_t* query_start_loc,
                           const int32_t* seq_lens, const int32_t* block_table,
                           AttentionWork work, PagedAttentionArgs a) {
  extern __shared__ float smem[];
  float* q_s = smem;                   // [head_size]
  float* probs = smem + a.head_size;   // [kTile] scores, then probabilities
  float* group_sums = probs + kTile;   // [kThreads] per-group sums (head_size <= kThreads)
  __shared__ int64_t key_base[kTile];  // element offset of each tile key's row in the cache

  // Heads vary fastest across blocks, so the query heads sharing a KV head run side by side and
  // read its keys and values once from memory, then from L2.
  const int64_t item = blockIdx.x / a.num_heads;
  const int64_t head = blockIdx.x % a.num_heads;
  const int64_t t = work.work_token[item];

  const bool whole = work.token_first_work[t + 1] - work.token_first_work[t] == 1;
  const int64_t d = a.head_size;
  const int64_t kv_head = head / (a.num_heads / a.num_kv_heads);
  const int32_t req = token_to_req[t];
  const int32_t q_start = query_start_loc[req];
  const int32_t q_len = query_start_loc[req + 1] - q_start;
  const int64_t pos = seq_lens[req] - q_len + (t - q_start);
  const int64_t window_lo = a.sliding_window > 0 ? max(int64_t{0}, pos - a.sliding_window + 1) : 0;
  const int64_t lo = max(window_lo, static_cast<int64_t>(work.key_begin[item]));  // keys [lo, hi]
  const int64_t hi = min(pos, static_cast<int64_t>(work.key_end[item]));  // (empty below the window)
  const int32_t* blocks = block_table + req * a.max_blocks_per_req;
  const bool grouped = d <= kThreads;
  const int groups = grouped ? static_cast<int>(kThreads / d) : 1;
  const int group = grouped ? static_cast<int>(threadIdx.x / d) : 0;
  const int64_t dim = grouped ? threadIdx.x % d : threadIdx.x;
  const bool in_group = group < groups;

  for (int64_t e = threadIdx.x; e < d; e += kThreads) q_s[e] = q[(t * a.num_heads + head) * d + e];
  __syncthreads();

  float m = -FLT_MAX;  // running max (finite start: exp(m - new_m) is then 0 at the first tile)
  float l = 0.0f;      // running sum of exponentials
  float acc[kMaxDimsPerThread] = {};
  for (int64_t k0 = lo; k0 <= hi; k0 += kTile) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kTile), hi + 1 - k0));
    if (static_cast<int>(threadIdx.x) < n) {
      const int j = threadIdx.x;
      const int64_t p = k0 + j;
      const int64_t base =
          ((static_cast<int64_t>(blocks[p / a.block_size]) * a.num_kv_heads + kv_head) *
               a.block_size + p % a.block_size) * d;
      float s = dot_row(q_s, k_cache + base, d) * a.scale;
      if (a.logit_softcap > 0.0f) s = a.logit_softcap * tanhf(s / a.logit_softcap);
      probs[j] = s;
      key_base[j] = base;
    }
    __syncthreads();
    const float local_max = static_cast<int>(threadIdx.x) < n ? probs[threadIdx.x] : -FLT_MAX;
    const float new_m = fmaxf(m, block_reduce(local_max, true));
    const float correction = expf(m - new_m);
    float local_sum = 0.0f;
    if (static_cast<int>(threadIdx.x) < n) {
      const float p = expf(probs[threadIdx.x] - new_m);
      probs[threadIdx.x] = p;
      local_sum = p;
    }
    l = l * correction + block_reduce(local_sum, false);
    m = new_m;
    if (grouped) {
      if (in_group) acc[0] = accumulate_values(acc[0] * correction, v_cache, probs, key_base, dim, group, groups, n);
    } else {
#pragma unroll
      for (int r = 0; r < kMaxDimsPerThread; ++r) {
        const int64_t e = threadIdx.x + r * kThreads;
        if (e < d) acc[r] = accumulate_values(acc[r] * correction, v_cache, probs, key_base, e, 0, 1, n);
      }
    }
    __syncthreads();  // probs and key_base are rewritten by the next tile
  }
  // A whole token is normalized here; a piece leaves its unnormalized sums, max and sum.
  const float inv = whole ? 1.0f / l : 1.0f;
  float* o = whole ? out + (t * a.num_heads + head) * d
                   : work.partial_out + (item * a.num_heads + head) * d;
  if (!whole && threadIdx.x == 0) {
    work.partial_ml[(item * a.num_heads + head) * 2] = m;
    work.partial_ml[(item * a.num_heads + head) * 2 + 1] = l;
  }
  if (grouped) {
    if (in_group) group_sums[threadIdx.x] = acc[0];
    __syncthreads();
    if (static_cast<int64_t>(threadIdx.x) < d) {
      float sum = 0.0f;
      for (int g = 0; g < groups; ++g) sum += group_sums[g * d + threadIdx.x];
      o[threadIdx.x] = sum * inv;
    }
  } else {
#pragma unroll
    for (int r = 0; r < kMaxDimsPerThread; ++r) {
      const int64_t e = threadIdx.x + r * kThreads;
      if (e < d) o[e] = acc[r] * inv;
    }
  }
}

// Merges the pieces of tokens that have several, in piece order: with M the largest running max,
// out = sum_c acc_c exp(m_c - M) / sum_c l_c exp(m_c - M). One block per (token, head).
__global__ void merge_pieces_kernel(float* out, AttentionWork work, int64_t num_heads,
                                    int64_t head_size) {
  const int64_t t = blockIdx.x, head = blockIdx.y;
  const int32_t first = work.token_first_work[t], last = work.token_first_work[t + 1];
  if (last - first <= 1) return;  // written whole by the attention kernel
  const float* ml = work.partial_ml;
  float max_m = -FLT_MAX;
  for (int32_t c = first; c < last; ++c) max_m = fmaxf(max_m, ml[(c * num_heads + head) * 2]);
  float total = 0.0f;
  for (int32_t c = first; c < last; ++c) {
    total += ml[(c * num_heads + head) * 2 + 1] * expf(ml[(c * num_heads + head) * 2] - max_m);
  }
  const float inv = 1.0f / total;
  for (int64_t e = threadIdx.x; e < head_size; e += blockDim.x) {
    float acc = 0.0f;
    for (int32_t c = first; c < last; ++c) {
      acc += work.partial_out[(c * num_heads + head) * head_size + e] *
             expf(ml[(c * num_heads + head) * 2] - max_m);
    }
    out[(t * num_heads + head) * head_size + e] = acc * inv;
  }
}

}  // namespace

void rotary(float* q, float* k, const int32_t* positions, int64_t num_tokens, int64_t num_heads,
            int64_t num_kv_heads, int64_t head_size, int64_t rot_dim, const float* inv_freq,
            bool neox, float mscale, cudaStream_t stream) {
  if (num_tokens == 0 || rot_dim < 2) return;
  RopeArgs rope;
  rope.positions = positions;
  rope.inv_freq = inv_freq;
  rope.rot_dim = rot_dim;
  rope.neox = neox;
  rope.mscale = mscale;
  launch_pdl(rope_kernel<float>, rope_grid(num_tokens, num_heads + num_kv_heads, rot_dim / 2),
             kRopeThreads, 0, stream, q, k, static_cast<const float*>(nullptr),
             static_cast<float*>(nullptr), static_cast<float*>(nullptr),
             static_cast<const int64_t*>(nullptr), rope, static_cast<int>(num_heads),
             static_cast<int>(num_kv_heads), static_cast<int>(head_size), int64_t{1});
}

void rope_write_kv_cache(float* q, float* k, const float* v, void* k_cache, void* v_cache,
                         const int64_t* slot_mapping, const RopeArgs& rope,
                         const PagedAttentionArgs& a, cudaStream_t stream) {
  const int64_t half = rope.rot_dim / 2;
  if (a.num_tokens == 0 || half == 0) return;
  const dim3 grid = rope_grid(a.num_tokens, a.num_heads + a.num_kv_heads, half);
  const int heads = static_cast<int>(a.num_heads), kv_heads = static_cast<int>(a.num_kv_heads);
  const int d = static_cast<int>(a.head_size);
  if (a.cache_is_bf16) {
    launch_pdl(rope_kernel<bf16>, grid, kRopeThreads, 0, stream, q, k, v,
               static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache), slot_mapping, rope, heads,
               kv_heads, d, a.block_size);
  } else {
    launch_pdl(rope_kernel<float>, grid, kRopeThreads, 0, stream, q, k, v,
               static_cast<float*>(k_cache), static_cast<float*>(v_cache), slot_mapping, rope,
               heads, kv_heads, d, a.block_size);
  }
}

void write_kv_cache(const float* k, const float* v, void* k_cache, void* v_cache,
                    const int64_t* slot_mapping, const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.num_tokens == 0 || a.num_kv_heads * a.head_size == 0) return;
  const dim3 grid(static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(a.num_kv_heads));
  const unsigned threads = a.head_size >= 256 ? 256 : a.head_size >= 128 ? 128 : 64;
  if (a.cache_is_bf16) {
    launch_pdl(write_kv_kernel<bf16>, grid, threads, 0, stream, k, v, static_cast<bf16*>(k_cache),
               static_cast<bf16*>(v_cache), slot_mapping, a.head_size, a.block_size);
  } else {
    launch_pdl(write_kv_kernel<float>, grid, threads, 0, stream, k, v,
               static_cast<float*>(k_cache), static_cast<float*>(v_cache), slot_mapping,
               a.head_size, a.block_size);
  }
}

void paged_attention(const float* q, const void* k_cache, const void* v_cache, float* out,
                     const int32_t* token_to_req, const int32_t* query_start_loc,
                     const int32_t* seq_lens, const int32_t* block_table,
                     const AttentionWork& work, const PagedAttentionArgs& a,
                     cudaStream_t stream) {
  if (a.num_tokens == 0 || a.num_heads == 0 || work.num_items == 0) return;
  const unsigned grid = static_cast<unsigned>(work.num_items * a.num_heads);
  const size_t smem = static_cast<size_t>(a.head_size + kTile + kThreads) * sizeof(float);
  if (a.cache_is_bf16) {
    paged_attention_kernel<bf16><<<grid, kThreads, smem, stream>>>(
        q, static_cast<const bf16*>(k_cache), static_cast<const bf16*>(v_cache), out, token_to_req,
        query_start_loc, seq_lens, block_table, work, a);
  } else {
    paged_attention_kernel<float><<<grid, kThreads, smem, stream>>>(
        q, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), out,
        token_to_req, query_start_loc, seq_lens, block_table, work, a);
  }
  CVLLM_CUDA_CHECK_LAUNCH();
  if (work.has_split) {
    const dim3 merge_grid(static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(a.num_heads));
    merge_pieces_kernel<<<merge_grid, 128, 0, stream>>>(out, work, a.num_heads, a.head_size);
    CVLLM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace cvllm::cuda
