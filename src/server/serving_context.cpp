#include "server/serving_context.h"

#include <algorithm>
#include <random>
#include <thread>

#include "server/api_error.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm::server {

std::string random_uuid() {
  thread_local std::mt19937_64 rng(
      std::random_device{}() ^
      (static_cast<uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())) << 1));
  static const char* kHex = "0123456789abcdef";
  std::string out(32, '0');
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) {
    out[i] = kHex[(a >> (4 * i)) & 15];
    out[16 + i] = kHex[(b >> (4 * i)) & 15];
  }
  out[12] = '4';  // version 4, as uuid4 sets it
  out[16] = kHex[8 | (b & 3)];
  return out;
}

ServingContext::ServingContext(AsyncEngine& engine, const ServerConfig& config,
                               ServerMetrics& metrics)
    : engine_(engine), config_(config), metrics_(metrics) {
  CVLLM_CHECK(!config_.served_model_names.empty(), "no served model name");
}

int ServingContext::max_model_len() const {
  return engine_.engine().max_model_len();
}

const Tokenizer* ServingContext::tokenizer_or_null() const {
  return engine_.engine().tokenizer();
}

const Tokenizer& ServingContext::tokenizer() const {
  const Tokenizer* t = tokenizer_or_null();
  if (!t)
    throw bad_request("Unable to get tokenizer because `skip_tokenizer_init=True`",
                      "skip_tokenizer_init");
  return *t;
}

void ServingContext::check_model(const std::optional<std::string>& model) const {
  if (!model) return;
  const auto& names = config_.served_model_names;
  if (std::find(names.begin(), names.end(), *model) == names.end()) throw model_not_found(*model);
}

void ServingContext::check_priority(int priority) const {
  if (priority != 0 && engine_.engine().args().scheduling_policy != "priority") {
    throw bad_request(cat("Got priority ", priority, " but Priority scheduling is not enabled."),
                      "priority");
  }
}

SamplingDefaults ServingContext::sampling_defaults() const {
  const GenerationDefaults& g = engine_.engine().generation_defaults();
  SamplingDefaults d;
  d.temperature = g.temperature;
  d.top_p = g.top_p;
  d.top_k = g.top_k;
  d.min_p = g.min_p;
  d.repetition_penalty = g.repetition_penalty;
  d.max_tokens = g.max_tokens;
  return d;
}

std::string ServingContext::make_response_id(const char* prefix, const std::string& header_id,
                                             const std::optional<std::string>& body_id) const {
  std::string base = !header_id.empty() ? header_id : body_id ? *body_id : random_uuid();
  return cat(prefix, "-", base);
}

std::string ServingContext::make_engine_id(const std::string& response_id, size_t index) {
  return cat(response_id, "-", index, "-", next_engine_id_.fetch_add(1));
}

std::vector<int32_t> ServingContext::tokenize(const std::string& text,
                                              bool add_special_tokens) const {
  return tokenizer().encode(text, add_special_tokens);
}

void ServingContext::fit_prompt(std::vector<int32_t>& ids, std::optional<int> truncate,
                                int64_t max_output, const char* max_tokens_param) const {
  const int64_t max_total = max_model_len();
  if (max_output > max_total) {
    throw bad_request(
        cat(max_tokens_param, "=", max_output, " cannot be greater than max_model_len=", max_total,
            ". Please request fewer output tokens."),
        max_tokens_param);
  }
  const int64_t max_input = max_total - max_output;
  if (truncate) {
    if (*truncate > max_input) {
      throw bad_request(
          cat("truncate_prompt_tokens=", *truncate, " cannot be greater than max_model_len - ",
              max_tokens_param, " = ", max_input, ". Please request a smaller truncation size."),
          "truncate_prompt_tokens");
    }
    int64_t keep = *truncate < 0 ? max_input : *truncate;
    if (static_cast<int64_t>(ids.size()) > keep) ids.erase(ids.begin(), ids.end() - keep);
  }
  const int64_t num_input = static_cast<int64_t>(ids.size());
  if (num_input > max_input) {
    throw bad_request(
        cat("This model's maximum context length is ", max_total,
            " tokens. However, you "
            "requested ",
            max_output, " output tokens and your prompt contains at least ", num_input,
            " input tokens, for a total of at least ", num_input + max_output,
            " tokens. Please reduce the length of the input prompt or the number of "
            "requested output tokens. (parameter=input_tokens, value=",
            num_input, ")"),
        "input_tokens");
  }
}

void ServingContext::check_logprobs_limit(const SamplingParams& params) const {
  const int max_logprobs = engine_.engine().args().max_logprobs;
  if (max_logprobs == -1) return;
  const int vocab = static_cast<int>(engine_.engine().model_config().vocab_size);
  auto check = [&](const std::optional<int>& n, const char* what) {
    if (n && *n == -1 && vocab > max_logprobs) {
      throw bad_request(cat("Requested ", what, " logprobs of ", vocab,
                            ", which is greater than max allowed: ", max_logprobs));
    }
  };
  check(params.logprobs, "sample");
  check(params.prompt_logprobs, "prompt");
}

int ServingContext::resolve_max_tokens(std::optional<int64_t> requested, int prompt_len) const {
  int64_t room = static_cast<int64_t>(max_model_len()) - prompt_len;
  int64_t value = requested.value_or(room);
  value = std::min(value, room);
  if (std::optional<int> cap = engine_.engine().generation_defaults().max_tokens) {
    value = std::min<int64_t>(value, *cap);
  }
  return static_cast<int>(std::max<int64_t>(value, 0));
}

std::shared_ptr<RequestStream> ServingContext::submit(const std::string& engine_id,
                                                      const Prompt& prompt,
                                                      const SamplingParams& params,
                                                      const GenerationFields& request) {
  if (!request.use_beam_search) return engine_.generate(engine_id, prompt, params, request.priority);
  BeamSearchParams beam =
      to_beam_search_params(request, sampling_defaults(), params.max_tokens.value_or(1));
  return engine_.beam_search(engine_id, prompt, beam, request.priority);
}

}  // namespace cvllm::server
