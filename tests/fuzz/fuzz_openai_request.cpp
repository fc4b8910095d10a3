// libFuzzer target for the OpenAI request parsing of the server (no model needed): the input is a
// request body. It is parsed as JSON, then as each request kind (completions, chat, tokenize,
// detokenize), turned into SamplingParams and validated. The only exceptions allowed out of that
// are ApiError (an HTTP error for the client) and cvllm::ValueError (a 400): anything else, or
// a crash, is a bug. Invariants checked on success: every ApiError is a 4xx/5xx with a non-empty
// message, a parsed body dumps and re-parses to the same JSON, and parsed requests are in range.
// Seed corpus: tests/fuzz/corpus/openai_request/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/api_error.h"
#include "server/json_util.h"
#include "server/protocol.h"
#include "util/error.h"

namespace {

using cvllm::server::ApiError;
using cvllm::server::Json;

void check(bool ok) {
  if (!ok) std::abort();
}

template <typename Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    check(e.status >= 400 && e.status < 600 && !e.message.empty());
    check(!cvllm::server::error_body(e).empty());
  } catch (const cvllm::ValueError&) {
  }
}

void check_sampling(const cvllm::server::GenerationFields& req, int max_tokens,
                    std::optional<int> logprobs) {
  cvllm::server::SamplingDefaults defaults;
  defaults.temperature = 0.7;
  cvllm::SamplingParams p =
      cvllm::server::to_sampling_params(req, defaults, max_tokens, logprobs, req.prompt_logprobs);
  check(p.n == req.n);
  p.validate();  // ValueError for out-of-range values: fine
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  Json parsed;
  try {
    parsed = cvllm::server::parse_json_object(body);
  } catch (const ApiError& e) {
    check(e.status == 400);
    return 0;
  }
  check(parsed.is_object());
  std::string dumped = cvllm::server::dump_json(parsed);
  check(cvllm::server::parse_json_object(dumped) == parsed);

  expect_clean([&] {
    auto req = cvllm::server::parse_completion_request(parsed);
    check(!req.prompts.empty());
    check(req.max_tokens >= 0);
    check_sampling(req, static_cast<int>(std::min<int64_t>(req.max_tokens, 1 << 20)), req.logprobs);
  });
  expect_clean([&] {
    auto req = cvllm::server::parse_chat_request(parsed);
    check(req.messages.is_array() && !req.messages.empty());
    check(!(req.add_generation_prompt && req.continue_final_message));
    std::optional<int> logprobs;
    if (req.logprobs) logprobs = req.top_logprobs;
    check_sampling(req, static_cast<int>(std::min<int64_t>(req.max_tokens.value_or(16), 1 << 20)),
                   logprobs);
  });
  expect_clean([&] {
    auto req = cvllm::server::parse_tokenize_request(parsed);
    check(req.is_chat() || req.prompt.has_value());
  });
  expect_clean([&] {
    auto req = cvllm::server::parse_detokenize_request(parsed);
    for (int32_t id : req.tokens) check(id >= 0);
  });
  return 0;
}
