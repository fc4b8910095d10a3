// Beam search, as vLLM offers it (`vllm.sampling_params.BeamSearchParams`, `LLM.beam_search`,
// `vllm.beam_search.BeamSearchOutput`). Unlike vLLM, which re-submits every beam as a one-token
// request each step, cvllm runs beams inside the engine: a beam is a sequence whose KV blocks are
// shared with its parent, so a step costs one forward over beam_width tokens per prompt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cvllm/outputs.h"

namespace cvllm {

// Constructed like vLLM's BeamSearchParams(beam_width, max_tokens); the other fields are set after:
//   cvllm::BeamSearchParams params(5, 50);  params.length_penalty = 0.8;
// (A constructor, not an aggregate, so `generate(prompt, {.temperature = 0})` stays unambiguous.)
struct BeamSearchParams {
  BeamSearchParams(int beam_width, int max_tokens) : beam_width(beam_width), max_tokens(max_tokens) {}

  int beam_width;       // >= 1
  int max_tokens;       // >= 1: expansion steps
  bool ignore_eos = false;
  double temperature = 0.0;    // > 0 adds one sampled candidate per beam, as vLLM does
  double length_penalty = 1.0;  // score = cum_logprob / seq_len ** length_penalty
  bool include_stop_str_in_output = false;  // keep EOS in returned token ids (server only)

  void validate() const;  // throws ValueError
};

struct BeamSearchSequence {
  std::vector<int32_t> tokens;  // prompt followed by the generated tokens
  std::vector<PositionLogprobs> logprobs;  // one entry per generated token
  double cum_logprob = 0.0;
  std::string text;  // decode(tokens), prompt included, special tokens kept (vLLM's)
  std::optional<std::string> finish_reason;
  std::variant<std::monostate, std::string, int32_t> stop_reason;
};

struct BeamSearchOutput {
  std::vector<BeamSearchSequence> sequences;  // best first, at most beam_width
};

}  // namespace cvllm
