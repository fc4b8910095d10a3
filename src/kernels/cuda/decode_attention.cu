// Attention of the tokens outside prefill tiles (decode steps, short chunks) over a bf16 paged
// cache, for head sizes 16/32/64/128/256 and up to 8 query heads per KV head.
//
// One block per (token, piece of its keys, KV head) serves every query head of that KV head, so
// each K and V row is read once for the whole group. A key row is split across D / 8 lanes, one
// 16-byte load each; every lane keeps its 8 dimensions of q (for each head of the group) and of
// the output accumulator in registers. The block's 4 warps hold 32 * 4 / (D / 8) independent
// streams of keys, each with its own online softmax over a few keys per iteration (their K and V
// loads issued together), combined through shared memory at the end in a fixed order.
//
// Pieces (decode_piece_keys, cuda_ops.h) depend only on the token's position and window, never
// on the batch, so a token's result is the same alone or batched. A token of several pieces
// leaves partial sums; the block that finishes its token's last piece (a counter per token and KV
// head, reset by that block) merges them in piece order in the same launch. The grid has
// piece_stride blocks per (token, KV head); block i takes pieces i, i + stride, ... (one each
// when the stride is the most pieces, as in eager steps; a recorded step's grid covers any
// position, so a large batch takes few blocks per token that loop instead of many empty ones).
#include <cfloat>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/pdl.cuh"

namespace cvllm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

__device__ __forceinline__ uint4 load_16(const bf16* p) { return *reinterpret_cast<const uint4*>(p); }

template <int D, int G>
struct DecodeShape {
  static constexpr int kLanesPerKey = D / 8;                // 16-byte slices of one row
  static constexpr int kKeysPerWarp = 32 / kLanesPerKey;    // rows one warp load covers
  static constexpr int kStreams = kWarps * kKeysPerWarp;    // independent key streams per block
  // Keys per stream per iteration (8 for group 4 measured slower: 16.3 against 15.0 us).
  static constexpr int kUnroll = G >= 8 ? 2 : 4;
};

template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const float* __restrict__ q, const bf16* __restrict__ k_cache,
                            const bf16* __restrict__ v_cache, float* __restrict__ out,
                            bf16* __restrict__ out_bf16, const int32_t* token_to_req,
                            const int32_t* query_start_loc, const int32_t* seq_lens,
                            const int32_t* block_table, DecodeAttentionWork work,
                            PagedAttentionArgs a) {
  using S = DecodeShape<D, G>;
  __shared__ float acc_s[S::kStreams][G][D];
  __shared__ float ml_s[S::kStreams][G][2];
  __shared__ int last_s;
  __shared__ float piece_m[kMaxDecodePieces][G], piece_l[kMaxDecodePieces][G], inv_sum[G];

  pdl_launch_dependents();
  const int64_t kv = blockIdx.x % a.num_kv_heads;
  const int64_t rest = blockIdx.x / a.num_kv_heads;
  const int64_t stride = work.piece_stride > 0 ? work.piece_stride : work.max_pieces;
  const int first_piece = static_cast<int>(rest % stride);
  const int64_t li = rest / stride;  // which attended token: its partials' and counter's index
  const int64_t t = work.tokens != nullptr ? work.tokens[li] : li;
  const int group = static_cast<int>(a.num_heads / a.num_kv_heads);  // <= G
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int part = lane % S::kLanesPerKey;  // which 8 dimensions
  const int stream = warp * S::kKeysPerWarp + lane / S::kLanesPerKey;
  const int64_t head0 = kv * group;
  const int32_t req = token_to_req[t];
  const int32_t q_start = query_start_loc[req];
  const int32_t q_len = query_start_loc[req + 1] - q_start;
  const int64_t pos = seq_lens[req] - q_len + (t - q_start);
  const int64_t lo = a.sliding_window > 0 ? max(int64_t{0}, pos - a.sliding_window + 1) : 0;
  const int64_t piece_keys = decode_piece_keys(pos - lo + 1);
  const int pieces = static_cast<int>(decode_pieces(pos - lo + 1));
  if (first_piece >= pieces) {
    pdl_wait();
    return;
  }
  // The step's metadata above was ready before the previous kernel (RoPE, the KV write) ended; q
  // and the cache are not.
  pdl_wait();
  float qv[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g < group) {
      const float4* src = reinterpret_cast<const float4*>(q + ((t * a.num_heads + head0 + g) * D + part * 8));
      const float4 x = src[0], y = src[1];
      qv[g][0] = x.x; qv[g][1] = x.y; qv[g][2] = x.z; qv[g][3] = x.w;
      qv[g][4] = y.x; qv[g][5] = y.y; qv[g][6] = y.z; qv[g][7] = y.w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) qv[g][e] = 0.0f;
    }
  }
  for (int piece = first_piece; piece < pieces; piece += static_cast<int>(stride)) {
    const int64_t k_begin = lo + piece * piece_keys;
    const int64_t k_end = min(pos, k_begin + piece_keys - 1);

    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      m[g] = -FLT_MAX;
      l[g] = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
    }

    const int32_t* blocks = block_table + req * a.max_blocks_per_req;
    // 32-bit index math: a 64-bit division by the runtime block size costs ~100 instructions.
    const unsigned block_size = static_cast<unsigned>(a.block_size);
    // Every lane of a warp runs the same iterations (the shuffles below need the whole warp); keys
    // past the piece are masked.
    const int64_t warp_first = k_begin + warp * S::kKeysPerWarp;
    for (int64_t base = warp_first; base <= k_end; base += S::kUnroll * S::kStreams) {
      const int64_t first = base + lane / S::kLanesPerKey;
      uint4 kr[S::kUnroll], vr[S::kUnroll];
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        const int64_t p = first + u * S::kStreams;
        if (p <= k_end) {
          const unsigned block = static_cast<unsigned>(p) / block_size;
          const unsigned offset = static_cast<unsigned>(p) - block * block_size;
          const int64_t row =
              ((static_cast<int64_t>(blocks[block]) * a.num_kv_heads + kv) * block_size + offset) * D +
              part * 8;
          kr[u] = load_16(k_cache + row);
          vr[u] = load_16(v_cache + row);
        } else {
          kr[u] = make_uint4(0, 0, 0, 0);
          vr[u] = kr[u];
        }
      }
      float s[S::kUnroll][G];
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        float kf[8];
        const __nv_bfloat162* kh = reinterpret_cast<const __nv_bfloat162*>(&kr[u]);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const float2 f = __bfloat1622float2(kh[w]);
          kf[2 * w] = f.x;
          kf[2 * w + 1] = f.y;
        }
#pragma unroll
        for (int g = 0; g < G; ++g) {
          float d = 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) d = fmaf(qv[g][e], kf[e], d);
          // The row's slices sit in kLanesPerKey consecutive lanes: sum them.
#pragma unroll
          for (int off = S::kLanesPerKey / 2; off > 0; off /= 2) d += __shfl_xor_sync(0xffffffffu, d, off);
          d *= a.scale;
          if (a.logit_softcap > 0.0f) d = a.logit_softcap * tanhf(d / a.logit_softcap);
          s[u][g] = first + u * S::kStreams <= k_end ? d : -INFINITY;
        }
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float new_m = m[g];
#pragma unroll
        for (int u = 0; u < S::kUnroll; ++u) new_m = fmaxf(new_m, s[u][g]);
        const float correction = expf(m[g] - new_m);
        l[g] *= correction;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] *= correction;
#pragma unroll
        for (int u = 0; u < S::kUnroll; ++u) {
          const float p = expf(s[u][g] - new_m);  // 0 for keys past the piece
          l[g] += p;
          const __nv_bfloat162* vh = reinterpret_cast<const __nv_bfloat162*>(&vr[u]);
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float2 f = __bfloat1622float2(vh[w]);
            acc[g][2 * w] = fmaf(p, f.x, acc[g][2 * w]);
            acc[g][2 * w + 1] = fmaf(p, f.y, acc[g][2 * w + 1]);
          }
        }
        m[g] = new_m;
      }
    }

    // Combine the streams in stream order.
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc_s[stream][g][part * 8 + e] = acc[g][e];
      if (part == 0) {
        ml_s[stream][g][0] = m[g];
        ml_s[stream][g][1] = l[g];
      }
    }
    __syncthreads();
    const bool whole = pieces == 1;
    for (int i = threadIdx.x; i < group * D; i += kThreads) {
      const int g = i / D, e = i % D;
      float max_m = -FLT_MAX;
      for (int st = 0; st < S::kStreams; ++st) max_m = fmaxf(max_m, ml_s[st][g][0]);
      float sum = 0.0f, o = 0.0f;
      for (int st = 0; st < S::kStreams; ++st) {
        const float c = expf(ml_s[st][g][0] - max_m);
        sum += ml_s[st][g][1] * c;
        o += acc_s[st][g][e] * c;
      }
      const int64_t head = head0 + g;
      if (whole) {
        const float v = o / sum;
        out[(t * a.num_heads + head) * D + e] = v;
        if (out_bf16 != nullptr) out_bf16[(t * a.num_heads + head) * D + e] = __float2bfloat16_rn(v);
      } else {
        const int64_t slot = (li * work.max_pieces + piece) * a.num_heads + head;
        work.partial_out[slot * D + e] = o;
        if (e == 0) {
          work.partial_ml[slot * 2] = max_m;
          work.partial_ml[slot * 2 + 1] = sum;
        }
      }
    }
    if (whole) break;

    // The last block of this token and KV head to finish merges every piece.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      int* counter = work.counters + li * a.num_kv_heads + kv;
      const int done = atomicAdd(counter, 1);
      last_s = done == pieces - 1;
      if (last_s) *counter = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!last_s) continue;  // (the counter's syncs also end this piece's use of shared memory)
    __threadfence();
    // Each piece's weight exp(m_c - M) and the heads' 1 / sum_c l_c exp(m_c - M), from maxima and
    // sums loaded all at once (L2 reads: other blocks wrote them).
    for (int i = threadIdx.x; i < pieces * group; i += kThreads) {
      const int c = i / group, g = i % group;
      const int64_t slot = (li * work.max_pieces + c) * a.num_heads + head0 + g;
      piece_m[c][g] = __ldcg(work.partial_ml + slot * 2);
      piece_l[c][g] = __ldcg(work.partial_ml + slot * 2 + 1);
    }
    __syncthreads();
    if (threadIdx.x < group) {
      const int g = threadIdx.x;
      float max_m = -FLT_MAX;
      for (int c = 0; c < pieces; ++c) max_m = fmaxf(max_m, piece_m[c][g]);
      float sum = 0.0f;
      for (int c = 0; c < pieces; ++c) {
        piece_m[c][g] = expf(piece_m[c][g] - max_m);  // now the piece's weight
        sum += piece_l[c][g] * piece_m[c][g];
      }
      inv_sum[g] = 1.0f / sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < group * D; i += kThreads) {
      const int g = i / D, e = i % D;
      const int64_t head = head0 + g;
      float o = 0.0f;
#pragma unroll
      for (int c = 0; c < kMaxDecodePieces; ++c) {  // unrolled: every piece's load in flight at once
        if (c < pieces) {
          const int64_t slot = (li * work.max_pieces + c) * a.num_heads + head;
          o += __ldcg(work.partial_out + slot * D + e) * piece_m[c][g];
        }
      }
      const float v = o * inv_sum[g];
      out[(t * a.num_heads + head) * D + e] = v;
      if (out_bf16 != nullptr) out_bf16[(t * a.num_heads + head) * D + e] = __float2bfloat16_rn(v);
    }
    break;  // this block merged: it finished the token's last piece
  }
}

template <int D, int G>
void launch(const float* q, const void* k_cache, const void* v_cache, float* out, bf16* out_bf16,
            const int32_t* token_to_req, const int32_t* query_start_loc, const int32_t* seq_lens,
            const int32_t* block_table, const DecodeAttentionWork& work,
            const PagedAttentionArgs& a, cudaStream_t stream) {
  const int64_t stride = work.piece_stride > 0 ? work.piece_stride : work.max_pieces;
  const int64_t tokens = work.tokens != nullptr ? work.num_listed : a.num_tokens;
  const int64_t blocks = tokens * stride * a.num_kv_heads;
  launch_pdl(decode_attention_kernel<D, G>, static_cast<unsigned>(blocks), kThreads, 0, stream, q,
             static_cast<const bf16*>(k_cache), static_cast<const bf16*>(v_cache), out, out_bf16,
             token_to_req, query_start_loc, seq_lens, block_table, work, a);
}

template <int D>
void launch_group(int group, const float* q, const void* k_cache, const void* v_cache, float* out,
                  bf16* out_bf16, const int32_t* token_to_req, const int32_t* query_start_loc,
                  const int32_t* seq_lens, const int32_t* block_table,
                  const DecodeAttentionWork& work, const PagedAttentionArgs& a,
                  cudaStream_t stream) {
  if (group <= 1) {
    launch<D, 1>(q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
  } else if (group <= 2) {
    launch<D, 2>(q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
  } else if (group <= 4) {
    launch<D, 4>(q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
  } else {
    launch<D, 8>(q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
  }
}

}  // namespace

bool decode_attention_supports(const PagedAttentionArgs& a) {
  const bool head_ok = a.head_size == 16 || a.head_size == 32 || a.head_size == 64 ||
                       a.head_size == 128 || a.head_size == 256;
  return a.cache_is_bf16 && head_ok && a.num_kv_heads > 0 && a.num_heads % a.num_kv_heads == 0 &&
         a.num_heads / a.num_kv_heads <= kDecodeMaxGroup;
}

void decode_attention(const float* q, const void* k_cache, const void* v_cache, float* out,
                      bf16* out_bf16, const int32_t* token_to_req, const int32_t* query_start_loc,
                      const int32_t* seq_lens, const int32_t* block_table,
                      const DecodeAttentionWork& work, const PagedAttentionArgs& a,
                      cudaStream_t stream) {
  if (a.num_tokens == 0 || work.max_pieces == 0 || (work.tokens != nullptr && work.num_listed == 0)) {
    return;
  }
  if (!decode_attention_supports(a) || (work.max_pieces > 1 && work.counters == nullptr)) {
    throw_cuda_error(cudaErrorInvalidValue, "decode_attention (unsupported shape or no scratch)",
                     __FILE__, __LINE__);
  }
  const int group = static_cast<int>(a.num_heads / a.num_kv_heads);
  switch (a.head_size) {
    case 16:
      return launch_group<16>(group, q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
    case 32:
      return launch_group<32>(group, q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
    case 64:
      return launch_group<64>(group, q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
    case 128:
      return launch_group<128>(group, q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
    default:
      return launch_group<256>(group, q, k_cache, v_cache, out, out_bf16, token_to_req, query_start_loc, seq_lens, block_table, work, a, stream);
  }
}

}  // namespace cvllm::cuda
