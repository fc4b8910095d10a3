// Token sampling on the GPU, so a decode step copies back token ids instead of [rows, vocab]
// logits (131 MB per step for 256 rows of a 128k vocabulary). It reproduces the host sampler's
// full-vocabulary path (layers/sampler.cpp, Sampler::sample_full_vocabulary) with the same uniform
// draw: probabilities = softmax(logits / max(temperature, 0.01)), min_p zeroes those below
// min_p * max probability, and the token is the first, in vocabulary order, whose cumulative
// probability passes u * total. Greedy rows take the first maximum. Only the order of the
// floating-point sums differs from the host, which moves a draw only when u lands within rounding
// of a boundary.
//
// One block per row. The vocabulary is cut into 32 contiguous segments, one per warp; warps read
// their segment coalesced. The draw finds the segment holding u * total from the segments' sums,
// then that warp scans its segment 32 tokens at a time.
#include <cfloat>
#include <climits>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"

namespace cvllm::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float warp_max(float v) {
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Block-wide max / sum; every thread gets the result. `scratch` has kWarps entries.
__device__ float block_max(float v, float* scratch) {
  v = warp_max(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x % 32 < kWarps ? scratch[threadIdx.x % 32] : -FLT_MAX;
  return warp_max(v);
}
__device__ double block_sum(double v, double* scratch) {
  v = warp_sum(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x % 32 < kWarps ? scratch[threadIdx.x % 32] : 0.0;
  return warp_sum(v);
}

// The better of two (value, id) candidates: larger value, then smaller id.
__device__ __forceinline__ void keep_best(float& v, int& id, float ov, int oid) {
  if (ov > v || (ov == v && oid < id)) {
    v = ov;
    id = oid;
  }
}

__device__ int block_argmax(const float* __restrict__ x, int64_t vocab) {
  __shared__ float best_v[kWarps];
  __shared__ int best_id[kWarps];
  float v = -INFINITY;
  int id = INT_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) keep_best(v, id, x[i], static_cast<int>(i));
  for (int off = 16; off > 0; off /= 2) {
    keep_best(v, id, __shfl_xor_sync(0xffffffffu, v, off), __shfl_xor_sync(0xffffffffu, id, off));
  }
  if (threadIdx.x % 32 == 0) {
    best_v[threadIdx.x / 32] = v;
    best_id[threadIdx.x / 32] = id;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWarps; ++w) keep_best(v, id, best_v[w], best_id[w]);
    best_id[0] = id == INT_MAX ? 0 : id;  // every logit NaN: the host's max_element gives 0 too
  }
  __syncthreads();
  return best_id[0];
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* __restrict__ logits, int64_t vocab,
                  const SampleRowParams* __restrict__ params, int32_t* __restrict__ out) {
  const SampleRowParams p = params[blockIdx.x];
  const float* x = logits + static_cast<int64_t>(p.row) * vocab;
  if (p.greedy) {
    const int id = block_argmax(x, vocab);
    if (threadIdx.x == 0) out[blockIdx.x] = id;
    return;
  }
  __shared__ float scratch_f[kWarps];
  __shared__ double scratch_d[kWarps];
  __shared__ double segment_sum[kWarps];
  __shared__ int last_kept[kWarps];
  __shared__ int chosen_warp, found;
  __shared__ double chosen_base, target;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float temperature = fmaxf(p.temperature, 0.01f);

  float m = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, x[i] / temperature);
  m = block_max(m, scratch_f);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) sum += expf(x[i] / temperature - m);
  sum = block_sum(sum, scratch_d);
  const float inv = static_cast<float>(1.0 / sum);
  // The largest probability is exp(0) * inv.
  const float threshold = p.min_p > 0.0f ? p.min_p * inv : 0.0f;
  auto prob = [&](int64_t i) {
    const float q = expf(x[i] / temperature - m) * inv;
    return q > 0.0f && q >= threshold ? q : 0.0f;
  };

  // Segments of whole 32-token steps.
  const int64_t segment = ((vocab + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int64_t lo = warp * segment;
  const int64_t hi = min(vocab, lo + segment);
  double s = 0.0;
  int last = -1;
  for (int64_t i = lo + lane; i < hi; i += 32) {
    const float q = prob(i);
    s += q;
    if (q > 0.0f) last = static_cast<int>(i);
  }
  s = warp_sum(s);
  for (int off = 16; off > 0; off /= 2) last = max(last, __shfl_xor_sync(0xffffffffu, last, off));
  if (lane == 0) {
    segment_sum[warp] = s;
    last_kept[warp] = last;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kWarps; ++w) total += segment_sum[w];
    const double t = p.u * total;
    double cum = 0.0;
    int w = 0;
    for (; w < kWarps; ++w) {
      if (segment_sum[w] > 0.0 && t < cum + segment_sum[w]) break;
      cum += segment_sum[w];
    }
    chosen_warp = w < kWarps ? w : -1;
    chosen_base = cum;
    target = t;
    found = -1;
  }
  __syncthreads();
  if (warp == chosen_warp) {
    double cum = chosen_base;
    for (int64_t i0 = lo; i0 < hi; i0 += 32) {
      const int64_t i = i0 + lane;
      const float q = i < hi ? prob(i) : 0.0f;
      double v = q;  // inclusive scan over the warp
      for (int off = 1; off < 32; off *= 2) {
        const double n = __shfl_up_sync(0xffffffffu, v, off);
        if (lane >= off) v += n;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, q > 0.0f && target < cum + v);
      if (hit != 0) {
        if (lane == 0) found = static_cast<int>(i0) + __ffs(hit) - 1;
        break;
      }
      cum += __shfl_sync(0xffffffffu, v, 31);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int id = found;
    if (id < 0) {  // rounding left the draw past the end: the last token with probability
      id = 0;
      for (int w = 0; w < kWarps; ++w) id = max(id, last_kept[w]);
    }
    out[blockIdx.x] = id;
  }
}

}  // namespace

void sample_rows(const float* logits, int64_t vocab, const SampleRowParams* params,
                 int64_t num_rows, int32_t* out, cudaStream_t stream) {
  if (num_rows == 0) return;
  sample_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(logits, vocab, params, out);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace cvllm::cuda
