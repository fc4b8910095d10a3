// The CUDA backend's sampling: rows drawn on the device (begin/finish_sample_on_device), the drawn
// ids fed to the next step without a trip through the host, and logprobs of given tokens.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "kernels/cuda/cuda_allocator.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "util/error.h"

namespace cvllm::cuda {

PinnedBuffer::PinnedBuffer(size_t n) : bytes(n) {
  CVLLM_CUDA_CHECK(cudaHostAlloc(&data, n, cudaHostAllocDefault));
}

PinnedBuffer::~PinnedBuffer() {
  if (data != nullptr) cudaFreeHost(data);
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data(std::exchange(other.data, nullptr)), bytes(std::exchange(other.bytes, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    if (data != nullptr) cudaFreeHost(data);
    data = std::exchange(other.data, nullptr);
    bytes = std::exchange(other.bytes, 0);
  }
  return *this;
}

CudaPendingSamples::~CudaPendingSamples() {
  // Never collected (an exception in between): the copy back must land before its buffer goes.
  if (done != nullptr) {
    if (!finished) cudaEventSynchronize(done);
    cudaEventDestroy(done);
  }
}

PinnedBuffer CudaBackend::take_pinned(size_t bytes) {
  for (auto it = spare_pinned_.begin(); it != spare_pinned_.end(); ++it) {
    if (it->bytes >= bytes) {
      PinnedBuffer b = std::move(*it);
      spare_pinned_.erase(it);
      return b;
    }
  }
  // cudaHostAlloc costs far more than a step's host work: round up, so buffers get reused.
  return PinnedBuffer(std::max<size_t>(bytes * 2, 64 << 10));
}

void CudaBackend::give_back_pinned(PinnedBuffer buffer) {
  constexpr size_t kMaxSpares = 4;
  if (spare_pinned_.size() < kMaxSpares) spare_pinned_.push_back(std::move(buffer));
}

void CudaBackend::feed_drawn_tokens(const ForwardBatch& b, int32_t* input_ids) {
  CVLLM_CHECK(b.fed_rows.size() == b.fed_draws.size(), b.fed_rows.size(), " fed rows for ",
              b.fed_draws.size(), " draws");
  if (b.fed_rows.empty()) return;
  const auto* from = dynamic_cast<const CudaPendingSamples*>(b.fed_from);
  CVLLM_CHECK(from != nullptr && !from->finished,
              "a step fed from draws that are not pending on the CUDA backend");
  FedTokens fed;
  for (size_t i = 0; i < b.fed_rows.size(); ++i) {
    CVLLM_CHECK(b.fed_rows[i] >= 0 && b.fed_rows[i] < b.num_tokens() && b.fed_draws[i] >= 0 &&
                    b.fed_draws[i] < from->num_rows,
                "fed token ", b.fed_rows[i], " <- draw ", b.fed_draws[i], " out of range");
    fed.row[fed.count] = b.fed_rows[i];
    fed.draw[fed.count] = b.fed_draws[i];
    if (++fed.count == kMaxFedTokens || i + 1 == b.fed_rows.size()) {
      feed_tokens(input_ids, from->tokens, fed, stream_);
      fed.count = 0;
    }
  }
}

std::unique_ptr<PendingSamples> CudaBackend::begin_sample_on_device(
    Tensor& logits, std::span<const DeviceSampleRow> rows) {
  check_not_capturing("sampling");
  check_f32(logits, "sampled logits");
  CVLLM_CHECK(logits.ndim() == 2, "sampled logits must be [rows, vocab], got ", logits.describe());
  auto pending = std::make_unique<CudaPendingSamples>();
  pending->num_rows = static_cast<int64_t>(rows.size());
  if (rows.empty()) return pending;
  const int64_t vocab = logits.dim(1);
  std::vector<SampleRowParams> params(rows.size());
  std::vector<int32_t> ids;    // the processors' token ids and counts, all rows
  std::vector<float> values;   // the biases' values, all rows
  std::vector<int32_t> lp_rows, lp_samples;  // rows asking for logprobs: logits row, entry index
  int lp_k = 0;                // the most logprobs any row asks for
  bool any_candidates = false, any_processors = false;
  auto append = [&](std::span<const int32_t> tokens, bool are_ids, int32_t& begin) {
    begin = static_cast<int32_t>(ids.size());
    for (int32_t t : tokens) {
      CVLLM_CHECK(!are_ids || (t >= 0 && t < vocab), "token id ", t, " out of range [0, ", vocab, ")");
      ids.push_back(t);
    }
    return static_cast<int32_t>(tokens.size());
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const DeviceSampleRow& r = rows[i];
    CVLLM_CHECK(r.row >= 0 && r.row < logits.dim(0), "sample row ", r.row, " out of range for ",
                logits.describe());
    CVLLM_CHECK(r.seen.size() == r.seen_output_counts.size(), "seen tokens without their counts");
    SampleRowParams& p = params[i];
    p.row = r.row;
    p.greedy = r.greedy ? 1 : 0;
    p.temperature = r.temperature;
    p.min_p = r.min_p;
    p.u = r.u;
    p.top_k = r.top_k;
    p.top_p = r.top_p;
    const bool candidates = !r.greedy && ((r.top_k > 0 && r.top_k < vocab) || r.top_p < 1.0);
    any_candidates = any_candidates || candidates;
    if (r.num_logprobs >= 0) {
      CVLLM_CHECK(r.num_logprobs <= kMaxDeviceLogprobs && !candidates,
                  "logprobs on the device need at most ", kMaxDeviceLogprobs,
                  " per row and no top-k/top-p, got ", r.num_logprobs);
      lp_rows.push_back(r.row);
      lp_samples.push_back(static_cast<int32_t>(i));
      lp_k = std::max<int>(lp_k, r.num_logprobs);
    }
    if (!r.has_processors()) continue;
    any_processors = true;
    p.has_processors = 1;
    p.allowed_count = append(r.allowed, true, p.allowed_begin);
    p.banned_count = append(r.banned, true, p.banned_begin);
    p.bias_value_begin = static_cast<int32_t>(values.size());
    p.bias_begin = static_cast<int32_t>(ids.size());
    for (const auto& [t, b] : r.bias) {
      CVLLM_CHECK(t >= 0 && t < vocab, "token id ", t, " out of range [0, ", vocab, ")");
      ids.push_back(t);
      values.push_back(b);
    }
    p.bias_count = static_cast<int32_t>(r.bias.size());
    p.seen_count = append(r.seen, true, p.seen_begin);
    append(r.seen_output_counts, false, p.seen_counts_begin);
    p.repetition_penalty = r.repetition_penalty;
    p.frequency_penalty = r.frequency_penalty;
    p.presence_penalty = r.presence_penalty;
  }
  // One allocation: the inputs (params, processor ids and values, logprob rows), uploaded at
  // once, then the outputs (tokens, logprobs), read back at once.
  const auto num_rows = static_cast<int64_t>(rows.size());
  const auto num_lp = static_cast<int64_t>(lp_rows.size());
  auto padded = [](size_t bytes) { return (bytes + 15) / 16 * 16; };
  size_t in_bytes = 0, out_bytes = 0;
  auto take = [&padded](size_t& total, size_t bytes) {
    const size_t at = total;
    total += padded(bytes);
    return at;
  };
  const size_t at_params = take(in_bytes, params.size() * sizeof(SampleRowParams));
  const size_t at_ids = take(in_bytes, ids.size() * sizeof(int32_t));
  const size_t at_values = take(in_bytes, values.size() * sizeof(float));
  const size_t at_lp_rows = take(in_bytes, lp_rows.size() * sizeof(int32_t));
  const size_t at_lp_samples = take(in_bytes, lp_samples.size() * sizeof(int32_t));
  const size_t at_tokens = take(out_bytes, rows.size() * sizeof(int32_t));
  const size_t at_lp = take(out_bytes, num_lp * sizeof(float));
  const size_t at_rank = take(out_bytes, num_lp * sizeof(int32_t));
  const size_t at_top_ids = take(out_bytes, num_lp * lp_k * sizeof(int32_t));
  const size_t at_top_lp = take(out_bytes, num_lp * lp_k * sizeof(float));
  // Pinned, so neither copy waits for the stream (a pageable one may), and owned by the pending
  // draws until they are collected.
  pending->host = take_pinned(in_bytes + out_bytes);
  uint8_t* host = static_cast<uint8_t*>(pending->host.data);
  auto put = [&](size_t at, const auto& v) {
    if (!v.empty()) std::memcpy(host + at, v.data(), v.size() * sizeof(v[0]));
  };
  put(at_params, params);
  put(at_ids, ids);
  put(at_values, values);
  put(at_lp_rows, lp_rows);
  put(at_lp_samples, lp_samples);
  pending->device = allocator_->allocate(in_bytes + out_bytes);
  uint8_t* base = static_cast<uint8_t*>(pending->device.get());
  uint8_t* outputs = base + in_bytes;
  CVLLM_CUDA_CHECK(cudaMemcpyAsync(base, host, in_bytes, cudaMemcpyHostToDevice, stream_));
  auto* dev_params = reinterpret_cast<SampleRowParams*>(base + at_params);
  auto* dev_tokens = reinterpret_cast<int32_t*>(outputs + at_tokens);
  // Logprobs are of the raw logits: copy those rows before the processors change them.
  Tensor raw;
  if (num_lp > 0) {
    raw = alloc_uninitialized(DType::kF32, {num_lp, vocab});
    cuda::gather_rows(logits.data(), false, reinterpret_cast<const int32_t*>(base + at_lp_rows),
                      num_lp, vocab, raw.data_as<float>(), stream_);
  }
  if (any_processors) {
    wrote(logits);
    cuda::apply_logits_processors(logits.data_as<float>(), vocab, dev_params, num_rows,
                                  reinterpret_cast<const int32_t*>(base + at_ids),
                                  reinterpret_cast<const float*>(base + at_values), stream_);
  }
  sample_rows(logits.data_as<float>(), vocab, dev_params, num_rows, any_candidates, dev_tokens,
              stream_);
  if (num_lp > 0) {
    gather_logprobs(raw.data_as<float>(), vocab, num_lp,
                    reinterpret_cast<const int32_t*>(base + at_lp_samples), dev_tokens, lp_k,
                    reinterpret_cast<float*>(outputs + at_lp),
                    reinterpret_cast<int32_t*>(outputs + at_rank),
                    reinterpret_cast<int32_t*>(outputs + at_top_ids),
                    reinterpret_cast<float*>(outputs + at_top_lp), stream_);
  }
  CVLLM_CUDA_CHECK(cudaMemcpyAsync(host + in_bytes, outputs, out_bytes, cudaMemcpyDeviceToHost,
                                   stream_));
  CVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&pending->done, cudaEventDisableTiming));
  CVLLM_CUDA_CHECK(cudaEventRecord(pending->done, stream_));
  pending->tokens = dev_tokens;
  pending->in_bytes = in_bytes;
  pending->at_tokens = at_tokens;
  pending->at_lp = at_lp;
  pending->at_rank = at_rank;
  pending->at_top_ids = at_top_ids;
  pending->at_top_lp = at_top_lp;
  pending->lp_samples = std::move(lp_samples);
  pending->lp_k = lp_k;
  for (const DeviceSampleRow& r : rows) pending->num_logprobs.push_back(r.num_logprobs);
  return pending;
}

std::vector<DeviceSample> CudaBackend::finish_sample_on_device(PendingSamples& p) {
  auto* pending = dynamic_cast<CudaPendingSamples*>(&p);
  CVLLM_CHECK(pending != nullptr && !pending->finished,
              "finish_sample_on_device: not draws pending on the CUDA backend");
  pending->finished = true;
  std::vector<DeviceSample> samples(static_cast<size_t>(pending->num_rows));
  if (pending->num_rows == 0) return samples;
  CVLLM_CUDA_CHECK(cudaEventSynchronize(pending->done));
  const auto* out = static_cast<const uint8_t*>(pending->host.data) + pending->in_bytes;
  const auto* tokens = reinterpret_cast<const int32_t*>(out + pending->at_tokens);
  const auto* sampled_lp = reinterpret_cast<const float*>(out + pending->at_lp);
  const auto* ranks = reinterpret_cast<const int32_t*>(out + pending->at_rank);
  const auto* top_ids = reinterpret_cast<const int32_t*>(out + pending->at_top_ids);
  const auto* top_lp = reinterpret_cast<const float*>(out + pending->at_top_lp);
  const int lp_k = pending->lp_k;
  for (size_t i = 0; i < samples.size(); ++i) samples[i].token_id = tokens[i];
  for (size_t j = 0; j < pending->lp_samples.size(); ++j) {
    const int32_t i = pending->lp_samples[j];
    const int k = pending->num_logprobs[i];
    TokenLogprobs lp;
    lp.sampled_token_id = tokens[i];
    lp.sampled_logprob = sampled_lp[j];
    lp.sampled_rank = ranks[j];
    lp.top_ids.assign(top_ids + j * lp_k, top_ids + j * lp_k + k);
    lp.top_logprobs.assign(top_lp + j * lp_k, top_lp + j * lp_k + k);
    samples[i].logprobs = std::move(lp);
  }
  give_back_pinned(std::move(pending->host));
  return samples;
}

std::vector<TokenLogprobs> CudaBackend::logprobs_on_device(const Tensor& logits,
                                                           std::span<const int32_t> rows,
                                                           std::span<const int32_t> tokens, int k) {
  check_f32(logits, "logits");
  CVLLM_CHECK(logits.ndim() == 2, "logits must be [rows, vocab], got ", logits.describe());
  CVLLM_CHECK(rows.size() == tokens.size(), rows.size(), " rows for ", tokens.size(), " tokens");
  CVLLM_CHECK(k >= 0 && k <= kMaxDeviceLogprobs, "logprobs on the device take 0 to ",
              kMaxDeviceLogprobs, " per row, got ", k);
  const int64_t vocab = logits.dim(1), n = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < n; ++i) {
    CVLLM_CHECK(rows[i] >= 0 && rows[i] < logits.dim(0), "row ", rows[i], " out of range for ",
                logits.describe());
    CVLLM_CHECK(tokens[i] >= 0 && tokens[i] < vocab, "token id ", tokens[i], " out of range [0, ",
                vocab, ")");
  }
  if (n == 0) return {};
  // Inputs: the tokens, then each row's index into them (the identity); outputs after them.
  std::vector<int32_t> inputs(tokens.begin(), tokens.end());
  for (int64_t i = 0; i < n; ++i) inputs.push_back(static_cast<int32_t>(i));
  const size_t in_bytes = inputs.size() * sizeof(int32_t);
  const size_t out_bytes = static_cast<size_t>(n) * (2 + 2 * k) * 4;  // logprob, rank, top ids, top
  std::shared_ptr<void> device = allocator_->allocate(in_bytes + out_bytes);
  auto* base = static_cast<uint8_t*>(device.get());
  CVLLM_CUDA_CHECK(cudaMemcpyAsync(base, inputs.data(), in_bytes, cudaMemcpyHostToDevice, stream_));
  const auto* dev_tokens = reinterpret_cast<const int32_t*>(base);
  uint8_t* outputs = base + in_bytes;
  auto* sampled_lp = reinterpret_cast<float*>(outputs);
  auto* ranks = reinterpret_cast<int32_t*>(sampled_lp + n);
  auto* top_ids = ranks + n;
  auto* top_lp = reinterpret_cast<float*>(top_ids + n * k);
  Tensor raw = alloc_uninitialized(DType::kF32, {n, vocab});
  gather_rows(logits, std::vector<int32_t>(rows.begin(), rows.end()), raw);
  gather_logprobs(raw.data_as<float>(), vocab, n, dev_tokens + n, dev_tokens, k, sampled_lp, ranks,
                  top_ids, top_lp, stream_);
  const auto* out = static_cast<const uint8_t*>(read_back(outputs, out_bytes));
  const auto* h_lp = reinterpret_cast<const float*>(out);
  const auto* h_rank = reinterpret_cast<const int32_t*>(h_lp + n);
  const auto* h_ids = h_rank + n;
  const auto* h_top = reinterpret_cast<const float*>(h_ids + n * k);
  std::vector<TokenLogprobs> result(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    TokenLogprobs& lp = result[i];
    lp.sampled_token_id = tokens[i];
    lp.sampled_logprob = h_lp[i];
    lp.sampled_rank = h_rank[i];
    lp.top_ids.assign(h_ids + i * k, h_ids + (i + 1) * k);
    lp.top_logprobs.assign(h_top + i * k, h_top + (i + 1) * k);
  }
  return result;
}

}  // namespace cvllm::cuda
