// Prefill attention for head sizes 64 and 128 with FlashAttention-2's register-resident scheme on
// mma.sync (m16n8k16, bf16 operands, f32 accumulation). A thread block takes a tile of 128 query
// rows of one request and one query head (4 warps of 32 rows, two 16-row MMA tiles each) and walks
// the request's keys in tiles of 32 (head size 128) or 64 keys from the paged bf16 cache. Each warp keeps its scores
// S = Q K^T and its output accumulator O in registers: the fragment layout of m16n8k16 is fixed by
// the PTX ISA (thread lane holds rows lane / 4 and lane / 4 + 8, columns 2 * (lane % 4) + {0, 1}
// of each 8-wide tile), so the online softmax rescales O's rows in place, and S's accumulator
// tiles become P's A fragments without going through memory. Q sits in shared memory as bf16; K
// and V tiles are copied there with cp.async, two stages deep (the next tile loads while this one
// is multiplied). Every operand fragment comes through ldmatrix (V's transposed), and each K and V
// fragment feeds both of a warp's row tiles: with one 16-row tile per warp, shared-memory
// bandwidth rather than the tensor cores bounded the kernel (ncu: ~124 TFLOP/s on an 8k prefill).
// The longest tiles (the last of a request) start first, and a warp skips key tiles wholly past
// its rows.
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
constexpr int kWarps = 4;
constexpr int kWarpRows = kRows / kWarps;  // two 16-row MMA tiles per warp
constexpr int kThreads = kWarps * 32;
static_assert(kRows == 128 && kWarpRows == 32, "four warps of two 16-row tiles");

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

// Four 8x8 bf16 matrices from shared memory; lanes 8 i .. 8 i + 7 give the row addresses of
// matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// The same, transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 2^x (the approximation __expf is built on; scores are kept in base-2 units).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
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
struct MmaLayout {
  // Keys per tile: 32 for head size 128 keeps S and O in registers without spills (with 64, ptxas
  // spilled 272 bytes per thread).
  static constexpr int kKeys = D >= 128 ? 32 : 64;
  static constexpr int kLd = D + 8;  // bf16 rows [.][kLd]: conflict-free ldmatrix
  static constexpr int kStage = kKeys * kLd;
  static constexpr size_t kBytes = sizeof(bf16) * (kRows * kLd + 4 * kStage);  // Q, K and V x 2
};

template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_prefill_mma_kernel(const float* __restrict__ q, const bf16* __restrict__ k_cache,
                             const bf16* __restrict__ v_cache, float* __restrict__ out,
                             bf16* __restrict__ out_bf16,
                             const int32_t* __restrict__ query_start_loc,
                             const int32_t* __restrict__ seq_lens,
                             const int32_t* __restrict__ block_table, FlashTiles tiles,
                             PagedAttentionArgs a) {
  using L = MmaLayout<D>;
  constexpr int kLd = L::kLd;
  constexpr int kKeys = L::kKeys;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kRows][kLd]
  bf16* k_s = q_s + kRows * kLd;              // [2 stages][kKeys][kLd]
  bf16* v_s = k_s + 2 * L::kStage;            // [2 stages][kKeys][kLd]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t4 = lane % 4;  // fragment row group and column pair
  // Heads vary fastest across blocks (the query heads sharing a KV head read its tiles from L2);
  // tiles run last first, so the longest start early and short ones fill the end.
  const int64_t tile = tiles.num_tiles - 1 - blockIdx.x / a.num_heads;
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
  const unsigned block_size = static_cast<unsigned>(a.block_size);
  constexpr float kLog2e = 1.4426950408889634f;
  const float scale_log2 = a.scale * kLog2e;

  // Tile `it` covers keys [lo + it * kKeys, ...]; its copies go to stage it % 2.
  const int num_tiles = static_cast<int>((hi - lo) / kKeys + 1);
  auto load_tile = [&](int it) {
    const int64_t k0 = lo + static_cast<int64_t>(it) * kKeys;
    const int n = static_cast<int>(min(static_cast<int64_t>(kKeys), hi + 1 - k0));
    bf16* ks = k_s + (it % 2) * L::kStage;
    bf16* vs = v_s + (it % 2) * L::kStage;
    for (int i = threadIdx.x; i < kKeys * (D / 8); i += kThreads) {
      const int j = i / (D / 8), c = (i % (D / 8)) * 8;
      int64_t base = 0;  // keys past the end read nothing and are zero-filled
      if (j < n) {
        // 32-bit index math: a 64-bit division by the runtime block size costs ~100 instructions.
        const unsigned p = static_cast<unsigned>(k0 + j);
        const unsigned block = p / block_size;
        base = ((static_cast<int64_t>(blocks[block]) * a.num_kv_heads + kv_head) * block_size +
                (p - block * block_size)) * D + c;
      }
      cp_async_16(ks + j * kLd + c, k_cache + base, j < n ? 16 : 0);
      cp_async_16(vs + j * kLd + c, v_cache + base, j < n ? 16 : 0);
    }
    cp_async_commit();
  };
  load_tile(0);

  // Q rows as bf16 (rows past the request's end are zero), while the first tile is in flight.
  for (int i = threadIdx.x; i < kRows * D / 4; i += kThreads) {
    const int r = i / (D / 4), c = (i % (D / 4)) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < rows) v = *reinterpret_cast<const float4*>(q + ((q0 + r) * a.num_heads + head) * D + c);
    uint2 packed;
    packed.x = pack_bf16(v.x, v.y);
    packed.y = pack_bf16(v.z, v.w);
    *reinterpret_cast<uint2*>(q_s + r * kLd + c) = packed;
  }

  // This thread's rows: warp * 32 + mt * 16 + g (+ 8), for row tiles mt = 0, 1.
  const int warp_row0 = warp * kWarpRows;
  float o[2][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
  }
  // Running maxima (finite: corrections are never NaN) and sums (of this thread's columns until
  // the end), per row tile and row half.
  float m[2][2] = {{-FLT_MAX, -FLT_MAX}, {-FLT_MAX, -FLT_MAX}};
  float l[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  // ldmatrix row addresses: A (Q) tiles take row (lane % 16), column 8 (lane / 16); B (K) tiles
  // take key 8 (lane / 16) + lane % 8, dimension 8 ((lane / 8) % 2); V (transposed) key lane % 16,
  // dimension 8 (lane / 16).
  const bf16* q_frag = q_s + (warp_row0 + lane % 16) * kLd + (lane / 16) * 8;
  const int k_frag = ((lane / 16) * 8 + lane % 8) * kLd + ((lane / 8) % 2) * 8;
  const int v_frag = (lane % 16) * kLd + (lane / 16) * 8;

  for (int it = 0; it < num_tiles; ++it) {
    const int64_t k0 = lo + static_cast<int64_t>(it) * kKeys;
    const int n = static_cast<int>(min(static_cast<int64_t>(kKeys), hi + 1 - k0));
    if (it + 1 < num_tiles) {
      load_tile(it + 1);  // its stage was last read in iteration it - 1, before the barrier
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies of tile `it` (and Q) have landed
    const bf16* ks = k_s + (it % 2) * L::kStage;
    const bf16* vs = v_s + (it % 2) * L::kStage;
    // A warp whose last row comes before the tile's first key has nothing to do here.
    const int64_t warp_last_pos = pos0 + warp_row0 + kWarpRows - 1;
    if (k0 <= warp_last_pos && warp_row0 < rows) {
      // S = Q K^T: 8 tiles of 8 keys per row tile; each K fragment serves both row tiles.
      float s[2][kKeys / 8][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
      }
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[2][4];
        ldmatrix_x4(qa[0], q_frag + kk * 16);
        ldmatrix_x4(qa[1], q_frag + 16 * kLd + kk * 16);
#pragma unroll
        for (int j = 0; j < kKeys / 8; j += 2) {
          uint32_t b[4];
          ldmatrix_x4(b, ks + j * 8 * kLd + k_frag + kk * 16);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma_bf16(s[mt][j], qa[mt], b[0], b[1]);
            mma_bf16(s[mt][j + 1], qa[mt], b[2], b[3]);
          }
        }
      }

      // Scale (in base-2 units: exp(x) = 2^(x log2 e), one multiply saved per score), softcap
      // and mask; the rows' new maxima over the quad that shares them. Most tiles lie wholly
      // before every row's position and inside every row's window: no mask.
      const bool whole_tile = n == kKeys && k0 + kKeys - 1 <= pos0 + warp_row0 &&
                              (a.sliding_window <= 0 || k0 > hi - a.sliding_window);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const int64_t qpos0 = pos0 + warp_row0 + mt * 16 + g, qpos1 = qpos0 + 8;
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float v = s[mt][j][e] * scale_log2;
            if (a.logit_softcap > 0.0f) {
              v = a.logit_softcap * tanhf(s[mt][j][e] * a.scale / a.logit_softcap) * kLog2e;
            }
            if (!whole_tile) {
              const int col = j * 8 + 2 * t4 + (e & 1);
              const int64_t kpos = k0 + col;
              const int64_t qpos = e < 2 ? qpos0 : qpos1;
              const bool visible = col < n && kpos <= qpos &&
                                   (a.sliding_window <= 0 || kpos > qpos - a.sliding_window);
              if (!visible) v = -INFINITY;
            }
            s[mt][j][e] = v;
          }
          mx0 = fmaxf(mx0, fmaxf(s[mt][j][0], s[mt][j][1]));
          mx1 = fmaxf(mx1, fmaxf(s[mt][j][2], s[mt][j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float new_m0 = fmaxf(m[mt][0], mx0), new_m1 = fmaxf(m[mt][1], mx1);
        const float corr0 = exp2_approx(m[mt][0] - new_m0), corr1 = exp2_approx(m[mt][1] - new_m1);
        m[mt][0] = new_m0;
        m[mt][1] = new_m1;
        float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) {
          s[mt][j][0] = exp2_approx(s[mt][j][0] - new_m0);  // 2^-inf = 0 for masked keys
          s[mt][j][1] = exp2_approx(s[mt][j][1] - new_m0);
          s[mt][j][2] = exp2_approx(s[mt][j][2] - new_m1);
          s[mt][j][3] = exp2_approx(s[mt][j][3] - new_m1);
          sum0 += s[mt][j][0] + s[mt][j][1];
          sum1 += s[mt][j][2] + s[mt][j][3];
        }
        l[mt][0] = l[mt][0] * corr0 + sum0;  // the quad's sums are added at the end
        l[mt][1] = l[mt][1] * corr1 + sum1;
        if (__any_sync(0xffffffffu, corr0 != 1.0f || corr1 != 1.0f)) {  // some row's max moved
#pragma unroll
          for (int j = 0; j < D / 8; ++j) {
            o[mt][j][0] *= corr0;
            o[mt][j][1] *= corr0;
            o[mt][j][2] *= corr1;
            o[mt][j][3] *= corr1;
          }
        }
      }

      // O += P V: P's 16-key slices are S's tile pairs, repacked as bf16 A fragments; each V
      // fragment serves both row tiles.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        uint32_t pa[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
        const bf16* vrow = vs + kk * 16 * kLd + v_frag;
#pragma unroll
        for (int j = 0; j < D / 8; j += 2) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vrow + j * 8);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma_bf16(o[mt][j], pa[mt], b[0], b[1]);
            mma_bf16(o[mt][j + 1], pa[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // this stage is rewritten by the load two iterations on
  }

  // Whole-row sums over the quad, then normalize and write this thread's columns.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    float l0 = l[mt][0], l1 = l[mt][1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const int r0 = warp_row0 + mt * 16 + g, r1 = r0 + 8;
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    float* out_r0 = out + ((q0 + r0) * a.num_heads + head) * D + 2 * t4;
    float* out_r1 = out + ((q0 + r1) * a.num_heads + head) * D + 2 * t4;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const float2 v0 = make_float2(o[mt][j][0] * inv0, o[mt][j][1] * inv0);
      const float2 v1 = make_float2(o[mt][j][2] * inv1, o[mt][j][3] * inv1);
      if (r0 < rows) *reinterpret_cast<float2*>(out_r0 + j * 8) = v0;
      if (r1 < rows) *reinterpret_cast<float2*>(out_r1 + j * 8) = v1;
      if (out_bf16 != nullptr) {  // the output projection's input
        const int64_t offset = ((q0 + r0) * a.num_heads + head) * D + 2 * t4 + j * 8;
        if (r0 < rows) *reinterpret_cast<uint32_t*>(out_bf16 + offset) = pack_bf16(v0.x, v0.y);
        if (r1 < rows) {
          *reinterpret_cast<uint32_t*>(out_bf16 + offset + 8 * a.num_heads * D) = pack_bf16(v1.x, v1.y);
        }
      }
    }
  }
}

template <int D>
void launch(const float* q, const bf16* k_cache, const bf16* v_cache, float* out, bf16* out_bf16,
            const int32_t* query_start_loc, const int32_t* seq_lens, const int32_t* block_table,
            const FlashTiles& tiles, const PagedAttentionArgs& a, cudaStream_t stream) {
  constexpr size_t bytes = MmaLayout<D>::kBytes;
  static bool configured = false;  // above 48 KB of shared memory needs opting in, once
  if (!configured) {
    CVLLM_CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_mma_kernel<D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    configured = true;
  }
  const unsigned grid = static_cast<unsigned>(tiles.num_tiles * a.num_heads);
  flash_prefill_mma_kernel<D><<<grid, kThreads, bytes, stream>>>(q, k_cache, v_cache, out, out_bf16,
                                                             query_start_loc, seq_lens,
                                                             block_table, tiles, a);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool flash_prefill_mma_supports(int64_t head_size) { return head_size == 64 || head_size == 128; }

void flash_prefill_attention_mma(const float* q, const void* k_cache, const void* v_cache,
                                 float* out, bf16* out_bf16, const int32_t* query_start_loc,
                                 const int32_t* seq_lens, const int32_t* block_table,
                                 const FlashTiles& tiles, const PagedAttentionArgs& a,
                                 cudaStream_t stream) {
  if (tiles.num_tiles == 0 || a.num_heads == 0) return;
  const auto* k = static_cast<const bf16*>(k_cache);
  const auto* v = static_cast<const bf16*>(v_cache);
  if (a.head_size == 64) {
    return launch<64>(q, k, v, out, out_bf16, query_start_loc, seq_lens, block_table, tiles, a, stream);
  }
  if (a.head_size == 128) {
    return launch<128>(q, k, v, out, out_bf16, query_start_loc, seq_lens, block_table, tiles, a, stream);
  }
  throw_cuda_error(cudaErrorInvalidValue, "flash_prefill_attention_mma (head size not 64 or 128)",
                   __FILE__, __LINE__);
}

}  // namespace cvllm::cuda
