// Prefill attention on tensor cores (FlashAttention-2's scheme, written with WMMA): a thread block
// takes 64 query rows (half a prefill tile) of one request and one query head and walks the request's keys in tiles of
// 64 from the paged bf16 cache. Per tile, each of the 4 warps computes its 16 rows of
// S = Q K^T (bf16 operands, f32 accumulation), applies scale, softcap and the causal / sliding-window
// mask, updates its rows' running max and sum (online softmax), rescales its rows of the f32
// output accumulator and adds P V with P rounded to bf16.
//
// The accumulator lives in shared memory (a WMMA fragment's element-to-row mapping is opaque, so
// the per-row rescale goes through memory). The CUDA-core kernel in attention.cu handles decode
// and short chunks; a token's path depends only on its own request's query length, so results
// stay batch invariant.
#include <mma.h>

#include <cfloat>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"

namespace cvllm::cuda {
namespace {

using namespace nvcuda;

constexpr int kRows = 64;  // query rows per block: half a tile (kFlashTileQueries)
constexpr int kHalves = kFlashTileQueries / kRows;
constexpr int kKeys = 64;                 // keys per tile
constexpr int kWarps = kRows / 16;        // each warp owns 16 query rows
constexpr int kThreads = kWarps * 32;
static_assert(kRows == 64, "four warps of 16 rows");

// Shared-memory layout for head size D. Leading dimensions are padded (bank conflicts) and keep
// every 16x16 fragment 32-byte aligned, as WMMA requires.
template <int D>
struct Smem {
  static constexpr int kLdQ = D + 8;      // bf16 [kRows][kLdQ]
  static constexpr int kLdKV = D + 8;     // bf16 [kKeys][kLdKV], K and V
  static constexpr int kLdS = kKeys + 4;  // f32 [kRows][kLdS] scores
  static constexpr int kLdP = kKeys + 8;  // bf16 [kRows][kLdP] probabilities
  static constexpr int kLdO = D + 4;      // f32 [kRows][kLdO] output accumulator
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + sizeof(bf16) * kRows * kLdQ;
  static constexpr size_t kV = kK + sizeof(bf16) * kKeys * kLdKV;
  static constexpr size_t kS = kV + sizeof(bf16) * kKeys * kLdKV;
  static constexpr size_t kP = kS + sizeof(float) * kRows * kLdS;
  static constexpr size_t kO = kP + sizeof(bf16) * kRows * kLdP;
  static constexpr size_t kStats = kO + sizeof(float) * kRows * kLdO;  // m, l, correction
  static constexpr size_t kBytes = kStats + sizeof(float) * 3 * kRows;
};

template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_prefill_kernel(const float* __restrict__ q, const bf16* __restrict__ k_cache,
                         const bf16* __restrict__ v_cache, float* __restrict__ out,
                         const int32_t* __restrict__ query_start_loc,
                         const int32_t* __restrict__ seq_lens,
                         const int32_t* __restrict__ block_table, FlashTiles tiles,
                         PagedAttentionArgs a) {
  using L = Smem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem + L::kQ);
  bf16* k_s = reinterpret_cast<bf16*>(smem + L::kK);
  bf16* v_s = reinterpret_cast<bf16*>(smem + L::kV);
  float* s_s = reinterpret_cast<float*>(smem + L::kS);
  bf16* p_s = reinterpret_cast<bf16*>(smem + L::kP);
  float* o_s = reinterpret_cast<float*>(smem + L::kO);
  float* m_s = reinterpret_cast<float*>(smem + L::kStats);
  float* l_s = m_s + kRows;
  float* corr_s = l_s + kRows;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Heads vary fastest across blocks: the query heads sharing a KV head read its tiles from L2.
  const int64_t tile = blockIdx.x / (a.num_heads * kHalves);
  const int64_t half = blockIdx.x / a.num_heads % kHalves;
  const int64_t head = blockIdx.x % a.num_heads;
  const int32_t req = tiles.tile_req[tile];
  const int64_t q0 = tiles.tile_first_token[tile] + half * kRows;  // token index of row 0
  const int64_t kv_head = head / (a.num_heads / a.num_kv_heads);
  const int32_t q_start = query_start_loc[req];
  const int32_t q_end = query_start_loc[req + 1];
  if (q0 >= q_end) return;  // the tile's second half is past the request's end
  const int rows = static_cast<int>(min(static_cast<int64_t>(kRows), q_end - q0));
  const int64_t pos0 = seq_lens[req] - (q_end - q_start) + (q0 - q_start);  // row 0's position
  const int64_t hi = pos0 + rows - 1;                                       // last key needed
  const int64_t lo = a.sliding_window > 0 ? max(int64_t{0}, pos0 - a.sliding_window + 1) : 0;
  const int32_t* blocks = block_table + static_cast<int64_t>(req) * a.max_blocks_per_req;

  // Q rows as bf16 (rows past the request's end are zero), accumulator and statistics cleared.
  for (int i = threadIdx.x; i < kRows * D / 4; i += kThreads) {
    const int r = i / (D / 4), c = (i % (D / 4)) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < rows) v = *reinterpret_cast<const float4*>(q + ((q0 + r) * a.num_heads + head) * D + c);
    q_s[r * L::kLdQ + c] = __float2bfloat16_rn(v.x);
    q_s[r * L::kLdQ + c + 1] = __float2bfloat16_rn(v.y);
    q_s[r * L::kLdQ + c + 2] = __float2bfloat16_rn(v.z);
    q_s[r * L::kLdQ + c + 3] = __float2bfloat16_rn(v.w);
  }
  for (int i = threadIdx.x; i < kRows * D; i += kThreads) o_s[(i / D) * L::kLdO + i % D] = 0.0f;
  for (int r = threadIdx.x; r < kRows; r += kThreads) {
    m_s[r] = -FLT_MAX;  // finite: exp(m - new_m) is then 0 or 1, never NaN
    l_s[r] = 0.0f;
  }

  const int my_row0 = warp * 16;
  for (int64_t k0 = lo; k0 <= hi; k0 += kKeys) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kKeys), hi + 1 - k0));
    __syncthreads();  // the previous tile's K/V are no longer read (and setup is done)
    constexpr int kChunks = D / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < kKeys * kChunks; i += kThreads) {
      const int j = i / kChunks, c = (i % kChunks) * 8;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (j < n) {
        const int64_t p = k0 + j;
        const int64_t base =
            ((static_cast<int64_t>(blocks[p / a.block_size]) * a.num_kv_heads + kv_head) *
                 a.block_size + p % a.block_size) * D + c;
        kv = *reinterpret_cast<const uint4*>(k_cache + base);
        vv = *reinterpret_cast<const uint4*>(v_cache + base);
      }
      *reinterpret_cast<uint4*>(k_s + j * L::kLdKV + c) = kv;
      *reinterpret_cast<uint4*>(v_s + j * L::kLdKV + c) = vv;
    }
    __syncthreads();

    // S rows of this warp = Q K^T.
    for (int j = 0; j < kKeys / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, q_s + my_row0 * L::kLdQ + kk * 16, L::kLdQ);
        wmma::load_matrix_sync(fb, k_s + j * 16 * L::kLdKV + kk * 16, L::kLdKV);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(s_s + my_row0 * L::kLdS + j * 16, acc, L::kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax: two lanes per row, 32 keys each.
    {
      const int r = my_row0 + lane / 2;
      const int c0 = (lane % 2) * (kKeys / 2);
      const int64_t qpos = pos0 + r;
      float sc[kKeys / 2];
      float row_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < kKeys / 2; ++c) {
        const int64_t kpos = k0 + c0 + c;
        float s = s_s[r * L::kLdS + c0 + c] * a.scale;
        if (a.logit_softcap > 0.0f) s = a.logit_softcap * tanhf(s / a.logit_softcap);
        const bool visible = c0 + c < n && kpos <= qpos &&
                             (a.sliding_window <= 0 || kpos > qpos - a.sliding_window);
        sc[c] = visible ? s : -INFINITY;
        row_max = fmaxf(row_max, sc[c]);
      }
      row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, row_max);
      float sum = 0.0f;
#pragma unroll
      for (int c = 0; c < kKeys / 2; ++c) {
        const float p = __expf(sc[c] - m_new);  // exp(-inf) = 0 for masked keys
        p_s[r * L::kLdP + c0 + c] = __float2bfloat16_rn(p);
        sum += p;
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      __syncwarp();
      if (lane % 2 == 0) {
        const float corr = __expf(m_old - m_new);
        corr_s[r] = corr;
        l_s[r] = l_s[r] * corr + sum;
        m_s[r] = m_new;
      }
    }
    __syncwarp();
    for (int i = lane; i < 16 * D; i += 32) {
      const int r = my_row0 + i / D;
      o_s[r * L::kLdO + i % D] *= corr_s[r];
    }
    __syncwarp();

    // O rows of this warp += P V.
    for (int j = 0; j < D / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, o_s + my_row0 * L::kLdO + j * 16, L::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, p_s + my_row0 * L::kLdP + kk * 16, L::kLdP);
        wmma::load_matrix_sync(fb, v_s + kk * 16 * L::kLdKV + j * 16, L::kLdKV);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(o_s + my_row0 * L::kLdO + j * 16, acc, L::kLdO, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < rows * D; i += kThreads) {
    const int r = i / D, e = i % D;
    out[((q0 + r) * a.num_heads + head) * D + e] = o_s[r * L::kLdO + e] / l_s[r];
  }
}

template <int D>
void launch(const float* q, const bf16* k_cache, const bf16* v_cache, float* out,
            const int32_t* query_start_loc, const int32_t* seq_lens, const int32_t* block_table,
            const FlashTiles& tiles, const PagedAttentionArgs& a, cudaStream_t stream) {
  constexpr size_t bytes = Smem<D>::kBytes;
  static bool configured = false;  // above 48 KB of shared memory needs opting in, once
  if (!configured) {
    CVLLM_CUDA_CHECK(cudaFuncSetAttribute(flash_prefill_kernel<D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    configured = true;
  }
  const unsigned grid = static_cast<unsigned>(tiles.num_tiles * kHalves * a.num_heads);
  flash_prefill_kernel<D><<<grid, kThreads, bytes, stream>>>(q, k_cache, v_cache, out, query_start_loc,
                                                             seq_lens, block_table, tiles, a);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool flash_prefill_supports(const PagedAttentionArgs& a) {
  return a.cache_is_bf16 && (a.head_size == 64 || a.head_size == 128 || a.head_size == 256);
}

void flash_prefill_attention(const float* q, const void* k_cache, const void* v_cache, float* out,
                             const int32_t* query_start_loc, const int32_t* seq_lens,
                             const int32_t* block_table, const FlashTiles& tiles,
                             const PagedAttentionArgs& a, cudaStream_t stream) {
  if (tiles.num_tiles == 0 || a.num_heads == 0) return;
  const auto* k = static_cast<const bf16*>(k_cache);
  const auto* v = static_cast<const bf16*>(v_cache);
  switch (a.head_size) {
    case 64: return launch<64>(q, k, v, out, query_start_loc, seq_lens, block_table, tiles, a, stream);
    case 128: return launch<128>(q, k, v, out, query_start_loc, seq_lens, block_table, tiles, a, stream);
    case 256: return launch<256>(q, k, v, out, query_start_loc, seq_lens, block_table, tiles, a, stream);
    default: break;
  }
  throw_cuda_error(cudaErrorInvalidValue, "flash_prefill_attention (unsupported head size)",
                   __FILE__, __LINE__);
}

}  // namespace cvllm::cuda
