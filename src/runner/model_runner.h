// ModelRunner: executes one SchedulerOutput. It keeps each running request's tokens, block table
// and sampling state, builds the flat batch (input_ids, positions, slot_mapping, query_start_loc,
// seq_lens, block_table, logits_indices), runs the model, samples, and returns plain data.
//
// What belongs here: batch construction and the forward/sample sequence. Sampling math lives in
// layers/sampler, attention math in the backend, stop conditions in the scheduler.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/sched_output.h"
#include "kernels/backend.h"
#include "layers/sampler.h"
#include "models/causal_lm.h"

namespace cvllm {

struct RunnerConfig {
  int block_size = 16;
  int num_kv_blocks = 0;
  int max_model_len = 0;
  DType kv_cache_dtype = DType::kF32;
  int64_t seed = 0;
  std::optional<int32_t> eos_token_id;
  // Decode batch sizes whose forward pass is recorded once and replayed (CUDA graphs); a decode
  // step of n requests runs on the smallest size >= n, padded. Empty: every step runs eagerly.
  std::vector<int> graph_batch_sizes;
};

// Pads a decode batch (one token per request, n requests) to `num_reqs` requests and its block
// table to `width` columns, the shape of a recorded pass. Padding requests hold token 0 at
// position 0, write no KV slot and read the null block; their logits are never selected.
void pad_decode_batch(ForwardBatch& batch, int64_t num_reqs, int64_t width);

// The CUDA-graph batch sizes vLLM records for max_num_seqs: 1, 2, 4, then multiples of 8 up to
// max_num_seqs (at most 512).
std::vector<int> default_graph_batch_sizes(int max_num_seqs);

class ModelRunner {
 public:
  ModelRunner(CausalLM& model, Backend& backend, const RunnerConfig& config);

  // A step in two halves, so the host can schedule and launch the next step while this one runs
  // (async scheduling): launch() enqueues the forward pass and the device's draws; collect()
  // waits for the oldest launched step and returns its output. execute() is both.
  //
  // A step whose draws all happen on the device, and whose requests' next draws do not depend on
  // the tokens drawn, stays in flight: the next launch() feeds those tokens to the next pass on the
  // device (ForwardBatch::fed_rows). Any other step is finished inside launch(), as the host
  // needs its tokens (or its logits) first.
  void launch(const SchedulerOutput& scheduled);
  ModelRunnerOutput collect();
  ModelRunnerOutput execute(const SchedulerOutput& scheduled) {
    launch(scheduled);
    return collect();
  }
  // Whether another step should be launched before collect(): one step is in flight, still
  // running (not finished at launch), and none of its requests waits for a token from the engine
  // (beam search).
  bool can_launch_ahead() const;
  int num_in_flight() const { return static_cast<int>(in_flight_.size()); }
  // Tokens that reached a forward pass on the device without the host knowing them (tests).
  int64_t num_fed_tokens() const { return num_fed_tokens_; }

  // Bytes one KV block takes across all layers (K and V).
  static int64_t kv_block_bytes(const CausalLM& model, int block_size, DType kv_cache_dtype);
  // One forward pass of dummy tokens shaped like the largest step the scheduler can make (num_tokens
  // over num_seqs prompts, logits for each), writing no KV cache: for measuring the activations'
  // peak memory before the cache is sized. Waits for the device.
  static void profile_forward(CausalLM& model, Backend& backend, int64_t num_tokens,
                              int64_t num_seqs, int block_size, DType kv_cache_dtype);
  int num_requests() const { return static_cast<int>(requests_.size()); }
  // Decode steps run from a recorded pass so far (tests).
  int64_t num_graph_steps() const { return num_graph_steps_; }
  int num_graphs() const { return static_cast<int>(graphs_.size()); }

  // Optional hook receiving every named intermediate of the forward pass (golden tests).
  std::function<void(const std::string&, const Tensor&)> dump;

 private:
  struct RequestState {
    std::string request_id;
    std::vector<int32_t> token_ids;  // prompt + output
    int num_prompt_tokens = 0;
    std::vector<int> block_ids;
    int num_computed_tokens = 0;
    std::shared_ptr<const SamplingParams> params;
    bool tokens_from_engine = false;  // beam search: sampled tokens are not appended here
    // The request's RNG: from its seed, else seeded from the engine's generator when it arrives,
    // so unseeded runs are reproducible for a given engine seed and arrival order.
    std::unique_ptr<std::mt19937_64> generator;
    SamplingState sampling;
  };

  // A launched step until collect(): what finish() needs to draw on the host and report.
  struct PendingStep {
    std::vector<std::shared_ptr<RequestState>> order;  // the step's requests, batch order
    std::vector<int> first_position;  // per request: its first position in this step
    std::vector<int> sample_rows;  // per request: its logits row to draw from, or -1
    std::vector<std::vector<int>> prompt_logprob_rows;
    Tensor logits;
    std::vector<int32_t> logits_indices;
    std::vector<DeviceSampleRow> device_rows;
    std::vector<size_t> device_row_req;  // index into order of each device row
    std::unique_ptr<PendingSamples> draws;  // device rows in flight
    std::unordered_map<const RequestState*, int32_t> draw_of;  // request -> its device row
    bool has_engine_tokens = false;  // a beam-search request is in it
    std::optional<ModelRunnerOutput> output;  // once finished
  };

  void capture_graphs();
  // The recorded pass for this step (null: run eagerly), after padding the batch to its shape.
  CapturedForward* graph_for(ForwardBatch& batch);
  void update_states(const SchedulerOutput& scheduled);
  void add_request(const NewRequestData& data);
  // The step's batch; fills step.order, first_position, sample_rows and prompt_logprob_rows. A
  // token that `previous` (in flight, unfinished) draws is fed from there.
  ForwardBatch build_batch(const SchedulerOutput& scheduled, PendingStep& step,
                           const PendingStep* previous);
  // The host half of a step: waits for its draws, draws the rest, sets step.output.
  void finish(PendingStep& step);
  // Whether `step` (launched, not finished) can leave its tokens on the device for the next one.
  bool can_feed_next(const PendingStep& step) const;

  CausalLM& model_;
  Backend& backend_;
  RunnerConfig config_;
  Sampler sampler_;
  std::vector<KVCacheLayer> kv_caches_;
  // Shared with the steps in flight, which outlive a request finished or preempted meanwhile.
  std::unordered_map<std::string, std::shared_ptr<RequestState>> requests_;
  std::deque<PendingStep> in_flight_;  // launched, not collected (at most two)
  // The generators of preempted requests: a request resumes its random draws where it stopped,
  // so its tokens do not depend on when it was preempted.
  std::unordered_map<std::string, std::unique_ptr<std::mt19937_64>> parked_generators_;
  int64_t num_fed_tokens_ = 0;
  std::mt19937_64 generator_;  // seeds unseeded requests; itself seeded from the engine seed
  std::map<int, std::unique_ptr<CapturedForward>> graphs_;  // by padded batch size
  int64_t graph_width_ = 0;  // block-table columns of the recorded passes
  int64_t num_graph_steps_ = 0;
};

}  // namespace cvllm
