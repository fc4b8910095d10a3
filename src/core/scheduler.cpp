#include "core/scheduler.h"

#include <algorithm>

#include "util/error.h"

namespace cvllm {

Scheduler::Scheduler(const SchedulerConfig& config, int num_kv_blocks, int block_size,
                     bool enable_prefix_caching)
    : config_(config), kv_(num_kv_blocks, block_size, enable_prefix_caching) {
  CVLLM_CHECK(config.max_num_seqs > 0 && config.max_num_batched_tokens > 0,
              "max_num_seqs and max_num_batched_tokens must be positive");
}

void Scheduler::add_request(std::shared_ptr<Request> request) {
  CVLLM_CHECK(!requests_.count(request->request_id), "duplicate request id ", request->request_id);
  CVLLM_CHECK(request->num_prompt_tokens() > 0, "empty prompt");
  request->status = RequestStatus::kWaiting;
  requests_[request->request_id] = request;
  waiting_.push_back(std::move(request));
}

const std::shared_ptr<Request>& Scheduler::peek_next_waiting() const {
  if (config_.policy == SchedulingPolicy::kFcfs) return waiting_.front();
  auto it = std::min_element(waiting_.begin(), waiting_.end(), [](const auto& a, const auto& b) {
    return std::tie(a->priority, a->arrival_time) < std::tie(b->priority, b->arrival_time);
  });
  return *it;
}

std::shared_ptr<Request> Scheduler::pop_next_waiting() {
  std::shared_ptr<Request> next = peek_next_waiting();
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), next));
  return next;
}

std::shared_ptr<Request> Scheduler::pick_preemption_victim() {
  std::shared_ptr<Request> victim;
  for (const auto& r : running_) {
    if (r->num_output_placeholders > 0) continue;
    // FCFS: the last one. Priority: the lowest priority (largest value), latest arrival.
    if (!victim || config_.policy == SchedulingPolicy::kFcfs ||
        std::tie(r->priority, r->arrival_time) > std::tie(victim->priority, victim->arrival_time)) {
      victim = r;
    }
  }
  return victim;
}

bool Scheduler::placeholder_reaches_limit(const Request& request) const {
  return request.num_output_placeholders > 0 &&
         (request.num_tokens_with_placeholders() >= config_.max_model_len ||
          request.num_output_tokens() + request.num_output_placeholders >= request.max_tokens);
}

void Scheduler::preempt(const std::shared_ptr<Request>& request) {
  CVLLM_CHECK(request->num_output_placeholders == 0, "preempting ", request->request_id,
              " while its token is in flight");
  running_.erase(std::find(running_.begin(), running_.end(), request));
  kv_.free(*request);
  num_blocks_sent_.erase(request->request_id);
  request->status = RequestStatus::kPreempted;
  request->unsent_engine_tokens.clear();
  auto unsent = std::find(unsent_new_.begin(), unsent_new_.end(), request->request_id);
  if (unsent != unsent_new_.end()) unsent_new_.erase(unsent);
  request->num_computed_tokens = 0;
  ++request->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(request);
}

bool Scheduler::schedule_running(SchedulerOutput& out, int& token_budget,
                                 std::vector<std::shared_ptr<Request>>& scheduled_running,
                                 std::vector<std::shared_ptr<Request>>& preempted) {
  size_t index = 0;
  // Beams given a token by the engine can outnumber max_num_seqs; the rest run next step.
  while (index < running_.size() && token_budget > 0 &&
         static_cast<int>(scheduled_running.size()) < config_.max_num_seqs) {
    std::shared_ptr<Request> request = running_[index];
    int num_new_tokens = request->num_tokens_with_placeholders() - request->num_computed_tokens;
    // Its last token is in flight, or the token before the one in flight is not known yet (the
    // runner feeds only the latest step's tokens).
    if (placeholder_reaches_limit(*request) || request->num_output_placeholders > 1) {
      num_new_tokens = 0;
    }
    num_new_tokens = std::min(num_new_tokens, token_budget);
    if (num_new_tokens <= 0) {
      ++index;
      continue;
    }
    std::optional<std::vector<int>> new_blocks;
    while (!(new_blocks = kv_.allocate_slots(*request, num_new_tokens))) {
      std::shared_ptr<Request> victim = pick_preemption_victim();
      if (!victim) break;  // only requests with tokens in flight: retry after their step
      // A victim scheduled earlier in this step gives back its tokens too.
      auto sched_it = std::find(scheduled_running.begin(), scheduled_running.end(), victim);
      if (sched_it != scheduled_running.end()) {
        token_budget += out.num_scheduled_tokens[victim->request_id];
        out.num_scheduled_tokens.erase(victim->request_id);
        scheduled_running.erase(sched_it);
        --index;
      }
      preempt(victim);
      preempted.push_back(victim);
      if (victim == request) break;
    }
    if (!new_blocks) {
      if (request->status == RequestStatus::kRunning) ++index;  // no victim: it waits a step
      continue;  // else it preempted itself; the list shifted
    }
    scheduled_running.push_back(request);
    out.num_scheduled_tokens[request->request_id] = num_new_tokens;
    token_budget -= num_new_tokens;
    ++index;
  }
  return preempted.empty();
}

void Scheduler::schedule_waiting(SchedulerOutput& out, int& token_budget,
                                 std::vector<std::shared_ptr<Request>>& scheduled_new) {
  int active = num_active_running();
  int scheduled = static_cast<int>(out.num_scheduled_tokens.size());
  while (!waiting_.empty() && token_budget > 0 && active < config_.max_num_seqs &&
         scheduled < config_.max_num_seqs) {
    std::shared_ptr<Request> request = peek_next_waiting();
    ComputedBlocks computed;
    if (request->num_computed_tokens == 0) computed = kv_.get_computed_blocks(*request);
    int num_new_tokens = request->num_tokens() - request->num_computed_tokens - computed.num_tokens;
    if (!config_.enable_chunked_prefill && num_new_tokens > token_budget) break;
    num_new_tokens = std::min(num_new_tokens, token_budget);
    if (!kv_.allocate_slots(*request, num_new_tokens, computed)) break;
    pop_next_waiting();
    if (request->num_cached_tokens < 0) {
      kv_.record_prefix_cache_lookup(request->num_tokens(), computed.num_tokens);
      request->num_cached_tokens = computed.num_tokens;
    }
    request->num_computed_tokens += computed.num_tokens;
    request->status = RequestStatus::kRunning;
    running_.push_back(request);
    ++active;
    ++scheduled;
    scheduled_new.push_back(request);
    out.num_scheduled_tokens[request->request_id] = num_new_tokens;
    token_budget -= num_new_tokens;
  }
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int token_budget = config_.max_num_batched_tokens;
  std::vector<std::shared_ptr<Request>> scheduled_running, preempted, scheduled_new;
  // New requests are not admitted in a step that had to preempt: memory is short.
  if (schedule_running(out, token_budget, scheduled_running, preempted)) {
    schedule_waiting(out, token_budget, scheduled_new);
    // Beams waiting for their group hold KV blocks without running; when they starve the waiting
    // queue (a preempted beam of the same group, say), they give their blocks back one by one.
    while (out.num_scheduled_tokens.empty() && !waiting_.empty()) {
      auto idle = std::find_if(running_.rbegin(), running_.rend(), [](const auto& r) {
        return r->tokens_from_engine && r->num_computed_tokens == r->num_tokens();
      });
      if (idle == running_.rend()) break;
      std::shared_ptr<Request> victim = *idle;
      preempt(victim);
      // Behind the requests it makes room for (preempt() queued it first).
      waiting_.pop_front();
      waiting_.push_back(victim);
      preempted.push_back(victim);
      schedule_waiting(out, token_budget, scheduled_new);
    }
  }
  for (const auto& request : scheduled_new) {
    NewRequestData data;
    data.request_id = request->request_id;
    data.prompt_token_ids = request->prompt_token_ids;
    data.output_token_ids = request->output_token_ids;
    data.sampling_params = request->sampling_params;
    data.block_ids = kv_.get_block_ids(request->request_id);
    data.num_computed_tokens = request->num_computed_tokens;
    data.tokens_from_engine = request->tokens_from_engine;
    request->unsent_engine_tokens.clear();
    num_blocks_sent_[request->request_id] = data.block_ids.size();
    out.scheduled_new_reqs.push_back(std::move(data));
  }
  for (const auto& request : scheduled_running) {
    auto unsent = std::find(unsent_new_.begin(), unsent_new_.end(), request->request_id);
    if (unsent != unsent_new_.end()) {  // a fork: the runner builds it from scratch
      unsent_new_.erase(unsent);
      NewRequestData data;
      data.request_id = request->request_id;
      data.prompt_token_ids = request->prompt_token_ids;
      data.output_token_ids = request->output_token_ids;
      data.sampling_params = request->sampling_params;
      data.block_ids = kv_.get_block_ids(request->request_id);
      data.num_computed_tokens = request->num_computed_tokens;
      data.tokens_from_engine = request->tokens_from_engine;
      num_blocks_sent_[request->request_id] = data.block_ids.size();
      request->unsent_engine_tokens.clear();
      out.scheduled_new_reqs.push_back(std::move(data));
      continue;
    }
    CachedRequestData data;
    data.request_id = request->request_id;
    const std::vector<int>& blocks = kv_.get_block_ids(request->request_id);
    // Block tables are append-only: send only the blocks the runner has not seen.
    size_t& sent = num_blocks_sent_[request->request_id];
    data.new_block_ids.assign(blocks.begin() + std::min(sent, blocks.size()), blocks.end());
    sent = blocks.size();
    data.new_token_ids = std::move(request->unsent_engine_tokens);
    request->unsent_engine_tokens.clear();
    data.num_computed_tokens = request->num_computed_tokens;
    out.scheduled_cached_reqs.push_back(std::move(data));
  }
  for (const auto& [id, n] : out.num_scheduled_tokens) out.total_num_scheduled_tokens += n;
  for (const auto& request : preempted) out.preempted_req_ids.push_back(request->request_id);
  out.finished_req_ids = std::move(finished_req_ids_);
  finished_req_ids_.clear();
  out.blocks_to_copy = std::move(blocks_to_copy_);
  blocks_to_copy_.clear();

  // Advance progress now: the next schedule() sees these tokens as computed.
  for (const auto& [id, n] : out.num_scheduled_tokens) {
    Request& request = *requests_.at(id);
    request.num_computed_tokens += n;
    // Caught up: the step samples its next token, which the next schedule() may already compute.
    if (config_.async_scheduling && !request.tokens_from_engine &&
        request.num_computed_tokens == request.num_tokens_with_placeholders()) {
      ++request.num_output_placeholders;
    }
  }

  CVLLM_CHECK(out.total_num_scheduled_tokens <= config_.max_num_batched_tokens,
              "scheduled more tokens than the budget");
  CVLLM_CHECK(static_cast<int>(out.num_scheduled_tokens.size()) <= config_.max_num_seqs,
              "scheduled more requests than max_num_seqs");
  return out;
}

bool Scheduler::check_stop(Request& request) const {
  const SamplingParams& sp = *request.sampling_params;
  if (request.num_output_tokens() >= sp.min_tokens) {
    int32_t last = request.output_token_ids.back();
    if (!sp.ignore_eos && request.eos_token_id && last == *request.eos_token_id) {
      request.status = RequestStatus::kFinishedStopped;
      return true;
    }
    if (std::find(sp.stop_token_ids.begin(), sp.stop_token_ids.end(), last) !=
        sp.stop_token_ids.end()) {
      request.status = RequestStatus::kFinishedStopped;
      request.stop_token = last;
      return true;
    }
  }
  if (request.num_tokens() >= config_.max_model_len ||
      request.num_output_tokens() >= request.max_tokens) {
    request.status = RequestStatus::kFinishedLengthCapped;
    return true;
  }
  return false;
}

void Scheduler::free_request(const std::shared_ptr<Request>& request) {
  request->num_output_placeholders = 0;  // tokens still in flight for it are dropped
  kv_.free(*request);
  num_blocks_sent_.erase(request->request_id);
  finished_req_ids_.push_back(request->request_id);
  requests_.erase(request->request_id);
}

std::vector<EngineCoreOutput> Scheduler::update_from_output(const SchedulerOutput& scheduled,
                                                            const ModelRunnerOutput& output) {
  std::vector<EngineCoreOutput> outputs;
  std::vector<std::shared_ptr<Request>> stopped;
  for (size_t i = 0; i < output.req_ids.size(); ++i) {
    auto it = requests_.find(output.req_ids[i]);
    if (it == requests_.end()) continue;  // aborted while the step ran
    std::shared_ptr<Request> request = it->second;
    if (request->status != RequestStatus::kRunning) continue;  // preempted this step
    EngineCoreOutput core_out;
    core_out.request_id = request->request_id;
    core_out.num_cached_tokens = std::max(request->num_cached_tokens, 0);
    auto prompt_it = output.prompt_logprobs.find(request->request_id);
    if (prompt_it != output.prompt_logprobs.end()) core_out.new_prompt_logprobs = prompt_it->second;
    const std::vector<int32_t>& sampled = output.sampled_token_ids[i];
    request->num_output_placeholders -=
        std::min(request->num_output_placeholders, static_cast<int>(sampled.size()));
    if (request->tokens_from_engine) {
      // Beam search: report the step's logprobs; the engine appends the chosen token.
      if (!sampled.empty() && i < output.logprobs.size()) core_out.new_logprobs = output.logprobs[i];
      if (!core_out.new_logprobs.empty() || !core_out.new_prompt_logprobs.empty()) {
        outputs.push_back(std::move(core_out));
      }
      continue;
    }
    for (size_t j = 0; j < sampled.size(); ++j) {
      request->append_output_token(sampled[j]);
      core_out.new_token_ids.push_back(sampled[j]);
      if (i < output.logprobs.size() && j < output.logprobs[i].size()) {
        core_out.new_logprobs.push_back(output.logprobs[i][j]);
      }
      if (check_stop(*request)) {
        core_out.finished = true;
        core_out.status = request->status;
        core_out.stop_token = request->stop_token;
        stopped.push_back(request);
        break;
      }
    }
    if (!core_out.new_token_ids.empty() || !core_out.new_prompt_logprobs.empty()) {
      outputs.push_back(std::move(core_out));
    }
  }
  for (const auto& request : stopped) {
    running_.erase(std::find(running_.begin(), running_.end(), request));
    free_request(request);
  }
  return outputs;
}

bool Scheduler::append_token(const std::string& request_id, int32_t token) {
  std::shared_ptr<Request> request = requests_.at(request_id);
  const bool running = request->status == RequestStatus::kRunning;
  CVLLM_CHECK(request->tokens_from_engine && (!running || request->num_computed_tokens == request->num_tokens()),
              "append_token: request ", request_id, " is not waiting for an engine token");
  request->append_output_token(token);
  // A preempted beam is rebuilt in full when it runs again; a running one hears of the token.
  if (running) request->unsent_engine_tokens.push_back(token);
  if (request->num_tokens() >= config_.max_model_len || request->num_output_tokens() >= request->max_tokens) {
    finish_requests({request_id}, RequestStatus::kFinishedLengthCapped);
    return true;
  }
  return false;
}

void Scheduler::fork_request(const std::string& parent_id, const std::string& child_id, int32_t token) {
  std::shared_ptr<Request> parent = requests_.at(parent_id);
  const bool parent_running = parent->status == RequestStatus::kRunning;
  CVLLM_CHECK(parent->tokens_from_engine && (!parent_running || parent->num_computed_tokens == parent->num_tokens()),
              "fork_request: parent ", parent_id, " is not a beam waiting for a token");
  CVLLM_CHECK(!requests_.count(child_id), "duplicate request id ", child_id);
  auto child = std::make_shared<Request>(*parent);
  child->request_id = child_id;
  child->unsent_engine_tokens.clear();
  child->num_preemptions = 0;
  std::optional<std::optional<std::pair<int, int>>> copy;
  if (parent_running && num_active_running() < config_.max_num_seqs) copy = kv_.fork(*parent, *child);
  if (!copy) {
    // No seat, no parent KV to share, or no block for the copy: the child waits like a preempted
    // request, holding no blocks, and is recomputed (mostly from the prefix cache) when scheduled.
    child->num_computed_tokens = 0;
    child->status = RequestStatus::kPreempted;
    child->append_output_token(token);
    bool capped = child->num_tokens() >= config_.max_model_len ||
                  child->num_output_tokens() >= child->max_tokens;
    if (!capped) {  // a capped child would end at once: it never starts
      requests_[child_id] = child;
      waiting_.push_back(child);
    }
    return;
  }
  if (*copy) blocks_to_copy_.push_back(**copy);
  requests_[child_id] = child;
  running_.insert(std::find(running_.begin(), running_.end(), parent) + 1, child);
  unsent_new_.push_back(child_id);
  append_token(child_id, token);
}

void Scheduler::finish_requests(const std::vector<std::string>& request_ids, RequestStatus status) {
  CVLLM_CHECK(is_finished(status), "finish_requests needs a finished status");
  for (const std::string& id : request_ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // already finished
    std::shared_ptr<Request> request = it->second;
    if (request->status == RequestStatus::kRunning) {
      running_.erase(std::find(running_.begin(), running_.end(), request));
    } else {
      waiting_.erase(std::find(waiting_.begin(), waiting_.end(), request));
    }
    request->status = status;
    auto unsent = std::find(unsent_new_.begin(), unsent_new_.end(), id);
    if (unsent != unsent_new_.end()) unsent_new_.erase(unsent);
    free_request(request);
  }
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.num_running_reqs = static_cast<int>(running_.size());
  s.num_waiting_reqs = static_cast<int>(waiting_.size());
  s.kv_cache_usage = kv_.usage();
  s.prefix_cache = kv_.prefix_cache_stats();
  s.num_preemptions = num_preemptions_;
  return s;
}

int Scheduler::num_active_running() const {
  int n = 0;
  for (const auto& r : running_) {
    // A beam that computed everything and waits for the engine's token needs no seat.
    if (!(r->tokens_from_engine && r->num_computed_tokens == r->num_tokens())) ++n;
  }
  return n;
}

void Scheduler::check_invariants() const {
  kv_.block_pool().check_invariants();
  CVLLM_CHECK(num_active_running() <= config_.max_num_seqs, "too many running");
  CVLLM_CHECK(running_.size() + waiting_.size() == requests_.size(),
              "request table out of sync with the queues");
  int bs = kv_.block_size();
  for (const auto& request : running_) {
    CVLLM_CHECK(request->status == RequestStatus::kRunning, "running queue holds a non-running request");
    CVLLM_CHECK(request->num_computed_tokens <= request->num_tokens_with_placeholders(),
                "computed past the end");
    CVLLM_CHECK(request->num_output_placeholders <= 2, "more than two tokens in flight");
    size_t needed = static_cast<size_t>((request->num_computed_tokens + bs - 1) / bs);
    CVLLM_CHECK(kv_.get_block_ids(request->request_id).size() >= needed,
                "request ", request->request_id, " has fewer blocks than computed tokens need");
  }
  for (const auto& request : waiting_) {
    CVLLM_CHECK(!kv_.has_request(request->request_id), "waiting request holds KV blocks");
  }
}

}  // namespace cvllm
