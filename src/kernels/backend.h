// Backend: the small set of ops models are written against. The CPU backend is the reference and
// the default; a CUDA backend implements the same interface. Ops take Tensors that live on the
// backend's device; step metadata (positions, slot mapping, block tables) is converted once per
// step by prepare_step().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "core/sched_output.h"
#include "tensor/tensor.h"
#include "util/error.h"

namespace cvllm {

class ThreadPool;

// Draws enqueued by Backend::begin_sample_on_device and not yet waited for. Opaque outside the
// backend that made it.
class PendingSamples {
 public:
  virtual ~PendingSamples() = default;
};

// Per-step batch in host memory, built by the model runner: all scheduled tokens of all requests,
// flat, no padding.
struct ForwardBatch {
  std::vector<int32_t> input_ids;        // [num_tokens]
  std::vector<int32_t> positions;        // [num_tokens]
  std::vector<int64_t> slot_mapping;     // [num_tokens] KV slot of each token
  std::vector<int32_t> query_start_loc;  // [num_reqs + 1]
  std::vector<int32_t> seq_lens;         // [num_reqs] tokens in the cache after this step
  std::vector<int32_t> block_table;      // [num_reqs, max_blocks_per_req]
  int64_t max_blocks_per_req = 0;
  std::vector<int32_t> logits_indices;   // [num_logits] rows of the hidden states to project
  // Async scheduling: tokens the previous step drew on the device, not known to the host yet.
  // input_ids[fed_rows[i]] is a placeholder; before the pass the backend writes there the id of
  // draw fed_draws[i] of `fed_from` (still pending). Only backends that sample on the device.
  std::vector<int32_t> fed_rows, fed_draws;
  const PendingSamples* fed_from = nullptr;

  int64_t num_tokens() const { return static_cast<int64_t>(input_ids.size()); }
  int64_t num_reqs() const { return static_cast<int64_t>(seq_lens.size()); }
};

// Backend-side view of a ForwardBatch (device copies where needed). Opaque to models.
class StepMetadata {
 public:
  virtual ~StepMetadata() = default;
  const ForwardBatch* batch = nullptr;  // host copy, valid for the step
};

// A forward pass recorded once for one batch shape and replayed for later batches of that shape
// (CUDA graphs: the launches are paid for once). Opaque outside the backend that made it.
class CapturedForward {
 public:
  virtual ~CapturedForward() = default;
};
// Launches one forward pass over the step and returns its output.
using ForwardFn = std::function<Tensor(const StepMetadata&)>;

enum class RopeStyle { kNeox, kInterleaved };
enum class GatedActivation { kSilu, kGeluTanh };  // silu(gate) * up; gelu_tanh(gate) * up

struct RopeParams {
  int64_t head_size = 0;
  int64_t rot_dim = 0;           // dimensions rotated (partial rotary: < head_size)
  RopeStyle style = RopeStyle::kNeox;
  const float* inv_freq = nullptr;  // [rot_dim / 2], host memory owned by the layer
  float mscale = 1.0f;
};

struct AttentionParams {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  float scale = 1.0f;
  float logit_softcap = 0.0f;
  int64_t sliding_window = -1;
};

// One layer's paged KV cache: num_blocks * block_size * num_kv_heads * head_size elements each, in
// a layout the backend defines (allocated as [num_blocks, num_kv_heads, block_size, head_size]).
struct KVCacheLayer {
  Tensor k;
  Tensor v;
  int64_t block_size = 16;
};

// One logits row drawn on the device: its logits processors, then greedy, or temperature -> min_p
// -> top-k -> top-p with one uniform draw `u` walking the distribution (in vocabulary order without
// top-k/top-p, else in descending probability) — the host sampler's path (layers/sampler.h) for
// requests without logprobs.
// What the device drew for one DeviceSampleRow.
struct DeviceSample {
  int32_t token_id = -1;  // -1: not drawn (see Backend::sample_on_device)
  std::optional<TokenLogprobs> logprobs;  // rows with num_logprobs >= 0
};

struct DeviceSampleRow {
  int32_t row = 0;           // row of the logits tensor
  bool greedy = false;       // argmax, the lowest id among equal maxima
  float temperature = 1.0f;  // clamped to >= 0.01 as on the host
  float min_p = 0.0f;
  int32_t top_k = 0;         // <= 0: off
  double top_p = 1.0;
  double u = 0.0;            // in [0, 1), from the request's generator
  // Logits processors, applied first in the host's order: allowed ids (sorted; empty: all) ->
  // banned ids (bad words, min_tokens) -> biases -> repetition penalty over `seen` (sorted, unique:
  // prompt and output tokens) -> frequency/presence penalties by `seen_output_counts`.
  std::span<const int32_t> allowed;
  std::span<const int32_t> banned;
  std::span<const std::pair<int32_t, float>> bias;
  std::span<const int32_t> seen;
  std::span<const int32_t> seen_output_counts;  // [seen.size()]
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  // >= 0: also the drawn token's raw logprob, rank and the top num_logprobs (at most
  // Backend::max_device_logprobs()), as Sampler::gather_logprobs computes them.
  int32_t num_logprobs = -1;
  bool has_processors() const {
    return !allowed.empty() || !banned.empty() || !bias.empty() || repetition_penalty != 1.0f ||
           frequency_penalty != 0.0f || presence_penalty != 0.0f;
  }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;

  // Activation / cache memory on the device, zeroed.
  virtual Tensor alloc(DType dtype, std::vector<int64_t> shape) = 0;
  // A weight in its storage format ready for this backend (CPU: the mmap'd view itself).
  virtual Tensor prepare_weight(const Tensor& host_weight) = 0;
  virtual std::unique_ptr<StepMetadata> prepare_step(const ForwardBatch& batch) = 0;

  // out[t] = table[ids[t]]   table: [vocab, hidden] any dtype; out: [num_tokens, hidden] f32
  virtual void embedding(const Tensor& table, const StepMetadata& step, Tensor& out) = 0;
  // out[t] = table[positions[t] + offset]: learned position embeddings (OPT's offset is 2). Each
  // row is checked against the table.
  virtual void position_embedding(const Tensor& table, const StepMetadata& step, int64_t offset,
                                  Tensor& out) {
    gather_rows(table, position_rows(step, offset, table.dim(0)), out);
  }
  // The table rows position_embedding reads; throws for positions past the table.
  static std::vector<int32_t> position_rows(const StepMetadata& step, int64_t offset,
                                            int64_t table_rows) {
    const std::vector<int32_t>& positions = step.batch->positions;
    std::vector<int32_t> rows(positions.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t row = int64_t{positions[i]} + offset;
      CVLLM_CHECK(positions[i] >= 0 && row < table_rows, "position ", positions[i],
                  " is beyond the model's ", table_rows - offset, " learned positions");
      rows[i] = static_cast<int32_t>(row);
    }
    return rows;
  }
  // Same, for explicit row ids (used for logits_indices gathers and tests).
  virtual void gather_rows(const Tensor& src, const std::vector<int32_t>& rows, Tensor& out) = 0;
  // y = x W^T (+ bias)   x: [T, in] f32; w: [out, in] any dtype; bias: [out] f32 or empty
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
  // ys[i] = x ws[i]^T for weights that share one input (q/k/v, gate/up), without bias. Backends
  // may fuse them (one activation quantization and one parallel pass).
  virtual void linear_many(const Tensor& x, std::span<const Tensor* const> ws,
                           std::span<Tensor* const> ys) {
    for (size_t i = 0; i < ws.size(); ++i) linear(x, *ws[i], nullptr, *ys[i]);
  }
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                        float weight_offset = 0.0f) = 0;
  // residual += x; y = rms_norm(residual)
  virtual void add_rms_norm(const Tensor& x, Tensor& residual, const Tensor& w, float eps,
                            Tensor& y, float weight_offset = 0.0f) = 0;
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor* bias, float eps,
                          Tensor& y) = 0;
  // q: [T, num_heads, head_size], k: [T, num_kv_heads, head_size], in place.
  virtual void rotary(Tensor& q, Tensor& k, const StepMetadata& step, const RopeParams& rope) = 0;
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  virtual void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  // The gated MLP's first half: out = act(x w_gate^T) * (x w_up^T). gate and up ([T, ffn] f32) hold
  // the two products where the backend computes them apart; out may alias gate. Backends may fuse
  // the whole op (the CUDA one does for decode-sized batches).
  virtual void gated_linear(const Tensor& x, const Tensor& w_gate, const Tensor& w_up,
                            GatedActivation act, Tensor& gate, Tensor& up, Tensor& out) {
    const Tensor* ws[] = {&w_gate, &w_up};
    Tensor* ys[] = {&gate, &up};
    linear_many(x, ws, ys);
    if (act == GatedActivation::kSilu) {
      silu_mul(gate, up, out);
    } else {
      gelu_tanh_mul(gate, up, out);
    }
  }
  // Non-gated activations (OPT's fc1 -> ReLU, GPT-2's c_fc -> gelu_new, the tanh form).
  // x, out: same shape, f32 (out may alias x)
  virtual void relu(const Tensor& x, Tensor& out) = 0;
  virtual void gelu_tanh(const Tensor& x, Tensor& out) = 0;
  virtual void add(const Tensor& a, Tensor& b) = 0;  // b += a
  // In place over f32 x: x *= factor (Gemma's embedding scale); x = cap * tanh(x / cap) (logit
  // soft-capping).
  virtual void scale(Tensor& x, float factor) = 0;
  virtual void softcap(Tensor& x, float cap) = 0;
  // Writes k, v of this step's tokens into the cache, then attends.
  // q, out: [T, num_heads * head_size]; k, v: [T, num_kv_heads * head_size]
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
                         const StepMetadata& step, const AttentionParams& params, Tensor& out) = 0;
  // rotary(q, k) then attention(): one op so a backend can fuse the rotation into the KV write.
  virtual void rope_attention(Tensor& q, Tensor& k, const Tensor& v, KVCacheLayer& cache,
                              const StepMetadata& step, const RopeParams& rope,
                              const AttentionParams& params, Tensor& out) {
    rotary(q, k, step, rope);
    attention(q, k, v, cache, step, params, out);
  }
  // Threads for host-side work between forward passes (sampling); null when the backend has none.
  virtual ThreadPool* host_pool() { return nullptr; }
  // Copies whole KV blocks (src -> dst) in every layer: copy-on-write when a beam forks.
  virtual void copy_blocks(std::vector<KVCacheLayer>& caches,
                           const std::vector<std::pair<int, int>>& src_dst) = 0;
  // Host copy of a device tensor (CPU: the same memory).
  virtual std::vector<float> to_host(const Tensor& t) = 0;
  // Host copy of some rows of a [num_rows, width] f32 tensor, in the order given.
  virtual std::vector<float> rows_to_host(const Tensor& t, const std::vector<int32_t>& rows) {
    const std::vector<float> all = to_host(t);
    const int64_t width = t.ndim() == 0 ? 1 : t.dim(-1);
    std::vector<float> out;
    out.reserve(rows.size() * static_cast<size_t>(width));
    for (int32_t r : rows) {
      CVLLM_CHECK(r >= 0 && r * width < static_cast<int64_t>(all.size()), "row ", r,
                  " out of range for ", t.describe());
      out.insert(out.end(), all.begin() + r * width, all.begin() + (r + 1) * width);
    }
    return out;
  }
  // Whether sample_on_device works here; when it does, the runner copies back token ids (and
  // requested logprobs) instead of [rows, vocab] logits for the rows it can take.
  virtual bool samples_on_device() const { return false; }
  // The most logprobs per row sample_on_device computes (0: rows asking for logprobs stay on the
  // host).
  virtual int max_device_logprobs() const { return 0; }
  // logits: [num_rows, vocab] f32; the rows' processors are applied to it in place. Returns one
  // sample per entry of `rows`; token_id -1 marks a row the device could not draw (more top-k /
  // top-p candidates than it sorts; never a row with logprobs): the caller samples that (already
  // processed) row on the host.
  std::vector<DeviceSample> sample_on_device(Tensor& logits, std::span<const DeviceSampleRow> rows) {
    std::unique_ptr<PendingSamples> pending = begin_sample_on_device(logits, rows);
    return finish_sample_on_device(*pending);
  }
  // sample_on_device in two halves: begin enqueues the draws and their copy to the host and
  // returns at once; finish waits for them. In between, the next step can read the drawn ids on
  // the device (ForwardBatch::fed_from), which lets the host prepare it while this one runs.
  virtual std::unique_ptr<PendingSamples> begin_sample_on_device(
      Tensor& logits, std::span<const DeviceSampleRow> rows) {
    (void)logits;
    (void)rows;
    throw Error(cat("the ", name(), " backend does not sample on the device"));
  }
  virtual std::vector<DeviceSample> finish_sample_on_device(PendingSamples& pending) {
    (void)pending;
    throw Error(cat("the ", name(), " backend does not sample on the device"));
  }
  // Raw logprobs (Sampler::gather_logprobs's) of token tokens[i] under logits row rows[i], with
  // the top k (0 <= k <= max_device_logprobs()); logits are left as they are. Prompt logprobs
  // use it, so only these values come back instead of the rows.
  virtual std::vector<TokenLogprobs> logprobs_on_device(const Tensor& logits,
                                                        std::span<const int32_t> rows,
                                                        std::span<const int32_t> tokens, int k) {
    (void)logits;
    (void)rows;
    (void)tokens;
    (void)k;
    throw Error(cat("the ", name(), " backend does not compute logprobs on the device"));
  }
  // Records `forward` for batches shaped like `batch`: decode only (one new token per request),
  // so the shape is (requests, block-table width). The pass runs once eagerly first, so lazily made
  // state exists before recording; `batch` is a placeholder whose contents do not matter. Null
  // when this backend does not record; throws Error when the pass cannot be recorded (an op needs
  // the step's host data), which leaves the backend usable eagerly.
  virtual std::unique_ptr<CapturedForward> capture_forward(const ForwardBatch& batch,
                                                           const ForwardFn& forward) {
    (void)batch;
    (void)forward;
    return nullptr;
  }
  // Runs a recorded pass on `batch` (the recorded shape, new contents) and returns its output,
  // valid until the next replay of `captured`.
  virtual Tensor replay_forward(CapturedForward& captured, const ForwardBatch& batch) {
    (void)captured;
    (void)batch;
    throw Error(cat("the ", name(), " backend does not replay recorded forward passes"));
  }
  virtual void synchronize() {}
};

}  // namespace cvllm
