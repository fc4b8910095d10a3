// The plain data that crosses the scheduler -> model runner -> scheduler boundary each step:
// request ids, token counts and block ids only — never tensors — so the boundary could become a
// process boundary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cvllm/sampling_params.h"

namespace cvllm {

// A request the runner has not seen (or must rebuild after preemption): everything it needs.
struct NewRequestData {
  std::string request_id;
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> output_token_ids;  // non-empty when resumed after preemption or forked
  std::shared_ptr<const SamplingParams> sampling_params;
  std::vector<int> block_ids;
  int num_computed_tokens = 0;  // includes prefix-cache hits
  bool tokens_from_engine = false;  // beam search: do not append sampled tokens
};

// A request the runner already holds: only what changed.
struct CachedRequestData {
  std::string request_id;
  std::vector<int> new_block_ids;
  int num_computed_tokens = 0;
  std::vector<int32_t> new_token_ids;  // appended by the engine (beam search), not sampled
};

struct SchedulerOutput {
  std::vector<NewRequestData> scheduled_new_reqs;
  std::vector<CachedRequestData> scheduled_cached_reqs;
  std::unordered_map<std::string, int> num_scheduled_tokens;
  int total_num_scheduled_tokens = 0;
  // Requests that finished or were preempted since the last step: the runner drops their state.
  std::vector<std::string> finished_req_ids;
  std::vector<std::string> preempted_req_ids;
  // KV blocks to copy (src, dst) before the forward pass: copy-on-write of a partially filled
  // block when a beam forks.
  std::vector<std::pair<int, int>> blocks_to_copy;

  bool empty() const { return total_num_scheduled_tokens == 0; }
};

// Logprobs of one position: token ids and logprobs of the top-k (rank order) plus the sampled
// token's own logprob and rank.
struct TokenLogprobs {
  int32_t sampled_token_id = 0;
  float sampled_logprob = 0.0f;
  int sampled_rank = 0;           // 1-based rank in the vocabulary
  std::vector<int32_t> top_ids;   // [k]
  std::vector<float> top_logprobs;  // [k]
};

// What the runner produced for the scheduled requests, in the order of `req_ids`.
struct ModelRunnerOutput {
  std::vector<std::string> req_ids;
  // Per request: the sampled token ids this step (empty for a prefill chunk that did not reach
  // the end of the prompt).
  std::vector<std::vector<int32_t>> sampled_token_ids;
  std::vector<std::vector<TokenLogprobs>> logprobs;  // parallel to sampled_token_ids when requested
  // Prompt logprobs computed this step for each request (one entry per prompt position covered).
  std::unordered_map<std::string, std::vector<TokenLogprobs>> prompt_logprobs;
};

}  // namespace cvllm
