// Token sampling on the GPU, so a decode step copies back token ids instead of [rows, vocab]
// logits (131 MB per step for 256 rows of a 128k vocabulary). sample_top_kernel (below) takes the
// rows with top-k or top-p; sample_kernel reproduces the host sampler's full-vocabulary path
// (layers/sampler.cpp, Sampler::sample_full_vocabulary) with the same uniform draw: probabilities = softmax(logits / max(temperature, 0.01)), min_p zeroes those below
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

// The distribution a random draw takes from one logits row, as the host computes it:
// softmax(x / max(temperature, 0.01)), then min_p zeroes what lies below min_p * max probability.
struct RowDistribution {
  const float* x;
  float temperature, m, inv, threshold;
  __device__ float prob(int64_t i) const {
    const float q = expf(x[i] / temperature - m) * inv;
    return q > 0.0f && q >= threshold ? q : 0.0f;
  }
};

__device__ RowDistribution row_distribution(const float* x, int64_t vocab,
                                            const SampleRowParams& p) {
  __shared__ float scratch_f[kWarps];
  __shared__ double scratch_d[kWarps];
  RowDistribution d;
  d.x = x;
  d.temperature = fmaxf(p.temperature, 0.01f);
  float m = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, x[i] / d.temperature);
  d.m = block_max(m, scratch_f);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) sum += expf(x[i] / d.temperature - d.m);
  sum = block_sum(sum, scratch_d);
  d.inv = static_cast<float>(1.0 / sum);
  d.threshold = p.min_p > 0.0f ? p.min_p * d.inv : 0.0f;  // the largest probability is exp(0) * inv
  return d;
}

__device__ __forceinline__ bool uses_top_k(const SampleRowParams& p, int64_t vocab) {
  return p.top_k > 0 && p.top_k < vocab;
}
__device__ __forceinline__ bool draws_from_candidates(const SampleRowParams& p, int64_t vocab) {
  return !p.greedy && (uses_top_k(p, vocab) || p.top_p < 1.0);
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* __restrict__ logits, int64_t vocab,
                  const SampleRowParams* __restrict__ params, int32_t* __restrict__ out) {
  const SampleRowParams p = params[blockIdx.x];
  if (draws_from_candidates(p, vocab)) return;  // sample_top_kernel's row
  const float* x = logits + static_cast<int64_t>(p.row) * vocab;
  if (p.greedy) {
    const int id = block_argmax(x, vocab);
    if (threadIdx.x == 0) out[blockIdx.x] = id;
    return;
  }
  __shared__ double segment_sum[kWarps];
  __shared__ int last_kept[kWarps];
  __shared__ int chosen_warp, found;
  __shared__ double chosen_base, target;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const RowDistribution d = row_distribution(x, vocab, p);
  auto prob = [&](int64_t i) { return d.prob(i); };

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

// Radix select over the float bits of the probabilities (non-negative, so their bits order like
// their values), 8 bits per pass from the top. by_mass false: the bits of the rank-th largest
// probability (1-based). by_mass true: the bits of the largest value v such that the probabilities
// >= v sum to at least `rank` (a probability mass). Every thread gets the result.
__device__ uint32_t radix_select(const RowDistribution& d, int64_t vocab, double rank,
                                 bool by_mass) {
  __shared__ double hist[256];
  __shared__ uint32_t chosen_bucket;
  __shared__ double remaining_rank;
  uint32_t prefix = 0, mask = 0;
  double remaining = rank;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) hist[b] = 0.0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float q = d.prob(i);
      const uint32_t bits = __float_as_uint(q);
      if ((bits & mask) == prefix) atomicAdd(&hist[(bits >> shift) & 255u], by_mass ? double(q) : 1.0);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double above = 0.0;  // count or mass in the buckets above
      int b = 255;
      for (; b > 0; --b) {
        if (above + hist[b] >= remaining) break;
        above += hist[b];
      }
      chosen_bucket = static_cast<uint32_t>(b);
      remaining_rank = remaining - above;
    }
    __syncthreads();
    prefix |= chosen_bucket << shift;
    mask |= 255u << shift;
    remaining = remaining_rank;
    __syncthreads();  // hist and the shared results are rewritten by the next pass
  }
  return prefix;
}

// temperature -> min_p -> top-k -> top-p -> one uniform draw, exactly as the host's
// Sampler::sampling_candidates and walk: the candidates above the threshold that top-k (the k-th
// largest probability) or top-p (where the mass from the top reaches top_p) imply are gathered,
// sorted by descending probability then ascending id (bitonic sort in shared memory), and thread 0
// runs the host's sequential top-k / top-p / renormalize / walk over them in double. More than
// kMaxDeviceCandidates candidates: -1 (the host samples the row).
__global__ void __launch_bounds__(kThreads)
    sample_top_kernel(const float* __restrict__ logits, int64_t vocab,
                      const SampleRowParams* __restrict__ params, int32_t* __restrict__ out) {
  constexpr int kCap = kMaxDeviceCandidates;
  static_assert(kCap == 2 * kThreads, "one compare-exchange per thread per sorting step");
  const SampleRowParams p = params[blockIdx.x];
  if (!draws_from_candidates(p, vocab)) return;  // sample_kernel's row
  __shared__ unsigned long long keys[kCap];  // probability bits << 32 | ~id: sorts as the host
  __shared__ int count;
  __shared__ double scratch_d[kWarps];
  const RowDistribution d = row_distribution(logits + static_cast<int64_t>(p.row) * vocab, vocab, p);
  const bool top_k = uses_top_k(p, vocab);
  double total = 0.0;  // all probability left after min_p (top-p's reference without top-k)
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) total += d.prob(i);
  total = block_sum(total, scratch_d);
  // Candidates: probabilities >= threshold_bits (and > 0: zeros never sample, and dropping them
  // changes neither top-k's nor top-p's sums).
  uint32_t threshold_bits;
  if (top_k) {
    threshold_bits = radix_select(d, vocab, static_cast<double>(p.top_k), false);
  } else {
    // A hair past top_p * total, so rounding of these sums cannot leave out the element where the
    // host's running sum crosses it.
    threshold_bits = radix_select(d, vocab, fmin(total, p.top_p * total * (1.0 + 1e-5)), true);
  }
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float q = d.prob(i);
    const uint32_t bits = __float_as_uint(q);
    if (q > 0.0f && bits >= threshold_bits) {
      const int slot = atomicAdd(&count, 1);
      if (slot < kCap) keys[slot] = (static_cast<unsigned long long>(bits) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(i));
    }
  }
  __syncthreads();
  const int n = count;
  if (n > kCap) {
    if (threadIdx.x == 0) out[blockIdx.x] = -1;
    return;
  }
  for (int i = n + threadIdx.x; i < kCap; i += kThreads) keys[i] = 0;  // padding sorts last
  for (int size = 2; size <= kCap; size *= 2) {
    for (int stride = size / 2; stride > 0; stride /= 2) {
      __syncthreads();
      const int t = threadIdx.x;
      const int i = 2 * stride * (t / stride) + t % stride, j = i + stride;
      const unsigned long long a = keys[i], b = keys[j];
      const bool descending = (i & size) == 0;
      if (descending ? a < b : a > b) {
        keys[i] = b;
        keys[j] = a;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  auto value = [&](int i) { return static_cast<double>(__uint_as_float(static_cast<uint32_t>(keys[i] >> 32))); };
  auto id = [&](int i) { return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(keys[i])); };
  if (n == 0) {  // nothing has probability (cannot happen after a softmax): the host's first id
    out[blockIdx.x] = 0;
    return;
  }
  const int num_cand = top_k ? min(n, p.top_k) : n;
  double mass = total;
  if (top_k) {
    mass = 0.0;
    for (int i = 0; i < num_cand; ++i) mass += value(i);
  }
  int keep = num_cand;
  if (p.top_p < 1.0) {
    const double target = p.top_p * mass;
    double cum = 0.0;
    for (int i = 0; i < num_cand; ++i) {
      cum += value(i);
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept_mass = 0.0;
  for (int i = 0; i < keep; ++i) kept_mass += value(i);
  int32_t token = id(keep - 1);
  double cum = 0.0;
  for (int i = 0; i < keep; ++i) {
    cum += value(i) / kept_mass;
    if (p.u < cum) {
      token = id(i);
      break;
    }
  }
  out[blockIdx.x] = token;
}

// allowed -> banned -> biases -> repetition / frequency / presence penalties, in the host's
// order (Sampler::apply_logits_processors); a barrier between steps, since one token may be in
// several lists.
__global__ void __launch_bounds__(kThreads)
    apply_processors_kernel(float* __restrict__ logits, int64_t vocab,
                            const SampleRowParams* __restrict__ params,
                            const int32_t* __restrict__ ids, const float* __restrict__ values) {
  const SampleRowParams p = params[blockIdx.x];
  if (!p.has_processors) return;
  float* x = logits + static_cast<int64_t>(p.row) * vocab;
  if (p.allowed_count > 0) {
    const int32_t* allowed = ids + p.allowed_begin;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      int lo = 0, hi = p.allowed_count;  // binary search in the sorted list
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (allowed[mid] < i) lo = mid + 1; else hi = mid;
      }
      if (lo == p.allowed_count || allowed[lo] != i) x[i] = -INFINITY;
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < p.banned_count; j += kThreads) x[ids[p.banned_begin + j]] = -INFINITY;
  __syncthreads();
  for (int j = threadIdx.x; j < p.bias_count; j += kThreads) {
    x[ids[p.bias_begin + j]] += values[p.bias_value_begin + j];
  }
  __syncthreads();
  for (int j = threadIdx.x; j < p.seen_count; j += kThreads) {
    float& v = x[ids[p.seen_begin + j]];
    const float r = p.repetition_penalty;
    if (r != 1.0f) v = v > 0 ? v / r : v * r;
    const int32_t count = ids[p.seen_counts_begin + j];
    if (count > 0) {  // __fmul_rn: no fused multiply-add, so the rounding is the host's
      v -= __fmul_rn(p.frequency_penalty, static_cast<float>(count));
      v -= __fmul_rn(p.presence_penalty, 1.0f);
    }
  }
}

// Raw logprobs of one drawn token (Sampler::gather_logprobs's definition): one block per row of
// `raw` (copies of the logits taken before any processor ran). log_sum = max + log(sum exp(x -
// max)) as on the host (the sum in double); logprob = x - log_sum; rank = 1 + the tokens with a
// larger logprob; then the top k by logprob, ties to the smaller id, one block-wide argmax per
// place, each over the tokens that come after the previous place in that order.
__global__ void __launch_bounds__(kThreads)
    logprobs_kernel(const float* __restrict__ raw, int64_t vocab, const int32_t* __restrict__ row_token,
                    const int32_t* __restrict__ tokens, int k, float* __restrict__ sampled_logprob,
                    int32_t* __restrict__ sampled_rank, int32_t* __restrict__ top_ids,
                    float* __restrict__ top_logprobs) {
  __shared__ float max_scratch[kWarps];
  __shared__ double sum_scratch[kWarps];
  __shared__ float best_v[kWarps];
  __shared__ int best_id[kWarps];
  __shared__ int rank_count;
  const int64_t r = blockIdx.x;
  const float* x = raw + r * vocab;
  const int32_t token = tokens[row_token[r]];
  if (token < 0) {  // not drawn here (the caller never asks for such rows; stay in bounds anyway)
    if (threadIdx.x == 0) {
      sampled_logprob[r] = -INFINITY;
      sampled_rank[r] = 0;
    }
    for (int place = threadIdx.x; place < k; place += kThreads) {
      top_ids[r * k + place] = 0;
      top_logprobs[r * k + place] = -INFINITY;
    }
    return;
  }
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, x[i]);
  m = block_max(m, max_scratch);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) sum += expf(x[i] - m);
  sum = block_sum(sum, sum_scratch);
  const float log_sum = static_cast<float>(log(sum)) + m;
  const float token_lp = x[token] - log_sum;
  if (threadIdx.x == 0) rank_count = 0;
  __syncthreads();
  int above = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) above += x[i] - log_sum > token_lp ? 1 : 0;
  for (int off = 16; off > 0; off /= 2) above += __shfl_xor_sync(0xffffffffu, above, off);
  if (threadIdx.x % 32 == 0) atomicAdd(&rank_count, above);
  float prev_v = INFINITY;
  int prev_id = -1;
  for (int place = 0; place < k; ++place) {
    float v = -INFINITY;
    int id = INT_MAX;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float lp = x[i] - log_sum;
      const bool after = lp < prev_v || (lp == prev_v && static_cast<int>(i) > prev_id);
      if (after) keep_best(v, id, lp, static_cast<int>(i));
    }
    for (int off = 16; off > 0; off /= 2) {
      keep_best(v, id, __shfl_xor_sync(0xffffffffu, v, off), __shfl_xor_sync(0xffffffffu, id, off));
    }
    __syncthreads();  // the previous place's winners have been read
    if (threadIdx.x % 32 == 0) {
      best_v[threadIdx.x / 32] = v;
      best_id[threadIdx.x / 32] = id;
    }
    __syncthreads();
    v = best_v[0];
    id = best_id[0];
    for (int w = 1; w < kWarps; ++w) keep_best(v, id, best_v[w], best_id[w]);
    if (threadIdx.x == 0) {
      top_ids[r * k + place] = id == INT_MAX ? 0 : id;
      top_logprobs[r * k + place] = v;
    }
    prev_v = v;
    prev_id = id;
  }
  __syncthreads();  // rank_count is complete
  if (threadIdx.x == 0) {
    sampled_logprob[r] = token_lp;
    sampled_rank[r] = 1 + rank_count;
  }
}

}  // namespace

void gather_logprobs(const float* raw, int64_t vocab, int64_t num_rows, const int32_t* row_token,
                     const int32_t* tokens, int k, float* sampled_logprob, int32_t* sampled_rank,
                     int32_t* top_ids, float* top_logprobs, cudaStream_t stream) {
  if (num_rows == 0) return;
  logprobs_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(
      raw, vocab, row_token, tokens, k, sampled_logprob, sampled_rank, top_ids, top_logprobs);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void apply_logits_processors(float* logits, int64_t vocab, const SampleRowParams* params,
                             int64_t num_rows, const int32_t* ids, const float* values,
                             cudaStream_t stream) {
  if (num_rows == 0) return;
  apply_processors_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(
      logits, vocab, params, ids, values);
  CVLLM_CUDA_CHECK_LAUNCH();
}

void sample_rows(const float* logits, int64_t vocab, const SampleRowParams* params,
                 int64_t num_rows, bool any_candidates, int32_t* out, cudaStream_t stream) {
  if (num_rows == 0) return;
  sample_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(logits, vocab, params, out);
  CVLLM_CUDA_CHECK_LAUNCH();
  if (any_candidates) {
    sample_top_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(logits, vocab,
                                                                               params, out);
    CVLLM_CUDA_CHECK_LAUNCH();
  }
}

namespace {

__global__ void feed_tokens_kernel(int32_t* input_ids, const int32_t* drawn, FedTokens fed) {
  const int i = static_cast<int>(threadIdx.x);
  if (i < fed.count) input_ids[fed.row[i]] = max(drawn[fed.draw[i]], 0);
}

}  // namespace

void feed_tokens(int32_t* input_ids, const int32_t* drawn, const FedTokens& fed,
                 cudaStream_t stream) {
  if (fed.count == 0) return;
  feed_tokens_kernel<<<1, kMaxFedTokens, 0, stream>>>(input_ids, drawn, fed);
  CVLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace cvllm::cuda
