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
// on the batch, so a token's result is the same alone or batched. A token of several pieces is
// merged in piece order, in the same launch, one of two ways with the same arithmetic:
//  - small batches (one block per piece, at most kClusterBlocks pieces, and every cluster resident
//    at once): the blocks of one token and KV head form a thread-block cluster, keep their
//    piece's sums in shared memory and, after a cluster barrier, each merges a slice of the
//    output reading the others' shared memory. No global scratch, no atomics: at batch 1 the
//    global merge below was ~7 us of a ~13 us layer (8B shape, 576 keys).
//  - otherwise the pieces' sums go to global scratch and the block that finishes a token's last
//    piece (a counter per token and KV head, reset by that block) merges them.
// The grid has piece_stride blocks per (token, KV head); block i takes pieces i, i + stride, ...
// (a recorded step's grid covers any position, so a large batch takes few blocks per token that
// loop instead of many empty ones).
//
// Launched with programmatic dependent launch: the step's metadata is read before pdl_wait(), and
// in the cluster kernel also the first iterations of keys of earlier steps (every position before
// the first one this step writes).
#include <cooperative_groups.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <atomic>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/pdl.cuh"

namespace cvllm::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kClusterBlocks = 16;  // the largest (non-portable) cluster H100 takes
constexpr int kPortableClusterBlocks = 8;
// Iterations of its piece a cluster kernel's block loads before the wait (a 64-key piece of head
// size 128 at group 4 is two), and the depth of its key loop's pipeline (piece_sums).
constexpr int kClusterPrefetch = 2;
constexpr int kClusterMaxGroupDims = 1024;  // group * D of the cluster kernel's shared sums

__device__ __forceinline__ uint4 load_16(const bf16* p) { return *reinterpret_cast<const uint4*>(p); }

template <int D, int G>
struct DecodeShape {
  static constexpr int kLanesPerKey = D / 8;                // 16-byte slices of one row
  static constexpr int kKeysPerWarp = 32 / kLanesPerKey;    // rows one warp load covers
  static constexpr int kStreams = kWarps * kKeysPerWarp;    // independent key streams per block
  // Keys per stream per iteration (8 for group 4 measured slower: 16.3 against 15.0 us).
  static constexpr int kUnroll = G >= 8 ? 2 : 4;
  static constexpr int kIteration = kUnroll * kStreams;      // keys per iteration of the block
};

// The keys one token attends over, from the step's metadata: positions [lo, pos] in pieces of
// piece_keys; positions >= first_new are written by this step (by the kernel before this one).
struct TokenKeys {
  int32_t req;
  int64_t pos, lo, piece_keys, first_new;
  int pieces;
};

__device__ __forceinline__ TokenKeys token_keys(int64_t t, const int32_t* token_to_req,
                                                const int32_t* query_start_loc,
                                                const int32_t* seq_lens, const PagedAttentionArgs& a) {
  TokenKeys k;
  k.req = token_to_req[t];
  const int32_t q_start = query_start_loc[k.req];
  const int32_t q_len = query_start_loc[k.req + 1] - q_start;
  k.first_new = seq_lens[k.req] - q_len;
  k.pos = k.first_new + (t - q_start);
  k.lo = a.sliding_window > 0 ? max(int64_t{0}, k.pos - a.sliding_window + 1) : 0;
  k.piece_keys = decode_piece_keys(k.pos - k.lo + 1);
  k.pieces = static_cast<int>(decode_pieces(k.pos - k.lo + 1));
  return k;
}

// One thread's share of a piece: its lane's 8 dimensions of the keys of its stream.
template <int D, int G>
struct PieceReader {
  using S = DecodeShape<D, G>;
  const bf16* k_cache;
  const bf16* v_cache;
  const int32_t* blocks;  // the request's row of the block table
  unsigned block_size;    // 32-bit index math: a 64-bit division costs ~100 instructions
  int64_t num_kv_heads, kv;
  int warp, lane, part;

  __device__ __forceinline__ void load(int64_t p, uint4& kr, uint4& vr) const {
    const unsigned block = static_cast<unsigned>(p) / block_size;
    const unsigned offset = static_cast<unsigned>(p) - block * block_size;
    const int64_t row =
        ((static_cast<int64_t>(blocks[block]) * num_kv_heads + kv) * block_size + offset) * D +
        part * 8;
    kr = load_16(k_cache + row);
    vr = load_16(v_cache + row);
  }
  // The first key of this lane's stream in the piece starting at k_begin.
  __device__ __forceinline__ int64_t first_key(int64_t k_begin) const {
    return k_begin + warp * S::kKeysPerWarp + lane / S::kLanesPerKey;
  }
  // One iteration's keys from `first` on (keys past k_end, and those at or after `skip_from`,
  // left as they were).
  __device__ __forceinline__ void load_iteration(int64_t first, int64_t k_end, int64_t skip_from,
                                                 uint4 (&kr)[S::kUnroll], uint4 (&vr)[S::kUnroll]) const {
#pragma unroll
    for (int u = 0; u < S::kUnroll; ++u) {
      const int64_t p = first + u * S::kStreams;
      if (p <= k_end && p < skip_from) load(p, kr[u], vr[u]);
    }
  }
};

// One iteration of a lane's key stream: kUnroll keys (first, first + kStreams, ...; those past
// k_end are masked) scored against every head of the group and folded into the online softmax.
template <int D, int G>
__device__ __forceinline__ void attend(const uint4 (&kr)[DecodeShape<D, G>::kUnroll],
                                       const uint4 (&vr)[DecodeShape<D, G>::kUnroll], int64_t first,
                                       int64_t k_end, const float (&qv)[G][8], float (&m)[G],
                                       float (&l)[G], float (&acc)[G][8],
                                       const PagedAttentionArgs& a) {
  using S = DecodeShape<D, G>;
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

// q's 8 dimensions of every head of the group, for this lane (zeros past the group).
template <int D, int G>
__device__ __forceinline__ void load_q(const float* q, int64_t t, int64_t head0, int group, int part,
                                       const PagedAttentionArgs& a, float (&qv)[G][8]) {
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
}

// Shared memory of the streams' running sums, combined at the end of each piece.
template <int D, int G>
struct StreamSums {
  float acc[DecodeShape<D, G>::kStreams][G][D];
  float ml[DecodeShape<D, G>::kStreams][G][2];
};

// The unnormalized sums of one piece over every head of the group: each stream's online softmax,
// then the streams combined in stream order. emit(g, e, o, max, sum) receives element e of head g
// (max and sum are the head's, the same for every e). With kPre == 2, `pre` holds the piece's
// first two iterations, loaded before the wait without the keys this step wrote, and the loop
// runs two deep: each iteration loads the one two ahead. Otherwise `pre` is unused and each
// iteration loads its own keys. Either way the keys are attended in the same order.
template <int D, int G, int kPre, typename Emit>
__device__ __forceinline__ void piece_sums(const PieceReader<D, G>& reader, const TokenKeys& tk,
                                           int piece, const float (&qv)[G][8],
                                           uint4 (&pre_k)[kPre][DecodeShape<D, G>::kUnroll],
                                           uint4 (&pre_v)[kPre][DecodeShape<D, G>::kUnroll], int group,
                                           StreamSums<D, G>& sums, const PagedAttentionArgs& a,
                                           Emit emit) {
  using S = DecodeShape<D, G>;
  const int64_t k_begin = tk.lo + piece * tk.piece_keys;
  const int64_t k_end = min(tk.pos, k_begin + tk.piece_keys - 1);
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -FLT_MAX;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  }
  // Every lane of a warp runs the same iterations (the shuffles need the whole warp); keys past
  // the piece are masked.
  int64_t first = reader.first_key(k_begin);
  const int lane_key = reader.lane / S::kLanesPerKey;
  if constexpr (kPre == 2) {
    // One copy of the key loop (not unrolled): a kernel that runs once per layer fetches its
    // code cold, and three copies of it were most of the old kernel's 11k instructions.
#pragma unroll 1
    for (int it = 0; first - lane_key <= k_end; ++it, first += S::kIteration) {
      if (it < 2) {  // loaded before the wait: the keys this step wrote were not ready then
#pragma unroll
        for (int u = 0; u < S::kUnroll; ++u) {
          const int64_t p = first + u * S::kStreams;
          if (p >= tk.first_new && p <= k_end) reader.load(p, pre_k[0][u], pre_v[0][u]);
        }
      }
      attend<D, G>(pre_k[0], pre_v[0], first, k_end, qv, m, l, acc, a);
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        pre_k[0][u] = pre_k[1][u];
        pre_v[0][u] = pre_v[1][u];
        pre_k[1][u] = pre_v[1][u] = make_uint4(0, 0, 0, 0);
      }
      reader.load_iteration(first + 2 * S::kIteration, k_end, INT64_MAX, pre_k[1], pre_v[1]);
    }
  } else {
    for (; first - lane_key <= k_end; first += S::kIteration) {
      uint4 kr[S::kUnroll], vr[S::kUnroll];
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      reader.load_iteration(first, k_end, INT64_MAX, kr, vr);
      attend<D, G>(kr, vr, first, k_end, qv, m, l, acc, a);
    }
  }

  const int stream = reader.warp * S::kKeysPerWarp + reader.lane / S::kLanesPerKey;
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int e = 0; e < 8; ++e) sums.acc[stream][g][reader.part * 8 + e] = acc[g][e];
    if (reader.part == 0) {
      sums.ml[stream][g][0] = m[g];
      sums.ml[stream][g][1] = l[g];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * D; i += kThreads) {
    const int g = i / D, e = i % D;
    float max_m = -FLT_MAX;
    for (int st = 0; st < S::kStreams; ++st) max_m = fmaxf(max_m, sums.ml[st][g][0]);
    float sum = 0.0f, o = 0.0f;
    for (int st = 0; st < S::kStreams; ++st) {
      const float c = expf(sums.ml[st][g][0] - max_m);
      sum += sums.ml[st][g][1] * c;
      o += sums.acc[st][g][e] * c;
    }
    emit(g, e, o, max_m, sum);
  }
  __syncthreads();  // the sums may be reused for the next piece
}

// Shared by both kernels: the block's reader, its token's keys, and the first kPrefetch
// iterations of its first piece loaded before the wait, keys of earlier steps only. The global
// kernel, which serves large batches, does not prefetch: the registers held across the wait
// (228 instead of 168 at group 4) cost it a third of its blocks per multiprocessor, and
// throughput at 256 sequences fell 19.2k -> 17.6k tok/s.
template <int D, int G, int kPrefetch>
struct BlockStart {
  static constexpr int kPre = kPrefetch > 0 ? kPrefetch : 1;
  PieceReader<D, G> reader;
  TokenKeys tk;
  uint4 pre_k[kPre][DecodeShape<D, G>::kUnroll], pre_v[kPre][DecodeShape<D, G>::kUnroll];

  __device__ __forceinline__ BlockStart(int64_t t, int64_t kv, int first_piece, const bf16* k_cache,
                                        const bf16* v_cache, const int32_t* token_to_req,
                                        const int32_t* query_start_loc, const int32_t* seq_lens,
                                        const int32_t* block_table, const PagedAttentionArgs& a) {
    using S = DecodeShape<D, G>;
    tk = token_keys(t, token_to_req, query_start_loc, seq_lens, a);
    reader.k_cache = k_cache;
    reader.v_cache = v_cache;
    reader.blocks = block_table + tk.req * a.max_blocks_per_req;
    reader.block_size = static_cast<unsigned>(a.block_size);
    reader.num_kv_heads = a.num_kv_heads;
    reader.kv = kv;
    reader.warp = threadIdx.x / 32;
    reader.lane = threadIdx.x % 32;
    reader.part = reader.lane % S::kLanesPerKey;
#pragma unroll
    for (int it = 0; it < kPre; ++it) {
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) pre_k[it][u] = pre_v[it][u] = make_uint4(0, 0, 0, 0);
    }
    if (kPrefetch > 0 && first_piece < tk.pieces) {
      const int64_t k_begin = tk.lo + first_piece * tk.piece_keys;
      const int64_t k_end = min(tk.pos, k_begin + tk.piece_keys - 1);
#pragma unroll
      for (int it = 0; it < kPre; ++it) {
        reader.load_iteration(reader.first_key(k_begin) + it * S::kIteration, k_end, tk.first_new,
                              pre_k[it], pre_v[it]);
      }
    }
  }
};

// Merges a token's pieces for one KV head's group in piece order: weights[c][g] = exp(m_c - M)
// and inv_sum[g] from each piece's (max, sum), then out = sum_c o_c * weights[c] * inv_sum. Both
// kernels do exactly these operations, so their results are bit-identical.
template <int G>
__device__ __forceinline__ void merge_weights(int pieces, int group,
                                              float (&weights)[kMaxDecodePieces][G],
                                              float (&inv_sum)[G], const float* ml, int64_t ml_stride) {
  // ml: piece c's (max, sum) of head g at ml[c * ml_stride + g * 2]
  if (threadIdx.x < group) {
    const int g = threadIdx.x;
    float max_m = -FLT_MAX;
    for (int c = 0; c < pieces; ++c) max_m = fmaxf(max_m, ml[c * ml_stride + g * 2]);
    float sum = 0.0f;
    for (int c = 0; c < pieces; ++c) {
      weights[c][g] = expf(ml[c * ml_stride + g * 2] - max_m);
      sum += ml[c * ml_stride + g * 2 + 1] * weights[c][g];
    }
    inv_sum[g] = 1.0f / sum;
  }
}

__device__ __forceinline__ void write_out(float* out, bf16* out_bf16, int64_t index, float v) {
  out[index] = v;
  if (out_bf16 != nullptr) out_bf16[index] = __float2bfloat16_rn(v);
}

// Global merge: block (token li, piece slot, KV head) = blockIdx.x as ((li * stride) + slot) *
// num_kv_heads + kv.
template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const float* __restrict__ q, const bf16* __restrict__ k_cache,
                            const bf16* __restrict__ v_cache, float* __restrict__ out,
                            bf16* __restrict__ out_bf16, const int32_t* token_to_req,
                            const int32_t* query_start_loc, const int32_t* seq_lens,
                            const int32_t* block_table, DecodeAttentionWork work,
                            PagedAttentionArgs a) {
  __shared__ StreamSums<D, G> sums;
  __shared__ int last_s;
  __shared__ float piece_ml[kMaxDecodePieces][G][2], weights[kMaxDecodePieces][G], inv_sum[G];

  pdl_launch_dependents();
  const int64_t kv = blockIdx.x % a.num_kv_heads;
  const int64_t rest = blockIdx.x / a.num_kv_heads;
  const int64_t stride = work.piece_stride > 0 ? work.piece_stride : work.max_pieces;
  const int first_piece = static_cast<int>(rest % stride);
  const int64_t li = rest / stride;  // which attended token: its partials' and counter's index
  const int64_t t = work.tokens != nullptr ? work.tokens[li] : li;
  const int group = static_cast<int>(a.num_heads / a.num_kv_heads);  // <= G
  const int64_t head0 = kv * group;
  BlockStart<D, G, 0> start(t, kv, first_piece, k_cache, v_cache, token_to_req, query_start_loc,
                         seq_lens, block_table, a);
  const TokenKeys& tk = start.tk;
  pdl_wait();
  if (first_piece >= tk.pieces) return;
  float qv[G][8];
  load_q<D, G>(q, t, head0, group, start.reader.part, a, qv);
  const bool whole = tk.pieces == 1;
  for (int piece = first_piece; piece < tk.pieces; piece += static_cast<int>(stride)) {
    piece_sums<D, G>(start.reader, tk, piece, qv, start.pre_k, start.pre_v,
                     group, sums, a, [&](int g, int e, float o, float max_m, float sum) {
                       if (whole) {
                         write_out(out, out_bf16, (t * a.num_heads + head0 + g) * D + e, o / sum);
                         return;
                       }
                       const int64_t slot = (li * work.max_pieces + piece) * a.num_heads + head0 + g;
                       work.partial_out[slot * D + e] = o;
                       if (e == 0) {
                         work.partial_ml[slot * 2] = max_m;
                         work.partial_ml[slot * 2 + 1] = sum;
                       }
                     });
    if (whole) return;

    // The last block of this token and KV head to finish merges every piece.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      int* counter = work.counters + li * a.num_kv_heads + kv;
      const int done = atomicAdd(counter, 1);
      last_s = done == tk.pieces - 1;
      if (last_s) *counter = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!last_s) continue;
    __threadfence();
    // Maxima and sums first, all at once (L2 reads: other blocks wrote them).
    for (int i = threadIdx.x; i < tk.pieces * group; i += kThreads) {
      const int c = i / group, g = i % group;
      const int64_t slot = (li * work.max_pieces + c) * a.num_heads + head0 + g;
      piece_ml[c][g][0] = __ldcg(work.partial_ml + slot * 2);
      piece_ml[c][g][1] = __ldcg(work.partial_ml + slot * 2 + 1);
    }
    __syncthreads();
    merge_weights<G>(tk.pieces, group, weights, inv_sum, &piece_ml[0][0][0], G * 2);
    __syncthreads();
    for (int i = threadIdx.x; i < group * D; i += kThreads) {
      const int g = i / D, e = i % D;
      const int64_t head = head0 + g;
      float o = 0.0f;
#pragma unroll 4
      for (int c = 0; c < tk.pieces; ++c) {
        const int64_t slot = (li * work.max_pieces + c) * a.num_heads + head;
        o += __ldcg(work.partial_out + slot * D + e) * weights[c][g];
      }
      write_out(out, out_bf16, (t * a.num_heads + head) * D + e, o * inv_sum[g]);
    }
    return;  // this block merged: it finished the token's last piece
  }
}

// Cluster merge: a cluster of C >= pieces blocks per (token li, KV head), blockIdx.x = (li *
// num_kv_heads + kv) * C + rank; block `rank` takes piece `rank`.
template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    decode_attention_cluster_kernel(const float* __restrict__ q, const bf16* __restrict__ k_cache,
                                    const bf16* __restrict__ v_cache, float* __restrict__ out,
                                    bf16* __restrict__ out_bf16, const int32_t* token_to_req,
                                    const int32_t* query_start_loc, const int32_t* seq_lens,
                                    const int32_t* block_table, DecodeAttentionWork work,
                                    PagedAttentionArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ StreamSums<D, G> sums;
  __shared__ float piece_o[G][D], piece_ml[G][2];  // this block's piece, read by the cluster
  __shared__ float weights[kMaxDecodePieces][G], inv_sum[G], ml_all[kMaxDecodePieces][G][2];

  pdl_launch_dependents();
  cg::cluster_group cluster = cg::this_cluster();
  const int size = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int64_t pair = blockIdx.x / size;  // li * num_kv_heads + kv
  const int64_t kv = pair % a.num_kv_heads;
  const int64_t li = pair / a.num_kv_heads;
  const int64_t t = work.tokens != nullptr ? work.tokens[li] : li;
  const int group = static_cast<int>(a.num_heads / a.num_kv_heads);  // <= G
  const int64_t head0 = kv * group;
  BlockStart<D, G, kClusterPrefetch> start(t, kv, rank, k_cache, v_cache, token_to_req,
                                           query_start_loc, seq_lens, block_table, a);
  const TokenKeys& tk = start.tk;
  pdl_wait();
  const bool whole = tk.pieces == 1;
  if (rank < tk.pieces) {
    float qv[G][8];
    load_q<D, G>(q, t, head0, group, start.reader.part, a, qv);
    piece_sums<D, G>(start.reader, tk, rank, qv, start.pre_k, start.pre_v, group, sums, a,
                     [&](int g, int e, float o, float max_m, float sum) {
                       if (whole) {
                         write_out(out, out_bf16, (t * a.num_heads + head0 + g) * D + e, o / sum);
                         return;
                       }
                       piece_o[g][e] = o;
                       if (e == 0) {
                         piece_ml[g][0] = max_m;
                         piece_ml[g][1] = sum;
                       }
                     });
  }
  if (whole) return;  // (uniform across the cluster: every block has the same token)
  cluster.sync();  // every piece's sums are in its block's shared memory
  for (int i = threadIdx.x; i < tk.pieces * group; i += kThreads) {
    const int c = i / group, g = i % group;
    const float* peer = cluster.map_shared_rank(&piece_ml[0][0], c);
    ml_all[c][g][0] = peer[g * 2];
    ml_all[c][g][1] = peer[g * 2 + 1];
  }
  __syncthreads();
  merge_weights<G>(tk.pieces, group, weights, inv_sum, &ml_all[0][0][0], G * 2);
  __syncthreads();
  // This block's slice of the group's outputs.
  const int n = group * D;
  const int per_block = (n + size - 1) / size;
  const int end = min(n, (rank + 1) * per_block);
  for (int i = rank * per_block + threadIdx.x; i < end; i += kThreads) {
    const int g = i / D, e = i % D;
    float o = 0.0f;
#pragma unroll 4
    for (int c = 0; c < tk.pieces; ++c) {
      o += cluster.map_shared_rank(&piece_o[0][0], c)[g * D + e] * weights[c][g];
    }
    write_out(out, out_bf16, (t * a.num_heads + head0 + g) * D + e, o * inv_sum[g]);
  }
  cluster.sync();  // no block leaves while another may still read its shared memory
#endif
}

// How many clusters of `size` blocks of the cluster kernel can be resident at once (0: none, or
// a size the device does not take). Sizes above the portable 8 must be asked for.
std::atomic<int64_t> cluster_launches{0};  // decode_attention_cluster_launches()

template <int D, int G>
int resident_clusters(int size) {
  // Asked once per size (decode launches read it every layer): known[size] - 1, 0 = not asked.
  static std::atomic<int> known[kClusterBlocks + 1];  // static: zero before first use
  const int cached = known[size].load(std::memory_order_relaxed);
  if (cached > 0) return cached - 1;
  auto kernel = decode_attention_cluster_kernel<D, G>;
  int clusters = 0;
  if (size > kPortableClusterBlocks &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
    cudaGetLastError();
  } else {
    cudaLaunchAttribute attrs[2];
    const cudaLaunchConfig_t config = launch_config(dim3(static_cast<unsigned>(size)), dim3(kThreads),
                                                    0, nullptr, static_cast<unsigned>(size),
                                                    /*pdl=*/false, attrs);
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
      cudaGetLastError();
      clusters = 0;
    }
  }
  known[size].store(clusters + 1, std::memory_order_relaxed);
  return clusters;
}

template <int D, int G>
void launch(const float* q, const void* k_cache, const void* v_cache, float* out, bf16* out_bf16,
            const int32_t* token_to_req, const int32_t* query_start_loc, const int32_t* seq_lens,
            const int32_t* block_table, const DecodeAttentionWork& work,
            const PagedAttentionArgs& a, cudaStream_t stream) {
  const int64_t stride = work.piece_stride > 0 ? work.piece_stride : work.max_pieces;
  const int64_t tokens = work.tokens != nullptr ? work.num_listed : a.num_tokens;
  // Clusters when each piece has its own block and every cluster is resident at once (a second
  // wave of clusters costs more than the global merge saves: batch 4 of the 8B shape, 586 -> 552
  // tok/s).
  if constexpr (G * D <= kClusterMaxGroupDims) {
    const int size = static_cast<int>(work.max_pieces);
    if (work.allow_cluster && work.max_pieces > 1 && work.max_pieces <= kClusterBlocks &&
        stride >= work.max_pieces && device_is_sm90_or_newer() &&
        tokens * a.num_kv_heads <= resident_clusters<D, G>(size)) {
      launch_pdl_cluster(decode_attention_cluster_kernel<D, G>,
                         static_cast<unsigned>(tokens * a.num_kv_heads * size), kThreads,
                         static_cast<unsigned>(size), stream, q, static_cast<const bf16*>(k_cache),
                         static_cast<const bf16*>(v_cache), out, out_bf16, token_to_req,
                         query_start_loc, seq_lens, block_table, work, a);
      cluster_launches.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  if (work.max_pieces > 1 && (work.counters == nullptr || work.partial_out == nullptr ||
                              work.partial_ml == nullptr)) {
    throw_cuda_error(cudaErrorInvalidValue, "decode_attention (no scratch for the global merge)",
                     __FILE__, __LINE__);
  }
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

int64_t decode_attention_cluster_launches() {
  return cluster_launches.load(std::memory_order_relaxed);
}

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
  if (!decode_attention_supports(a) || work.max_pieces > kMaxDecodePieces) {
    throw_cuda_error(cudaErrorInvalidValue, "decode_attention (unsupported shape)", __FILE__,
                     __LINE__);
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
