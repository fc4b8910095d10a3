// Small pieces of the response JSON both generation APIs share (vLLM's UsageInfo, stop_reason).
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <variant>

#include "cvllm/outputs.h"
#include "cvllm/sampling_params.h"
#include "server/json_util.h"

namespace cvllm::server {

// UsageInfo in pydantic field order. Non-streaming bodies dump every field (prompt_tokens_details:
// null unless --enable-prompt-tokens-details gives `cached_tokens`); streaming usage chunks drop
// the nulls.
inline OrderedJson usage_json(int64_t prompt_tokens, int64_t completion_tokens,
                              bool with_null_details,
                              std::optional<int64_t> cached_tokens = std::nullopt) {
  OrderedJson u = OrderedJson::object();
  u["prompt_tokens"] = prompt_tokens;
  u["total_tokens"] = prompt_tokens + completion_tokens;
  u["completion_tokens"] = completion_tokens;
  if (cached_tokens) {
    u["prompt_tokens_details"] = OrderedJson{{"cached_tokens", *cached_tokens}};
  } else if (with_null_details) {
    u["prompt_tokens_details"] = nullptr;
  }
  return u;
}

// stop_reason: the stop string, the stop token id, or null (EOS, length).
inline OrderedJson stop_reason_json(const CompletionOutput& c) {
  if (const auto* s = std::get_if<std::string>(&c.stop_reason)) return *s;
  if (const auto* t = std::get_if<int32_t>(&c.stop_reason)) return *t;
  return nullptr;
}

inline OrderedJson finish_reason_json(const std::optional<std::string>& reason) {
  return reason ? OrderedJson(*reason) : OrderedJson(nullptr);
}

// The sampling parameters a render endpoint reports (vLLM's SamplingParams fields).
inline OrderedJson sampling_params_json(const SamplingParams& p) {
  auto opt = [](const auto& v) { return v ? OrderedJson(*v) : OrderedJson(nullptr); };
  OrderedJson sp = OrderedJson::object();
  sp["n"] = p.n;
  sp["presence_penalty"] = p.presence_penalty;
  sp["frequency_penalty"] = p.frequency_penalty;
  sp["repetition_penalty"] = p.repetition_penalty;
  sp["temperature"] = p.temperature;
  sp["top_p"] = p.top_p;
  sp["top_k"] = p.top_k;
  sp["min_p"] = p.min_p;
  sp["seed"] = opt(p.seed);
  sp["stop"] = p.stop;
  sp["stop_token_ids"] = p.stop_token_ids;
  sp["bad_words"] = p.bad_words;
  sp["include_stop_str_in_output"] = p.include_stop_str_in_output;
  sp["ignore_eos"] = p.ignore_eos;
  sp["max_tokens"] = opt(p.max_tokens);
  sp["min_tokens"] = p.min_tokens;
  sp["logprobs"] = opt(p.logprobs);
  sp["prompt_logprobs"] = opt(p.prompt_logprobs);
  sp["skip_special_tokens"] = p.skip_special_tokens;
  sp["spaces_between_special_tokens"] = p.spaces_between_special_tokens;
  return sp;
}

inline int64_t unix_time() {
  return static_cast<int64_t>(std::time(nullptr));
}

}  // namespace cvllm::server
