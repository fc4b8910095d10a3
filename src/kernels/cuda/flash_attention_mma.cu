// Prefill attention for head sizes 64 and 128 with FlashAttention-2's register-resident scheme on
// mma.sync (m16n8k16, bf16 operands, f32 accumulation). A thread block takes 64 query rows of one
// request and one query head (4 warps of 16 rows) and walks the request's keys in tiles of 64 from
// the paged bf16 cache. Each warp keeps its Q fragments, its scores S = Q K^T and its output
// accumulator O in registers: the fragment layout of m16n8k16 is fixed by the PTX ISA (thread
// lane holds rows lane / 4 and lane / 4 + 8, columns 2 * (lane % 4) + {0, 1} of each 8-wide tile),
// so the online softmax rescales O's rows in place, and S's accumulator tiles become P's A
// fragments without going through memory. K and V tiles are copied into shared memory with
// cp.async, two stages deep (the next tile loads while this one is multiplied); K's B fragments
// are 32-bit loads, V's come transposed through ldmatrix.
//
// Same results as flash_attention.cu's WMMA kernel (which still serves head size 256) up to f32
// summation order: scale, softcap, causal and sliding-window masks, P rounded to bf16.
#include <cfloat>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"

namespace cvllm::cuda {
namespace {

constexpr int kRows = kFlashTileQueries;  // query rows per block
constexpr int kKeys = 64;                 // keys per tile
constexpr int kWarps = kRows / 16;
constexpr int kThreads = kWarps * 32;
static_assert(kRows == 64, "four warps of 16 rows");

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// 16 bytes global -> shared without passing through registers; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
}

// Four 8x8 bf16 matrices from shared memory, transposed: lanes 0-15 give the rows of matrices 0
// and 1, lanes 16-31 those of 2 and 3.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a b for one m16n8k16 tile.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_prefill_mma_kernel(const float* __restrict__ q, const bf16* __restrict__ k_cache,
                             const bf16* __restrict__ v_cache, float* __restrict__ out,
                             const int32_t* __restrict__ query_start_loc,
                             const int32_t* __restrict__ seq_lens,
                             const int32_t* __restrict__ block_table, FlashTiles tiles,
                             PagedAttentionArgs a) {
  constexpr int kLd = D + 8;  // K and V tiles [kKeys][kLd]: conflict-free fragment loads
  constexpr int kStage = kKeys * kLd;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* k_s = reinterpret_cast<bf16*>(smem);  // [2 stages][kKeys][kLd]
  bf16* v_s = k_s + 2 * kStage;               // [2 stages][kKeys][kLd]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t4 = lane % 4;  // fragment row group and column pair
  // Heads vary fastest across blocks: the query heads sharing a KV head read its tiles from L2.
  const int64_t tile = blockIdx.x / a.num_heads;
  const int64_t head = blockIdx.x % a.num_heads;
  const int64_t kv_head = head / (a.num_heads / a.num_kv_heads);
  const int32_t req = tiles.tile_req[tile];
  const int64_t q0 = tiles.tile_first_token[tile];  // token index of row 0
  const int32_t q_start = query_start_loc[req];
  const int32_t q_end = query_start_loc[req + 1];
  const int rows = static_cast<int>(min(static_cast<int64_t>(kRows), q_end - q0));
  const int64_t pos0 = seq_lens[req] - (q_end - q_start) + (q0 - q_start);  // row 0's position
  const int64_t hi = pos0 + rows - 1;                                       // last key needed
  const int64_t lo = a.sliding_window > 0 ? max(int64_t{0}, pos0 - a.sliding_window + 1) : 0;
  const int32_t* blocks = block_table + static_cast<int64_t>(req) * a.max_blocks_per_req;

  // This thread's two rows (of the warp's 16) and their positions.
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const int64_t qpos0 = pos0 + r0, qpos1 = pos0 + r1;

  // Q fragments for every 16-wide slice of the head (rows past the request's end are zero).
  uint32_t qf[D / 16][4];
  {
    const float* q_r0 = q + ((q0 + r0) * a.num_heads + head) * D;
    const float* q_r1 = q + ((q0 + r1) * a.num_heads + head) * D;
    const float2 zero = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c = kk * 16 + 2 * t4;
      const float2 x00 = r0 < rows ? *reinterpret_cast<const float2*>(q_r0 + c) : zero;
      const float2 x10 = r1 < rows ? *reinterpret_cast<const float2*>(q_r1 + c) : zero;
      const float2 x01 = r0 < rows ? *reinterpret_cast<const float2*>(q_r0 + c + 8) : zero;
      const float2 x11 = r1 < rows ? *reinterpret_cast<const float2*>(q_r1 + c + 8) : zero;
      qf[kk][0] = pack_bf16(x00.x, x00.y);
      qf[kk][1] = pack_bf16(x10.x, x10.y);
      qf[kk][2] = pack_bf16(x01.x, x01.y);
      qf[kk][3] = pack_bf16(x11.x, x11.y);
    }
  }

  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -FLT_MAX, m1 = -FLT_MAX;  // running maxima (finite: corrections are never NaN)
  float l0 = 0.0f, l1 = 0.0f;          // running sums (of this thread's columns until the end)

  // Tile `it` covers keys [lo + it * kKeys, ...]; its copies go to stage it % 2.
  const int num_tiles = static_cast<int>((hi - lo) / kKeys + 1);
  auto load_tile = [&](int it) {
    const int64_t k0 = lo + static_cast<int64_t>(it) * kKeys;
    const int n = static_cast<int>(min(static_cast<int64_t>(kKeys), hi + 1 - k0));
    bf16* ks = k_s + (it % 2) * kStage;
    bf16* vs = v_s + (it % 2) * kStage;
    for (int i = threadIdx.x; i < kKeys * (D / 8); i += kThreads) {
      const int j = i / (D / 8), c = (i % (D / 8)) * 8;
      int64_t base = 0;  // keys past the end read nothing and are zero-filled
      if (j < n) {
        const int64_t p = k0 + j;
        base = ((static_cast<int64_t>(blocks[p / a.block_size]) * a.num_kv_heads + kv_head) *
                    a.block_size + p % a.block_size) * D + c;
      }
      cp_async_16(ks + j * kLd + c, k_cache + base, j < n ? 16 : 0);
      cp_async_16(vs + j * kLd + c, v_cache + base, j < n ? 16 : 0);
    }
    cp_async_commit();
  };
  load_tile(0);
  for (int it = 0; it < num_tiles; ++it) {
    const int64_t k0 = lo + static_cast<int64_t>(it) * kKeys;
    const int n = static_cast<int>(min(static_cast<int64_t>(kKeys), hi + 1 - k0));
    if (it + 1 < num_tiles) {
      load_tile(it + 1);  // its stage was last read in iteration it - 1, before the barrier
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies of tile `it` have landed
    const bf16* ks = k_s + (it % 2) * kStage;
    const bf16* vs = v_s + (it % 2) * kStage;

    // S = Q K^T: 8 tiles of 8 keys.
    float s[kKeys / 8][4];
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
      const bf16* kp = ks + (j * 8 + g) * kLd + 2 * t4;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kp + kk * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(kp + kk * 16 + 8);
        mma_bf16(s[j], qf[kk], b0, b1);
      }
    }

    // Scale, softcap and mask; the rows' new maxima over the quad that shares them. Most tiles lie
    // wholly before every row's position and inside every row's window: they need no mask.
    const bool whole_tile = n == kKeys && k0 + kKeys - 1 <= pos0 &&
                            (a.sliding_window <= 0 || k0 > hi - a.sliding_window);
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = s[j][e] * a.scale;
        if (a.logit_softcap > 0.0f) v = a.logit_softcap * tanhf(v / a.logit_softcap);
        if (!whole_tile) {
          const int col = j * 8 + 2 * t4 + (e & 1);
          const int64_t kpos = k0 + col;
          const int64_t qpos = e < 2 ? qpos0 : qpos1;
          const bool visible = col < n && kpos <= qpos &&
                               (a.sliding_window <= 0 || kpos > qpos - a.sliding_window);
          if (!visible) v = -INFINITY;
        }
        s[j][e] = v;
      }
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float new_m0 = fmaxf(m0, mx0), new_m1 = fmaxf(m1, mx1);
    const float corr0 = __expf(m0 - new_m0), corr1 = __expf(m1 - new_m1);
    m0 = new_m0;
    m1 = new_m1;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      s[j][0] = __expf(s[j][0] - m0);  // exp(-inf) = 0 for masked keys
      s[j][1] = __expf(s[j][1] - m0);
      s[j][2] = __expf(s[j][2] - m1);
      s[j][3] = __expf(s[j][3] - m1);
      sum0 += s[j][0] + s[j][1];
      sum1 += s[j][2] + s[j][3];
    }
    l0 = l0 * corr0 + sum0;  // this thread's columns; the quad's sums are added at the end
    l1 = l1 * corr1 + sum1;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][0] *= corr0;
      o[j][1] *= corr0;
      o[j][2] *= corr1;
      o[j][3] *= corr1;
    }

    // O += P V: P's 16-key slices are S's tile pairs, repacked as bf16 A fragments.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                              pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      // Lane l points at key kk * 16 + l % 16, dimensions 8 j + 8 (l / 16): two 8-dim tiles.
      const bf16* vrow = vs + (kk * 16 + lane % 16) * kLd + (lane / 16) * 8;
#pragma unroll
      for (int j = 0; j < D / 8; j += 2) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, vrow + j * 8);
        mma_bf16(o[j], pa, b[0], b[1]);
        mma_bf16(o[j + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // this stage is rewritten by the load two iterations on
  }

  // Whole-row sums over the quad, then normalize and write this thread's columns.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  float* out_r0 = out + ((q0 + r0) * a.num_heads + head) * D + 2 * t4;
  float* out_r1 = out + ((q0 + r1) * a.num_heads + head) * D + 2 * t4;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    if (r0 < rows) *reinterpret_cast<float2*>(out_r0 + j * 8) = make_float2(o[j][0] * inv0, o[j][1] * inv0);
    if (r1 < rows) *reinterpret_cast<float2*>(out_r1 + j * 8) = make_float2(o[j][2] * inv1, o[j][3] * inv1);
  }
}

template <int D>
void launch(const float* q, const bf16* k_cache, const bf16* v_cache, float* out,
            const int32_t* query_start_loc, const int32_t* seq_lens, const int32_t* block_table,
            const FlashTiles& tiles, const PagedAttentionArgs& a, cudaStream_t stream) {
  constexpr size_t bytes = sizeof(bf16) * 4 * kKeys * (D + 8);  // K and V, two stages
  static bool configured = false;  // above 48 KB of shared memory needs opting in, once
  if (!configured) {
    CVLLM_CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_mma_kernel<D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    configured = true;
  }
  const unsigned grid = static_cast<unsigned>(tiles.num_tiles * a.num_heads);
  flash_prefill_mma_kernel<D><<<grid, kThreads, bytes, stream>>>(q, k_cache, v_cache, out,
                                                             query_start_loc, seq_lens,
                                                             block_table, tiles, a);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool flash_prefill_mma_supports(int64_t head_size) { return head_size == 64 || head_size == 128; }

void flash_prefill_attention_mma(const float* q, const void* k_cache, const void* v_cache,
                                 float* out, const int32_t* query_start_loc,
                                 const int32_t* seq_lens, const int32_t* block_table,
                                 const FlashTiles& tiles, const PagedAttentionArgs& a,
                                 cudaStream_t stream) {
  if (tiles.num_tiles == 0 || a.num_heads == 0) return;
  const auto* k = static_cast<const bf16*>(k_cache);
  const auto* v = static_cast<const bf16*>(v_cache);
  if (a.head_size == 64) {
    return launch<64>(q, k, v, out, query_start_loc, seq_lens, block_table, tiles, a, stream);
  }
  if (a.head_size == 128) {
    return launch<128>(q, k, v, out, query_start_loc, seq_lens, block_table, tiles, a, stream);
  }
  throw_cuda_error(cudaErrorInvalidValue, "flash_prefill_attention_mma (head size not 64 or 128)",
                   __FILE__, __LINE__);
}

}  // namespace cvllm::cuda
