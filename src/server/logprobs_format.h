// Logprobs in the two OpenAI response formats vLLM produces (§6.6 of the behaviour notes):
// - completions: {tokens, token_logprobs, top_logprobs: [{token_str: logprob}], text_offset}; each
//   top dict holds up to logprobs+1 entries (the sampled token first), keyed by decoded text.
// - chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}; the top
//   list is the first `top_logprobs` entries of the position (sampled token first, then by rank).
// -inf is clamped to -9999.0, as OpenAI does.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cvllm/outputs.h"
#include "server/json_util.h"

namespace cvllm {
class Tokenizer;
}

namespace cvllm::server {

struct LogprobsFormat {
  const Tokenizer* tokenizer = nullptr;  // decodes positions without logprobs; may be null
  bool tokens_as_ids = false;            // return_tokens_as_token_ids: "token_id:123"
};

// positions[i] belongs to token_ids[i] (nullopt: no distribution, e.g. the first prompt token).
OrderedJson completion_logprobs(std::span<const int32_t> token_ids,
                                std::span<const std::optional<PositionLogprobs>> positions,
                                int num_top, int initial_text_offset, const LogprobsFormat& format);

OrderedJson chat_logprobs(std::span<const int32_t> token_ids,
                          std::span<const std::optional<PositionLogprobs>> positions,
                          int top_logprobs, const LogprobsFormat& format);

// The prompt_logprobs field: [null, {"id": {"logprob", "rank", "decoded_token"}}, ...].
OrderedJson prompt_logprobs_json(const std::vector<std::optional<PositionLogprobs>>& positions);

// A choice's logprobs as positions (every generated token has a distribution).
std::vector<std::optional<PositionLogprobs>> as_positions(
    const std::optional<std::vector<PositionLogprobs>>& logprobs);

// Python's len(): code points of UTF-8 text (text_offset counts these).
int python_len(const std::string& text);

}  // namespace cvllm::server
