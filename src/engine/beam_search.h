// BeamSearchCoordinator: vLLM's beam-search algorithm (vllm-behaviour.md §3.2) run on engine
// requests. Each live beam is a request with tokens_from_engine set: after a step its top-2W
// logprobs come back, and once every live beam of a prompt has reported, the coordinator ranks the
// candidates, then turns the survivors into requests — the first survivor of a beam continues it
// (append_token), others fork it (KV shared with the parent) and beams without survivors are
// dropped. Candidates ending in EOS go to the completed list without costing a request.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/scheduler.h"
#include "cvllm/beam_search.h"
#include "cvllm/outputs.h"

namespace cvllm {

struct BeamSearchResult {
  std::string request_id;
  std::optional<std::string> prompt;
  std::vector<int32_t> prompt_token_ids;
  struct Beam {
    std::vector<int32_t> tokens;  // prompt + generated
    std::vector<TokenLogprobs> logprobs;  // per generated token
    double cum_logprob = 0.0;
    bool ended_with_eos = false;
  };
  std::vector<Beam> beams;  // best first
};

// vLLM's get_beam_search_score: the sequence length counts the prompt, minus a trailing EOS.
double beam_search_score(const std::vector<int32_t>& tokens, double cum_logprob,
                         std::optional<int32_t> eos_token_id, double length_penalty);

class Tokenizer;

// vLLM's online form of a finished beam search: one RequestOutput whose completions are the beams,
// best first, generated part only; an EOS that ended a beam stays out of the text (and out of
// token_ids unless include_stop_str_in_output), with finish_reason "stop" and the EOS id as
// stop_reason, else "length". Text is empty without a tokenizer.
RequestOutput beam_search_request_output(BeamSearchResult result, const Tokenizer* tokenizer,
                                         bool include_stop_str_in_output);

class BeamSearchCoordinator {
 public:
  // `first_beam_id` is the engine request already added for the prompt (tokens_from_engine).
  void add_group(const std::string& request_id, std::optional<std::string> prompt,
                 std::vector<int32_t> prompt_token_ids, const BeamSearchParams& params,
                 std::optional<int32_t> eos_token_id, const std::string& first_beam_id);
  bool owns(const std::string& engine_request_id) const { return beam_to_group_.count(engine_request_id) > 0; }
  bool empty() const { return groups_.empty(); }

  // Consumes the outputs of beam requests (others are left alone), advances every group whose
  // live beams have all reported, and returns the groups that finished.
  std::vector<BeamSearchResult> process(const std::vector<EngineCoreOutput>& outputs, Scheduler& scheduler);
  // Drops a group and frees its requests; returns false for an unknown id.
  bool abort_group(const std::string& request_id, Scheduler& scheduler);

 private:
  struct Beam {
    std::string engine_id;  // empty once the beam's request has ended
    std::vector<int32_t> tokens;
    std::vector<TokenLogprobs> logprobs;
    double cum_logprob = 0.0;
  };
  struct Group {
    std::string request_id;
    std::optional<std::string> prompt;
    std::vector<int32_t> prompt_token_ids;
    BeamSearchParams params{1, 1};
    std::optional<int32_t> eos_token_id;
    int steps_done = 0;
    int next_beam_number = 1;
    std::vector<Beam> live;
    std::vector<Beam> completed;
    std::unordered_map<std::string, TokenLogprobs> reported;  // this step, by engine id
  };

  // Returns true when the group finished.
  bool expand(Group& group, Scheduler& scheduler);
  BeamSearchResult finish(Group& group, Scheduler& scheduler);

  std::map<std::string, Group> groups_;
  std::unordered_map<std::string, std::string> beam_to_group_;
};

}  // namespace cvllm
