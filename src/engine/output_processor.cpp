#include "engine/output_processor.h"

#include <algorithm>

#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/system.h"
#include "util/utf8.h"

namespace cvllm {

struct OutputProcessor::ChildState {
  int index = 0;
  std::string engine_id;
  std::unique_ptr<IncrementalDetokenizer> detokenizer;
  CompletionOutput out;
  bool finished = false;
  bool has_new_data = false;
  size_t text_sent = 0;  // DELTA bookkeeping: what earlier outputs already carried
  size_t tokens_sent = 0;
  size_t logprobs_sent = 0;
};

struct OutputProcessor::ParentState {
  std::string request_id;
  std::optional<std::string> prompt;
  std::vector<int32_t> prompt_token_ids;
  std::shared_ptr<const SamplingParams> params;
  std::vector<ChildState> children;
  std::optional<std::vector<std::optional<PositionLogprobs>>> prompt_logprobs;
  size_t prompt_logprobs_sent = 0;
  int num_cached_tokens = 0;
  RequestMetrics metrics;
  size_t stop_buffer_bytes = 0;  // held back while streaming: a stop string may be forming

  bool all_finished() const {
    return std::all_of(children.begin(), children.end(), [](const ChildState& c) { return c.finished; });
  }
};

OutputProcessor::OutputProcessor(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
OutputProcessor::~OutputProcessor() = default;

void OutputProcessor::add_request(const std::string& request_id, std::optional<std::string> prompt,
                                  std::vector<int32_t> prompt_token_ids,
                                  std::shared_ptr<const SamplingParams> params,
                                  const std::vector<std::string>& child_request_ids) {
  CVLLM_CHECK(!requests_.count(request_id), "duplicate request id ", request_id);
  auto parent = std::make_unique<ParentState>();
  parent->request_id = request_id;
  parent->prompt = std::move(prompt);
  parent->prompt_token_ids = std::move(prompt_token_ids);
  parent->params = std::move(params);
  parent->metrics.arrival_time = wall_clock_seconds();
  parent->metrics.queued_ts = monotonic_seconds();
  const SamplingParams& p = *parent->params;
  if (!p.include_stop_str_in_output) {
    for (const std::string& s : p.stop) parent->stop_buffer_bytes = std::max(parent->stop_buffer_bytes, s.size() - 1);
  }
  // The first prompt token has no distribution: vLLM's list starts with None.
  if (p.prompt_logprobs) parent->prompt_logprobs.emplace(1, std::nullopt);
  parent->children.resize(child_request_ids.size());
  for (size_t i = 0; i < child_request_ids.size(); ++i) {
    ChildState& c = parent->children[i];
    c.index = static_cast<int>(i);
    c.out.index = c.index;
    c.engine_id = child_request_ids[i];
    if (p.logprobs) {
      c.out.logprobs.emplace();
      c.out.cumulative_logprob = 0.0;
    }
    if (tokenizer_ && p.detokenize) {
      c.detokenizer = std::make_unique<IncrementalDetokenizer>(*tokenizer_, parent->prompt_token_ids,
                                                               p.skip_special_tokens);
    }
  }
  ParentState* raw = parent.get();
  requests_[request_id] = std::move(parent);
  for (size_t i = 0; i < child_request_ids.size(); ++i) {
    child_to_parent_[child_request_ids[i]] = {raw, static_cast<int>(i)};
  }
}

std::string OutputProcessor::decode_token(int32_t token_id) const {
  if (!tokenizer_) return "";
  int32_t ids[1] = {token_id};
  return tokenizer_->decode(ids, /*skip_special_tokens=*/false);
}

PositionLogprobs OutputProcessor::to_position_logprobs(const TokenLogprobs& lp) const {
  // Like vLLM's dict: the sampled token first, then the top-k by rank; a token already present
  // is not repeated.
  PositionLogprobs entries;
  entries.push_back({lp.sampled_token_id, Logprob{lp.sampled_logprob, lp.sampled_rank,
                                                  decode_token(lp.sampled_token_id)}});
  for (size_t i = 0; i < lp.top_ids.size(); ++i) {
    if (lp.top_ids[i] == lp.sampled_token_id) continue;
    entries.push_back({lp.top_ids[i], Logprob{lp.top_logprobs[i], static_cast<int>(i) + 1,
                                              decode_token(lp.top_ids[i])}});
  }
  return entries;
}

void OutputProcessor::check_stop_strings(ChildState& child, size_t new_bytes) {
  ParentState& parent = *child_to_parent_.at(child.engine_id).first;
  const SamplingParams& p = *parent.params;
  std::string& text = child.out.text;
  if (new_bytes == 0 || p.stop.empty()) return;
  // Stop strings are not honoured before min_tokens tokens exist.
  if (static_cast<int>(child.out.token_ids.size()) < p.min_tokens) return;
  for (const std::string& stop : p.stop) {
    // Search only where a match can involve the new text.
    size_t window = new_bytes + stop.size() - 1;
    size_t start = text.size() > window ? text.size() - window : 0;
    size_t idx = text.find(stop, start);
    if (idx == std::string::npos) continue;
    text.resize(p.include_stop_str_in_output ? idx + stop.size() : idx);
    child.finished = true;
    child.out.finish_reason = "stop";
    child.out.stop_reason = stop;
    return;
  }
}

bool OutputProcessor::update_child(ChildState& child, const EngineCoreOutput& out) {
  ParentState& parent = *child_to_parent_.at(child.engine_id).first;
  const SamplingParams& p = *parent.params;
  if (!out.new_prompt_logprobs.empty() && parent.prompt_logprobs) {
    for (const TokenLogprobs& lp : out.new_prompt_logprobs) {
      parent.prompt_logprobs->push_back(to_position_logprobs(lp));
    }
  }
  parent.num_cached_tokens = out.num_cached_tokens;
  if (out.new_token_ids.empty() && !out.finished) return false;
  child.has_new_data = true;
  if (!out.new_token_ids.empty()) {
    RequestMetrics& m = parent.metrics;
    double now = monotonic_seconds();
    if (m.first_token_ts == 0.0) {
      m.first_token_ts = now;
      m.first_token_latency = now - m.queued_ts;
    }
    m.last_token_ts = now;
    m.num_generation_tokens += static_cast<int>(out.new_token_ids.size());
  }

  // A token that stopped the sequence (EOS or a stop token id) stays out of the text unless asked.
  bool stop_terminated = out.finished && out.status == RequestStatus::kFinishedStopped;
  size_t num_to_detokenize = out.new_token_ids.size();
  if (stop_terminated && !p.include_stop_str_in_output && num_to_detokenize > 0) --num_to_detokenize;

  size_t old_size = child.out.text.size();
  for (size_t i = 0; i < out.new_token_ids.size(); ++i) {
    child.out.token_ids.push_back(out.new_token_ids[i]);
    if (i < out.new_logprobs.size() && child.out.logprobs) {
      child.out.logprobs->push_back(to_position_logprobs(out.new_logprobs[i]));
      *child.out.cumulative_logprob += out.new_logprobs[i].sampled_logprob;
    }
    if (i < num_to_detokenize && child.detokenizer) {
      child.out.text += child.detokenizer->add_token(out.new_token_ids[i]);
    }
  }
  if (out.finished && child.detokenizer) child.out.text += child.detokenizer->flush();
  check_stop_strings(child, child.out.text.size() - old_size);
  if (child.finished) return true;  // a stop string ended it: the engine must abort the child

  if (out.finished) {
    child.finished = true;
    child.out.finish_reason = finish_reason_name(out.status);
    if (out.stop_token) child.out.stop_reason = *out.stop_token;
  }
  return false;
}

std::optional<RequestOutput> OutputProcessor::make_output(ParentState& parent, bool force) {
  const SamplingParams& p = *parent.params;
  bool finished = parent.all_finished();
  if (p.output_kind == RequestOutputKind::kFinalOnly && !finished && !force) return std::nullopt;
  bool delta = p.output_kind == RequestOutputKind::kDelta;

  RequestOutput ro;
  ro.request_id = parent.request_id;
  ro.prompt = parent.prompt;
  ro.prompt_token_ids = parent.prompt_token_ids;
  ro.num_cached_tokens = parent.num_cached_tokens;
  ro.finished = finished;
  ro.metrics = parent.metrics;
  if (parent.prompt_logprobs) {
    // Prompt logprobs go out once, with the first output that carries them.
    if (!delta || parent.prompt_logprobs_sent == 0) ro.prompt_logprobs = parent.prompt_logprobs;
    parent.prompt_logprobs_sent = parent.prompt_logprobs->size();
  }
  for (ChildState& c : parent.children) {
    if (delta && !c.has_new_data) continue;
    c.has_new_data = false;
    CompletionOutput co = c.out;
    // While streaming, hold back a tail that could still turn into a stop string.
    size_t visible = c.out.text.size();
    if (!c.finished && parent.stop_buffer_bytes > 0) {
      visible = visible > parent.stop_buffer_bytes ? visible - parent.stop_buffer_bytes : 0;
      while (visible > 0 && (static_cast<uint8_t>(c.out.text[visible]) & 0xC0) == 0x80) --visible;
    }
    if (delta) {
      size_t from = std::min(c.text_sent, visible);
      co.text = c.out.text.substr(from, visible - from);
      c.text_sent = std::max(c.text_sent, visible);
      co.token_ids.assign(c.out.token_ids.begin() + c.tokens_sent, c.out.token_ids.end());
      c.tokens_sent = c.out.token_ids.size();
      if (c.out.logprobs) {
        co.logprobs.emplace(c.out.logprobs->begin() + c.logprobs_sent, c.out.logprobs->end());
        c.logprobs_sent = c.out.logprobs->size();
      }
    } else {
      co.text = c.out.text.substr(0, visible);
    }
    ro.outputs.push_back(std::move(co));
  }
  return ro;
}

OutputProcessor::Result OutputProcessor::process_outputs(const std::vector<EngineCoreOutput>& outputs) {
  Result result;
  std::vector<ParentState*> touched;
  for (const EngineCoreOutput& out : outputs) {
    auto it = child_to_parent_.find(out.request_id);
    if (it == child_to_parent_.end()) continue;  // aborted meanwhile
    ParentState* parent = it->second.first;
    ChildState& child = parent->children[it->second.second];
    if (child.finished) continue;
    if (update_child(child, out)) result.reqs_to_abort.push_back(child.engine_id);
    if (std::find(touched.begin(), touched.end(), parent) == touched.end()) touched.push_back(parent);
  }
  for (ParentState* parent : touched) {
    std::optional<RequestOutput> ro = make_output(*parent, false);
    bool finished = parent->all_finished();
    if (ro) result.request_outputs.push_back(std::move(*ro));
    if (finished) {
      for (const ChildState& c : parent->children) child_to_parent_.erase(c.engine_id);
      requests_.erase(parent->request_id);
    }
  }
  return result;
}

std::vector<std::string> OutputProcessor::unfinished_children(const std::string& request_id) const {
  std::vector<std::string> ids;
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return ids;
  for (const ChildState& c : it->second->children) {
    if (!c.finished) ids.push_back(c.engine_id);
  }
  return ids;
}

std::vector<RequestOutput> OutputProcessor::abort_requests(const std::vector<std::string>& request_ids) {
  std::vector<RequestOutput> outputs;
  for (const std::string& id : request_ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    ParentState& parent = *it->second;
    for (ChildState& c : parent.children) {
      if (c.finished) continue;
      c.finished = true;
      c.has_new_data = true;
      c.out.finish_reason = "abort";
    }
    if (std::optional<RequestOutput> ro = make_output(parent, true)) outputs.push_back(std::move(*ro));
    for (const ChildState& c : parent.children) child_to_parent_.erase(c.engine_id);
    requests_.erase(it);
  }
  return outputs;
}

}  // namespace cvllm
