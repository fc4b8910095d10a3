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

struct BeamSearchParams {
  int beam_width = 0;   // required, >= 1
  int max_tokens = 0;   // required, >= 1: expansion steps
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
