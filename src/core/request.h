// Request: the scheduler's view of one sequence — token ids, progress and stop conditions. No
// tensors here: the model runner keeps its own per-request state keyed by request_id.
//
// Invariant: all_token_ids == prompt_token_ids ++ output_token_ids, and
// 0 <= num_computed_tokens <= num_tokens() + num_output_placeholders. The scheduler advances
// num_computed_tokens when it schedules tokens; a request "catches up" when num_computed_tokens ==
// num_tokens() + num_output_placeholders, and the model then samples one more token for it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/block_hash.h"
#include "cvllm/sampling_params.h"

namespace cvllm {

enum class RequestStatus {
  kWaiting,
  kRunning,
  kPreempted,
  kFinishedStopped,        // EOS, a stop token or a stop string
  kFinishedLengthCapped,   // max_tokens or max_model_len
  kFinishedAborted,
  kFinishedError,
};

inline bool is_finished(RequestStatus status) { return status >= RequestStatus::kFinishedStopped; }
// vLLM's finish_reason string for a finished status ("stop", "length", "abort", "error").
const char* finish_reason_name(RequestStatus status);

struct Request {
  Request(std::string request_id, std::vector<int32_t> prompt_token_ids,
          std::shared_ptr<const SamplingParams> sampling_params, std::optional<int32_t> eos_token_id,
          double arrival_time, int priority = 0, std::string cache_salt = "");

  int num_tokens() const { return static_cast<int>(all_token_ids.size()); }
  // Tokens including those sampled by a step still running (async scheduling).
  int num_tokens_with_placeholders() const { return num_tokens() + num_output_placeholders; }
  int num_prompt_tokens() const { return static_cast<int>(prompt_token_ids.size()); }
  int num_output_tokens() const { return static_cast<int>(output_token_ids.size()); }
  void append_output_token(int32_t token_id);

  std::string request_id;
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> output_token_ids;
  std::vector<int32_t> all_token_ids;
  std::shared_ptr<const SamplingParams> sampling_params;
  std::optional<int32_t> eos_token_id;  // the tokenizer's EOS; extra EOS ids are in stop_token_ids
  int max_tokens = 16;                  // resolved: never unbounded here
  double arrival_time = 0.0;
  int priority = 0;                     // lower runs first under the priority policy
  std::string cache_salt;

  RequestStatus status = RequestStatus::kWaiting;
  int num_computed_tokens = 0;
  int num_cached_tokens = -1;  // prefix-cache hit at first scheduling; -1 until scheduled
  int num_preemptions = 0;
  // Async scheduling: tokens a step in flight will sample for this request, not known yet. The
  // next step may already compute them (the runner feeds the sampled id on the device).
  int num_output_placeholders = 0;
  std::optional<int32_t> stop_token;  // the stop token id that finished it, if any

  // Hashes of the full blocks of all_token_ids, computed by the KV-cache manager as blocks fill.
  std::vector<BlockHash> block_hashes;
  bool skip_reading_prefix_cache = false;  // prompt logprobs need every prompt position computed
  // Beam search: the engine, not the sampler, picks each next token. The model's logprobs for the
  // last position are reported and the request waits (caught up) until append_token/fork_request.
  bool tokens_from_engine = false;
  // Tokens appended by the engine since the runner last heard of this request.
  std::vector<int32_t> unsent_engine_tokens;
};

}  // namespace cvllm
