// Scheduler: decides, each step, which requests run and how many tokens each computes.
//
// One rule: every request's num_computed_tokens catches up to its num_tokens within the step's
// budget (max_num_batched_tokens tokens, max_num_seqs sequences). Running requests go first, in
// order; then waiting ones (FCFS, or by priority), after a prefix-cache lookup. There is no prefill
// or decode phase: a long prompt simply takes several steps (chunked prefill), a cache hit starts
// a prompt part-way, and a decode is a request one token behind. When KV blocks run out, the last
// running request (or the lowest-priority one) is preempted: its blocks are freed and it is
// recomputed later from the waiting queue.
//
// Pure logic: no tensors, no kernels. schedule() checks its invariants on every call.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/kv_cache_manager.h"
#include "core/request.h"
#include "core/sched_output.h"

namespace cvllm {

enum class SchedulingPolicy { kFcfs, kPriority };

struct SchedulerConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 4096;
  int max_model_len = 8192;
  bool enable_chunked_prefill = true;
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  // Schedule the next step while the current one runs (vLLM's async scheduling): each request
  // that samples gets a placeholder for its token, so the next schedule() can already compute it.
  // A request whose token is in flight is never preempted and never gets more tokens once that
  // token reaches a length limit.
  bool async_scheduling = false;
};

// What one step produced for one request, for the output processor.
struct EngineCoreOutput {
  std::string request_id;
  std::vector<int32_t> new_token_ids;
  std::vector<TokenLogprobs> new_logprobs;
  std::vector<TokenLogprobs> new_prompt_logprobs;
  bool finished = false;
  RequestStatus status = RequestStatus::kRunning;
  std::optional<int32_t> stop_token;  // stop_reason when a stop token finished it
  int num_cached_tokens = 0;
};

struct SchedulerStats {
  int num_running_reqs = 0;
  int num_waiting_reqs = 0;
  double kv_cache_usage = 0.0;
  PrefixCacheStats prefix_cache;
  int64_t num_preemptions = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, int num_kv_blocks, int block_size,
            bool enable_prefix_caching);

  void add_request(std::shared_ptr<Request> request);
  // Finishes requests with the given status (abort, or a stop string found by the frontend).
  void finish_requests(const std::vector<std::string>& request_ids, RequestStatus status);

  SchedulerOutput schedule();
  std::vector<EngineCoreOutput> update_from_output(const SchedulerOutput& scheduled,
                                                   const ModelRunnerOutput& output);

  // Beam search (requests with tokens_from_engine, waiting caught up after a step):
  // appends the token the engine chose; returns true when that finished the request (length
  // limits), which frees it.
  bool append_token(const std::string& request_id, int32_t token);
  // Starts `child_id` as a copy of `parent_id` (same tokens, its KV shared block by block,
  // copy-on-write of a partial last block) continued by `token`. Without a free seat or block the
  // child waits and is recomputed when scheduled. It ends at once if `token` reaches a length
  // limit (has_request(child_id) is then false).
  void fork_request(const std::string& parent_id, const std::string& child_id, int32_t token);

  bool has_request(const std::string& request_id) const { return requests_.count(request_id) > 0; }
  bool has_unfinished_requests() const { return !running_.empty() || !waiting_.empty(); }
  int num_unfinished_requests() const { return static_cast<int>(running_.size() + waiting_.size()); }
  SchedulerStats stats() const;
  const KVCacheManager& kv_cache_manager() const { return kv_; }
  KVCacheManager& kv_cache_manager() { return kv_; }
  const SchedulerConfig& config() const { return config_; }

  // Throws cvllm::Error if a bookkeeping invariant is broken (tests call it after every step).
  void check_invariants() const;

 private:
  bool schedule_running(SchedulerOutput& out, int& token_budget,
                        std::vector<std::shared_ptr<Request>>& scheduled_running,
                        std::vector<std::shared_ptr<Request>>& preempted);
  void schedule_waiting(SchedulerOutput& out, int& token_budget,
                        std::vector<std::shared_ptr<Request>>& scheduled_new);
  // Running requests that occupy a seat of max_num_seqs (idle beams waiting for a token do not).
  int num_active_running() const;
  // Null when every running request has a token in flight (those are not preempted).
  std::shared_ptr<Request> pick_preemption_victim();
  // The token in flight ends the request by length (max_tokens or max_model_len).
  bool placeholder_reaches_limit(const Request& request) const;
  void preempt(const std::shared_ptr<Request>& request);
  std::shared_ptr<Request> pop_next_waiting();
  const std::shared_ptr<Request>& peek_next_waiting() const;
  bool check_stop(Request& request) const;
  void free_request(const std::shared_ptr<Request>& request);

  SchedulerConfig config_;
  KVCacheManager kv_;
  std::unordered_map<std::string, std::shared_ptr<Request>> requests_;
  std::deque<std::shared_ptr<Request>> waiting_;
  std::vector<std::shared_ptr<Request>> running_;
  std::vector<std::string> finished_req_ids_;  // since the last schedule()
  std::unordered_map<std::string, size_t> num_blocks_sent_;  // block ids the runner already has
  std::vector<std::string> unsent_new_;  // running requests the runner has not seen (forks)
  std::vector<std::pair<int, int>> blocks_to_copy_;  // since the last schedule()
  int64_t num_preemptions_ = 0;
};

}  // namespace cvllm
