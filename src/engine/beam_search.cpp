#include "engine/beam_search.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm {

void BeamSearchParams::validate() const {
  if (beam_width < 1) throw ValueError(cat("beam_width must be at least 1, got ", beam_width, "."));
  if (beam_width > 16384) throw ValueError(cat("beam_width must be at most 16384, got ", beam_width, "."));
  if (max_tokens < 1) throw ValueError(cat("max_tokens must be at least 1, got ", max_tokens, "."));
  if (std::isnan(temperature) || temperature < 0.0) {
    throw ValueError(cat("temperature must be non-negative, got ", temperature, "."));
  }
  if (!std::isfinite(length_penalty)) {
    throw ValueError(cat("length_penalty must be finite, got ", length_penalty, "."));
  }
}

double beam_search_score(const std::vector<int32_t>& tokens, double cum_logprob,
                         std::optional<int32_t> eos_token_id, double length_penalty) {
  double seq_len = static_cast<double>(tokens.size());
  if (eos_token_id && !tokens.empty() && tokens.back() == *eos_token_id) seq_len -= 1.0;
  return cum_logprob / std::pow(seq_len, length_penalty);
}

void BeamSearchCoordinator::add_group(const std::string& request_id, std::optional<std::string> prompt,
                                      std::vector<int32_t> prompt_token_ids,
                                      const BeamSearchParams& params,
                                      std::optional<int32_t> eos_token_id,
                                      const std::string& first_beam_id) {
  CVLLM_CHECK(!groups_.count(request_id), "duplicate beam search request ", request_id);
  Group& g = groups_[request_id];
  g.request_id = request_id;
  g.prompt = std::move(prompt);
  g.prompt_token_ids = prompt_token_ids;
  g.params = params;
  g.eos_token_id = eos_token_id;
  g.live.push_back(Beam{first_beam_id, std::move(prompt_token_ids), {}, 0.0});
  beam_to_group_[first_beam_id] = request_id;
}

std::vector<BeamSearchResult> BeamSearchCoordinator::process(const std::vector<EngineCoreOutput>& outputs,
                                                             Scheduler& scheduler) {
  std::vector<std::string> touched;
  for (const EngineCoreOutput& out : outputs) {
    auto it = beam_to_group_.find(out.request_id);
    if (it == beam_to_group_.end() || out.new_logprobs.empty()) continue;
    groups_.at(it->second).reported[out.request_id] = out.new_logprobs.front();
    if (std::find(touched.begin(), touched.end(), it->second) == touched.end()) touched.push_back(it->second);
  }
  std::vector<BeamSearchResult> finished;
  for (const std::string& id : touched) {
    Group& g = groups_.at(id);
    bool all_reported = std::all_of(g.live.begin(), g.live.end(),
                                    [&](const Beam& b) { return g.reported.count(b.engine_id) > 0; });
    if (!all_reported) continue;  // a preempted beam catches up in a later step
    if (expand(g, scheduler)) {
      finished.push_back(finish(g, scheduler));
      groups_.erase(id);
    }
  }
  return finished;
}

bool BeamSearchCoordinator::expand(Group& g, Scheduler& scheduler) {
  const int width = g.params.beam_width;
  struct Candidate {
    size_t parent;
    int32_t token;
    float logprob;
    double cum_logprob;
    double score;
  };
  std::vector<Candidate> pool;
  for (size_t b = 0; b < g.live.size(); ++b) {
    const Beam& beam = g.live[b];
    const TokenLogprobs& lp = g.reported.at(beam.engine_id);
    // vLLM's logprob dict order: the sampled token, then the top-2W by rank without repeats.
    std::vector<std::pair<int32_t, float>> entries = {{lp.sampled_token_id, lp.sampled_logprob}};
    for (size_t i = 0; i < lp.top_ids.size(); ++i) {
      if (lp.top_ids[i] != lp.sampled_token_id) entries.push_back({lp.top_ids[i], lp.top_logprobs[i]});
    }
    for (const auto& [token, logprob] : entries) {
      std::vector<int32_t> tokens = beam.tokens;
      tokens.push_back(token);
      double cum = beam.cum_logprob + logprob;
      if (g.eos_token_id && token == *g.eos_token_id && !g.params.ignore_eos) {
        Beam done{"", std::move(tokens), beam.logprobs, cum};
        done.logprobs.push_back(lp);
        g.completed.push_back(std::move(done));
        continue;
      }
      pool.push_back({b, token, logprob, cum,
                      beam_search_score(tokens, cum, g.eos_token_id, g.params.length_penalty)});
    }
  }
  // Python's sorted(reverse=True) is stable: equal scores keep their pool order.
  std::stable_sort(pool.begin(), pool.end(), [](const Candidate& a, const Candidate& c) { return a.score > c.score; });
  if (static_cast<int>(pool.size()) > width) pool.resize(width);
  ++g.steps_done;
  const bool last_step = g.steps_done >= g.params.max_tokens;

  // Survivors become the next live beams: a parent's first survivor continues its request, the
  // others fork it (forks first: they copy the parent's tokens before its own append).
  std::vector<Beam> next;
  for (size_t b = 0; b < g.live.size(); ++b) {
    const Beam& parent = g.live[b];
    std::vector<const Candidate*> mine;
    for (const Candidate& c : pool) {
      if (c.parent == b) mine.push_back(&c);
    }
    const TokenLogprobs& lp = g.reported.at(parent.engine_id);
    auto make_beam = [&](const Candidate& c, std::string engine_id) {
      Beam nb{std::move(engine_id), parent.tokens, parent.logprobs, c.cum_logprob};
      nb.tokens.push_back(c.token);
      nb.logprobs.push_back(lp);
      return nb;
    };
    if (mine.empty() || last_step) {
      scheduler.finish_requests({parent.engine_id}, RequestStatus::kFinishedAborted);
      beam_to_group_.erase(parent.engine_id);
      for (const Candidate* c : mine) next.push_back(make_beam(*c, ""));
      continue;
    }
    for (size_t i = 1; i < mine.size(); ++i) {
      std::string child_id = cat(g.request_id, "-beam-", g.next_beam_number++);
      scheduler.fork_request(parent.engine_id, child_id, mine[i]->token);
      if (scheduler.has_request(child_id)) {
        beam_to_group_[child_id] = g.request_id;
        next.push_back(make_beam(*mine[i], child_id));
      }  // else it ended at once (max_model_len): like vLLM, such a beam dies
    }
    if (scheduler.append_token(parent.engine_id, mine[0]->token)) {
      beam_to_group_.erase(parent.engine_id);  // reached max_model_len: it dies
    } else {
      next.push_back(make_beam(*mine[0], parent.engine_id));
    }
  }
  g.live = std::move(next);
  g.reported.clear();
  return last_step || g.live.empty();
}

BeamSearchResult BeamSearchCoordinator::finish(Group& g, Scheduler& scheduler) {
  for (Beam& b : g.live) {
    if (!b.engine_id.empty()) {
      scheduler.finish_requests({b.engine_id}, RequestStatus::kFinishedAborted);
      beam_to_group_.erase(b.engine_id);
    }
    g.completed.push_back(std::move(b));
  }
  std::vector<std::pair<double, size_t>> order;
  for (size_t i = 0; i < g.completed.size(); ++i) {
    const Beam& b = g.completed[i];
    order.push_back({beam_search_score(b.tokens, b.cum_logprob, g.eos_token_id, g.params.length_penalty), i});
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& c) { return a.first > c.first; });
  BeamSearchResult result;
  result.request_id = g.request_id;
  result.prompt = g.prompt;
  result.prompt_token_ids = g.prompt_token_ids;
  for (size_t k = 0; k < order.size() && static_cast<int>(k) < g.params.beam_width; ++k) {
    Beam& b = g.completed[order[k].second];
    bool eos = g.eos_token_id && b.tokens.size() > g.prompt_token_ids.size() && b.tokens.back() == *g.eos_token_id;
    result.beams.push_back({std::move(b.tokens), std::move(b.logprobs), b.cum_logprob, eos});
  }
  return result;
}

bool BeamSearchCoordinator::abort_group(const std::string& request_id, Scheduler& scheduler) {
  auto it = groups_.find(request_id);
  if (it == groups_.end()) return false;
  for (const Beam& b : it->second.live) {
    if (b.engine_id.empty()) continue;
    scheduler.finish_requests({b.engine_id}, RequestStatus::kFinishedAborted);
    beam_to_group_.erase(b.engine_id);
  }
  groups_.erase(it);
  return true;
}

RequestOutput beam_search_request_output(BeamSearchResult result, const Tokenizer* tokenizer,
                                         bool include_stop_str_in_output) {
  RequestOutput ro;
  ro.request_id = result.request_id;
  ro.prompt = result.prompt;
  ro.prompt_token_ids = result.prompt_token_ids;
  ro.finished = true;
  const auto prompt_len = static_cast<std::ptrdiff_t>(result.prompt_token_ids.size());
  for (size_t i = 0; i < result.beams.size(); ++i) {
    BeamSearchResult::Beam& b = result.beams[i];
    CompletionOutput c;
    c.index = static_cast<int>(i);
    c.token_ids.assign(b.tokens.begin() + prompt_len, b.tokens.end());
    std::vector<int32_t> text_ids = c.token_ids;
    if (b.ended_with_eos) {
      text_ids.pop_back();
      if (!include_stop_str_in_output) c.token_ids.pop_back();
      c.finish_reason = "stop";
      c.stop_reason = b.tokens.back();
    } else {
      c.finish_reason = "length";
    }
    if (tokenizer) c.text = tokenizer->decode(text_ids, /*skip_special_tokens=*/true);
    c.cumulative_logprob = b.cum_logprob;
    ro.outputs.push_back(std::move(c));
  }
  return ro;
}

}  // namespace cvllm
