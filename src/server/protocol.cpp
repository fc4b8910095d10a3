#include "server/protocol.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "server/api_error.h"
#include "util/error.h"

namespace cvllm::server {
namespace {

// vLLM's VLLM_MAX_COMPLETION_PROMPTS: the most prompts one completions request may batch.
constexpr size_t kMaxCompletionPrompts = 4096;
constexpr int64_t kMaxTokenId = std::numeric_limits<int32_t>::max();

std::vector<std::string> read_stop(const FieldReader& r) {
  const Json* v = r.find("stop");
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  return r.get_string_list("stop").value_or(std::vector<std::string>{});
}

std::map<int32_t, double> read_logit_bias(const FieldReader& r) {
  std::map<int32_t, double> out;
  const Json* v = r.get_object("logit_bias");
  if (!v) return out;
  for (auto it = v->begin(); it != v->end(); ++it) {
    const std::string& key = it.key();
    errno = 0;
    char* end = nullptr;
    long long id = std::strtoll(key.c_str(), &end, 10);
    if (key.empty() || errno != 0 || end != key.c_str() + key.size() || id < 0 ||
        id > kMaxTokenId) {
      throw bad_request(cat("logit_bias: token id '", key, "' is not a valid token id"),
                        "logit_bias");
    }
    out[static_cast<int32_t>(id)] = json_to_double(it.value(), cat("logit_bias.", key));
  }
  return out;
}

std::optional<StreamOptions> read_stream_options(const FieldReader& r) {
  const Json* v = r.get_object("stream_options");
  if (!v) return std::nullopt;
  FieldReader s(*v, "stream_options.");
  StreamOptions out;
  out.include_usage = s.get_bool("include_usage").value_or(false);
  out.continuous_usage_stats = s.get_bool("continuous_usage_stats").value_or(false);
  return out;
}

// Fields vLLM accepts that need machinery cvllm does not have yet: reject rather than ignore.
void reject_unsupported(const FieldReader& r) {
  for (const char* key : {"structured_outputs", "prompt_embeds", "logprob_token_ids",
                          "kv_transfer_params", "repetition_detection"}) {
    if (r.has(key)) throw bad_request(cat("`", key, "` is not supported yet"), key);
  }
}

void read_response_format(const FieldReader& r) {
  const Json* v = r.get_object("response_format");
  if (!v) return;
  FieldReader rf(*v, "response_format.");
  std::optional<std::string> type = rf.get_string("type");
  if (!type) throw bad_request("response_format: field `type` is required", "response_format");
  if (*type == "text") return;
  if (*type == "json_schema" && !rf.has("json_schema")) {
    throw bad_request(
        "When response_format type is 'json_schema', the 'json_schema' field must be provided.",
        "response_format");
  }
  if (*type == "json_object" || *type == "json_schema" || *type == "structural_tag") {
    throw bad_request(
        cat("response_format type '", *type, "' is not supported yet (structured outputs)"),
        "response_format");
  }
  throw bad_request(
      cat("response_format: Input tag '", *type,
          "' found using 'type' does not match "
          "any of the expected tags: 'text', 'json_object', 'json_schema', 'structural_tag'"),
      "response_format");
}

void read_generation_fields(const FieldReader& r, GenerationFields& f) {
  reject_unsupported(r);
  f.model = r.get_string("model");
  f.n = r.get_int32("n").value_or(1);
  f.temperature = r.get_double("temperature");
  f.top_p = r.get_double("top_p");
  f.min_p = r.get_double("min_p");
  f.frequency_penalty = r.get_double("frequency_penalty");
  f.presence_penalty = r.get_double("presence_penalty");
  f.repetition_penalty = r.get_double("repetition_penalty");
  f.top_k = r.get_int32("top_k");
  f.seed = r.get_int("seed");
  f.stop = read_stop(r);
  f.stop_token_ids =
      r.get_int_list("stop_token_ids", 0, kMaxTokenId).value_or(std::vector<int32_t>{});
  f.bad_words = r.get_string_list("bad_words").value_or(std::vector<std::string>{});
  f.logit_bias = read_logit_bias(r);
  f.allowed_token_ids = r.get_int_list("allowed_token_ids", 0, kMaxTokenId);
  f.ignore_eos = r.get_bool("ignore_eos").value_or(false);
  f.min_tokens = r.get_int32("min_tokens").value_or(0);
  f.skip_special_tokens = r.get_bool("skip_special_tokens").value_or(true);
  f.spaces_between_special_tokens = r.get_bool("spaces_between_special_tokens").value_or(true);
  f.include_stop_str_in_output = r.get_bool("include_stop_str_in_output").value_or(false);
  f.truncate_prompt_tokens = r.get_int32("truncate_prompt_tokens", -1);
  f.priority = r.get_int32("priority").value_or(0);
  f.request_id = r.get_string("request_id");
  f.stream = r.get_bool("stream").value_or(false);
  f.stream_options = read_stream_options(r);
  f.echo = r.get_bool("echo").value_or(false);
  f.return_token_ids = r.get_bool("return_token_ids").value_or(false);
  f.return_tokens_as_token_ids = r.get_bool("return_tokens_as_token_ids").value_or(false);
  if (r.has("cache_salt")) {
    f.cache_salt = r.get_string("cache_salt");
    if (f.cache_salt->empty() || f.cache_salt->size() > 1024) {
      throw bad_request(
          "Parameter 'cache_salt' must be a non-empty string of at most 1024 characters.",
          "cache_salt");
    }
  }
  f.use_beam_search = r.get_bool("use_beam_search").value_or(false);
  f.length_penalty = r.get_double("length_penalty").value_or(1.0);
  if (f.use_beam_search && f.stream) {
    throw bad_request("Streaming is not supported with beam search (`use_beam_search`)",
                      "use_beam_search");
  }
  // Typed but unused by cvllm (OpenAI's `user`): still type-checked.
  r.get_string("user");
  r.get_string("suffix");  // vLLM accepts and ignores it

  // Validators vLLM runs on the raw request.
  const Json* so = r.find("stream_options");
  if (so && !so->empty() && !f.stream) {
    throw bad_request("Stream options can only be defined when `stream=True`.", "stream_options");
  }
  read_response_format(r);
}

std::optional<int> read_logprobs_int(const FieldReader& r, const char* key) {
  const Json* v = r.find(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw bad_request(cat("`", key, "` must be an integer."), key);
  int value = static_cast<int>(
      json_to_int(*v, key, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
  if (value < 0 && value != -1) {
    throw bad_request(cat("`", key, "` must be a positive value or -1."), key);
  }
  return value;
}

std::vector<int32_t> read_token_list(const Json& list, const std::string& field) {
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_number_integer()) {
      throw bad_request(cat(field, ": Input should be a valid integer at index ", i), "prompt");
    }
    ids.push_back(static_cast<int32_t>(json_to_int(list[i], cat(field, ".", i), 0, kMaxTokenId)));
  }
  return ids;
}

// prompt: str | list[str] | list[int] | list[list[int]] (vLLM's union, tried in that order).
std::vector<PromptInput> read_prompts(const FieldReader& r) {
  const Json* v = r.find("prompt");
  if (!v || (v->is_string() && v->get_ref<const std::string&>().empty())) {
    throw bad_request("Either prompt or prompt_embeds must be provided and non-empty.", "prompt");
  }
  std::vector<PromptInput> prompts;
  if (v->is_string()) {
    prompts.push_back({v->get<std::string>(), {}});
    return prompts;
  }
  if (!v->is_array()) {
    throw bad_request("prompt: Input should be a valid string or a list of strings or token ids",
                      "prompt");
  }
  if (v->empty()) throw bad_request("prompt: the prompt list cannot be empty", "prompt");
  const Json& first = v->front();
  if (first.is_number()) {
    prompts.push_back({std::nullopt, read_token_list(*v, "prompt")});
    return prompts;
  }
  if (v->size() > kMaxCompletionPrompts) {
    throw bad_request(cat("prompt list length ", v->size(),
                          " exceeds the maximum allowed count of ", kMaxCompletionPrompts, "."),
                      "prompt");
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& item = (*v)[i];
    if (first.is_string() && item.is_string()) {
      prompts.push_back({item.get<std::string>(), {}});
    } else if (first.is_array() && item.is_array()) {
      prompts.push_back({std::nullopt, read_token_list(item, cat("prompt.", i))});
    } else {
      throw bad_request(cat("prompt.", i,
                            ": every element must be a string (a list of strings) or a "
                            "list of token ids (a list of token-id lists)"),
                        "prompt");
    }
  }
  return prompts;
}

// messages: a non-empty list of objects with a string role and string / list / null content.
Json read_messages(const FieldReader& r, bool required) {
  const Json* v = r.find("messages");
  if (!v) {
    if (required) throw bad_request("messages: Field required", "messages");
    return Json();
  }
  if (!v->is_array()) throw bad_request("messages: Input should be a valid list", "messages");
  if (v->empty()) throw bad_request("messages: List should have at least 1 item", "messages");
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& m = (*v)[i];
    std::string field = cat("messages.", i);
    if (!m.is_object())
      throw bad_request(cat(field, ": Input should be a valid dictionary"), "messages");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      throw bad_request(cat(field, ".role: Field required (a string)"), "messages");
    }
    auto content = m.find("content");
    if (content != m.end() && !content->is_null() && !content->is_string() &&
        !content->is_array()) {
      throw bad_request(
          cat(field, ".content: Input should be a valid string or a list of content parts"),
          "messages");
    }
    if (content != m.end() && content->is_array()) {
      for (const Json& part : *content) {
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
          throw bad_request(
              cat(field, ".content: each content part must be an object with a string `type`"),
              "messages");
        }
      }
    }
  }
  return *v;
}

Json read_tools(const FieldReader& r) {
  const Json* v = r.get_array("tools");
  if (!v) return Json();
  if (v->empty()) throw bad_request("`tools` cannot be an empty list", "tools");
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& t = (*v)[i];
    FieldReader tr(t, cat("tools.", i, "."));
    if (!t.is_object())
      throw bad_request(cat("tools.", i, ": Input should be a valid dictionary"), "tools");
    std::optional<std::string> type = tr.get_string("type");
    if (type && *type != "function")
      throw bad_request(cat("tools.", i, ".type: Input should be 'function'"), "tools");
    const Json* fn = tr.get_object("function");
    if (!fn) throw bad_request(cat("tools.", i, ".function: Field required"), "tools");
    FieldReader fr(*fn, cat("tools.", i, ".function."));
    if (!fr.get_string("name"))
      throw bad_request(cat("tools.", i, ".function.name: Field required"), "tools");
  }
  return *v;
}

Json read_chat_template_kwargs(const FieldReader& r) {
  const Json* v = r.get_object("chat_template_kwargs");
  if (!v) return Json::object();
  for (const char* banned : {"chat_template", "tokenize"}) {
    if (v->contains(banned)) {
      throw bad_request(cat("`chat_template_kwargs` may not contain `", banned, "`"),
                        "chat_template_kwargs");
    }
  }
  return *v;
}

}  // namespace

CompletionRequest parse_completion_request(const Json& body) {
  FieldReader r(body);
  CompletionRequest req;
  read_generation_fields(r, req);
  req.prompt_logprobs = read_logprobs_int(r, "prompt_logprobs");
  if (req.prompt_logprobs && req.stream &&
      (*req.prompt_logprobs > 0 || *req.prompt_logprobs == -1)) {
    throw bad_request("`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs");
  }
  req.logprobs = read_logprobs_int(r, "logprobs");
  req.prompts = read_prompts(r);
  req.max_tokens = r.get_int("max_tokens").value_or(16);
  req.add_special_tokens = r.get_bool("add_special_tokens").value_or(true);
  if (req.max_tokens < 0 || (req.max_tokens == 0 && !req.echo)) {
    throw bad_request(cat("max_tokens must be at least 1, got ", req.max_tokens, "."),
                      "max_tokens");
  }
  return req;
}

ChatCompletionRequest parse_chat_request(const Json& body) {
  FieldReader r(body);
  ChatCompletionRequest req;
  read_generation_fields(r, req);
  req.prompt_logprobs = read_logprobs_int(r, "prompt_logprobs");
  if (req.prompt_logprobs && req.stream &&
      (*req.prompt_logprobs > 0 || *req.prompt_logprobs == -1)) {
    throw bad_request("`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs");
  }
  req.messages = read_messages(r, /*required=*/true);
  std::optional<int64_t> max_completion = r.get_int("max_completion_tokens");
  std::optional<int64_t> max_tokens = r.get_int("max_tokens");
  req.max_tokens = max_completion ? max_completion : max_tokens;
  if (req.max_tokens && *req.max_tokens < 1) {
    throw bad_request(cat("max_tokens must be at least 1, got ", *req.max_tokens, "."),
                      max_completion ? "max_completion_tokens" : "max_tokens");
  }
  req.logprobs = r.get_bool("logprobs").value_or(false);
  std::optional<int> top = r.get_int32("top_logprobs");
  if (top) {
    if (*top < 0 && *top != -1)
      throw bad_request("`top_logprobs` must be a positive value or -1.", "top_logprobs");
    if ((*top == -1 || *top > 0) && !req.logprobs) {
      throw bad_request("when using `top_logprobs`, `logprobs` must be set to true.",
                        "top_logprobs");
    }
    req.top_logprobs = *top;
  }
  req.tools = read_tools(r);
  std::optional<std::string> tool_choice;
  if (const Json* tc = r.find("tool_choice")) {
    if (tc->is_string())
      tool_choice = tc->get<std::string>();
    else if (tc->is_object())
      tool_choice = "named";
    else
      throw bad_request("tool_choice: Input should be 'none', 'auto', 'required' or a named tool",
                        "tool_choice");
  } else if (!req.tools.is_null()) {
    tool_choice = "auto";  // vLLM: tools without tool_choice mean "auto"
  }
  if (tool_choice && *tool_choice != "none") {
    if (*tool_choice == "auto") {
      throw bad_request(
          "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be "
          "set",
          "tool_choice");
    }
    if (*tool_choice != "required" && *tool_choice != "named") {
      throw bad_request("tool_choice: Input should be 'none', 'auto', 'required' or a named tool",
                        "tool_choice");
    }
    throw bad_request(cat("tool_choice '", *tool_choice,
                          "' needs structured outputs, which are not supported yet"),
                      "tool_choice");
  }
  req.chat_template = r.get_string("chat_template");
  req.chat_template_kwargs = read_chat_template_kwargs(r);
  req.add_generation_prompt = r.get_bool("add_generation_prompt").value_or(true);
  req.continue_final_message = r.get_bool("continue_final_message").value_or(false);
  req.add_special_tokens = r.get_bool("add_special_tokens").value_or(false);
  if (req.add_generation_prompt && req.continue_final_message) {
    throw bad_request(
        "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        "continue_final_message");
  }
  r.get_bool("parallel_tool_calls");
  r.get_bool("include_reasoning");
  r.get_string("reasoning_effort");
  return req;
}

TokenizeRequest parse_tokenize_request(const Json& body) {
  FieldReader r(body);
  TokenizeRequest req;
  req.model = r.get_string("model");
  req.return_token_strs = r.get_bool("return_token_strs").value_or(false);
  if (r.has("prompt")) {
    req.prompt = r.get_string("prompt");
    req.add_special_tokens = r.get_bool("add_special_tokens").value_or(true);
    return req;
  }
  if (!r.has("messages"))
    throw bad_request("Either `prompt` or `messages` must be provided.", "prompt");
  req.messages = read_messages(r, /*required=*/true);
  req.add_special_tokens = r.get_bool("add_special_tokens").value_or(false);
  req.add_generation_prompt = r.get_bool("add_generation_prompt").value_or(true);
  req.continue_final_message = r.get_bool("continue_final_message").value_or(false);
  if (req.add_generation_prompt && req.continue_final_message) {
    throw bad_request(
        "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        "continue_final_message");
  }
  req.chat_template = r.get_string("chat_template");
  req.chat_template_kwargs = read_chat_template_kwargs(r);
  req.tools = read_tools(r);
  return req;
}

DetokenizeRequest parse_detokenize_request(const Json& body) {
  FieldReader r(body);
  DetokenizeRequest req;
  req.model = r.get_string("model");
  if (!r.has("tokens")) throw bad_request("tokens: Field required", "tokens");
  req.tokens = *r.get_int_list("tokens", 0, kMaxTokenId);
  return req;
}

SamplingParams to_sampling_params(const GenerationFields& req, const SamplingDefaults& defaults,
                                  int max_tokens, std::optional<int> logprobs,
                                  std::optional<int> prompt_logprobs) {
  SamplingParams p;
  p.n = req.n;
  p.temperature = req.temperature.value_or(defaults.temperature.value_or(1.0));
  p.top_p = req.top_p.value_or(defaults.top_p.value_or(1.0));
  p.top_k = req.top_k.value_or(defaults.top_k.value_or(0));
  p.min_p = req.min_p.value_or(defaults.min_p.value_or(0.0));
  p.repetition_penalty = req.repetition_penalty.value_or(defaults.repetition_penalty.value_or(1.0));
  p.presence_penalty = req.presence_penalty.value_or(0.0);
  p.frequency_penalty = req.frequency_penalty.value_or(0.0);
  if (req.seed && *req.seed != -1) p.seed = req.seed;
  p.stop = req.stop;
  p.stop_token_ids = req.stop_token_ids;
  p.bad_words = req.bad_words;
  p.logit_bias = req.logit_bias;
  p.allowed_token_ids = req.allowed_token_ids;
  p.ignore_eos = req.ignore_eos;
  p.min_tokens = req.min_tokens;
  p.skip_special_tokens = req.skip_special_tokens;
  p.spaces_between_special_tokens = req.spaces_between_special_tokens;
  p.include_stop_str_in_output = req.include_stop_str_in_output;
  p.logprobs = logprobs;
  p.prompt_logprobs = prompt_logprobs;
  p.max_tokens = max_tokens;
  p.output_kind = req.stream ? RequestOutputKind::kDelta : RequestOutputKind::kFinalOnly;
  return p;
}

BeamSearchParams to_beam_search_params(const GenerationFields& req,
                                       const SamplingDefaults& defaults, int max_tokens) {
  BeamSearchParams p(req.n, max_tokens);
  p.ignore_eos = req.ignore_eos;
  p.temperature = req.temperature.value_or(defaults.temperature.value_or(1.0));
  p.length_penalty = req.length_penalty;
  p.include_stop_str_in_output = req.include_stop_str_in_output;
  return p;
}

}  // namespace cvllm::server
