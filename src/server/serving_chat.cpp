#include "server/serving_chat.h"

#include <httplib.h>

#include "server/api_error.h"
#include "server/chat_prompt.h"
#include "server/logprobs_format.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "server/response_util.h"
#include "server/serving_context.h"
#include "server/streaming.h"
#include "util/system.h"

namespace cvllm::server {
namespace {

struct PreparedChat {
  RenderedChat rendered;
  SamplingParams params;
  std::string role;       // of the reply
  std::string echo_text;  // the last message's text, when echo applies
};

std::string message_text(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (!content.is_array()) return out;
  bool first = true;
  for (const Json& part : content) {
    if (!part.is_object() || !part.contains("text") || !part["text"].is_string()) continue;
    if (!first) out += "\n";
    out += part["text"].get<std::string>();
    first = false;
  }
  return out;
}

PreparedChat prepare_chat(ServingContext& ctx, const ChatCompletionRequest& request) {
  ChatPromptRequest pr;
  pr.messages = &request.messages;
  pr.tools = request.tools.is_null() ? nullptr : &request.tools;
  pr.chat_template = request.chat_template;
  pr.chat_template_kwargs = request.chat_template_kwargs;
  pr.add_generation_prompt = request.add_generation_prompt;
  pr.continue_final_message = request.continue_final_message;
  pr.add_special_tokens = request.add_special_tokens;
  PreparedChat p;
  p.rendered = render_chat_prompt(ctx, pr);
  ctx.fit_prompt(p.rendered.token_ids, request.truncate_prompt_tokens,
                 request.max_tokens.value_or(0), "max_completion_tokens");
  int max_tokens =
      ctx.resolve_max_tokens(request.max_tokens, static_cast<int>(p.rendered.token_ids.size()));
  std::optional<int> logprobs;
  if (request.logprobs) logprobs = request.top_logprobs;
  p.params = to_sampling_params(request, ctx.sampling_defaults(), max_tokens, logprobs,
                                request.prompt_logprobs);
  ctx.check_logprobs_limit(p.params);
  const Json& last = request.messages.back();
  p.role =
      request.add_generation_prompt ? ctx.config().response_role : last["role"].get<std::string>();
  if (request.echo) {
    const Json& conv = p.rendered.conversation.is_array() && !p.rendered.conversation.empty()
                           ? p.rendered.conversation.back()
                           : last;
    if (conv.is_object() && conv.value("role", "") == p.role && conv.contains("content")) {
      p.echo_text = message_text(conv["content"]);
    }
  }
  return p;
}

OrderedJson chat_response(ServingContext& ctx, const ChatCompletionRequest& request,
                          const PreparedChat& chat, const RequestOutput& final_res,
                          const std::string& id, int64_t created) {
  LogprobsFormat format{ctx.tokenizer_or_null(), request.return_tokens_as_token_ids};
  OrderedJson choices = OrderedJson::array();
  int64_t num_generated = 0;
  for (const CompletionOutput& output : final_res.outputs) {
    OrderedJson message = OrderedJson::object();
    message["role"] = chat.role;
    message["content"] = chat.echo_text + output.text;
    message["refusal"] = nullptr;
    message["annotations"] = nullptr;
    message["audio"] = nullptr;
    message["function_call"] = nullptr;
    message["reasoning"] = nullptr;
    OrderedJson c = OrderedJson::object();
    c["index"] = output.index;
    c["message"] = std::move(message);
    c["logprobs"] = request.logprobs
                        ? chat_logprobs(output.token_ids, as_positions(output.logprobs),
                                        request.top_logprobs, format)
                        : OrderedJson(nullptr);
    c["finish_reason"] = output.finish_reason.value_or("stop");
    c["stop_reason"] = stop_reason_json(output);
    c["token_ids"] =
        request.return_token_ids ? OrderedJson(output.token_ids) : OrderedJson(nullptr);
    choices.push_back(std::move(c));
    num_generated += static_cast<int64_t>(output.token_ids.size());
  }
  int64_t num_prompt = static_cast<int64_t>(chat.rendered.token_ids.size());
  OrderedJson body = OrderedJson::object();
  body["id"] = id;
  body["object"] = "chat.completion";
  body["created"] = created;
  body["model"] = ctx.model_name();
  body["choices"] = std::move(choices);
  body["service_tier"] = nullptr;
  body["system_fingerprint"] = nullptr;
  std::optional<int64_t> cached;
  if (ctx.config().enable_prompt_tokens_details) cached = final_res.num_cached_tokens;
  body["usage"] = usage_json(num_prompt, num_generated, /*with_null_details=*/true, cached);
  body["prompt_logprobs"] = final_res.prompt_logprobs
                                ? prompt_logprobs_json(*final_res.prompt_logprobs)
                                : OrderedJson(nullptr);
  body["prompt_token_ids"] =
      request.return_token_ids ? OrderedJson(chat.rendered.token_ids) : OrderedJson(nullptr);
  body["kv_transfer_params"] = nullptr;
  return body;
}

// The SSE events of one streaming chat request (vLLM's chat_completion_stream_generator).
class ChatStreamer : public SseStreamer {
 public:
  ChatStreamer(ServingContext& ctx, ChatCompletionRequest request, PreparedChat chat,
               std::unique_ptr<OutputStreams> streams, std::shared_ptr<ConnectionProbe> probe,
               std::string id, int64_t created, double arrival_ts)
      : SseStreamer(ctx, std::move(streams), std::move(probe), request.n, arrival_ts),
        request_(std::move(request)),
        chat_(std::move(chat)),
        id_(std::move(id)),
        created_(created),
        num_tokens_(request_.n, 0),
        finish_sent_(request_.n, false) {
    const StreamOptions so = request_.stream_options.value_or(StreamOptions{});
    include_usage_ = ctx.config().enable_force_include_usage || so.include_usage;
    continuous_usage_ = include_usage_ && so.continuous_usage_stats;
  }

 private:
  void emit_output(std::string& out, size_t, const RequestOutput& res) override {
    if (first_) emit_first(out);
    for (const CompletionOutput& output : res.outputs) emit_delta(out, output);
  }

  int64_t prompt_tokens() const { return static_cast<int64_t>(chat_.rendered.token_ids.size()); }

  OrderedJson chunk(OrderedJson choice) const {
    OrderedJson c = OrderedJson::object();
    c["id"] = id_;
    c["object"] = "chat.completion.chunk";
    c["created"] = created_;
    c["model"] = ctx_.model_name();
    c["choices"] =
        choice.is_null() ? OrderedJson::array() : OrderedJson::array({std::move(choice)});
    return c;
  }

  void emit_first(std::string& out) {
    first_ = false;
    for (int i = 0; i < request_.n; ++i) {
      OrderedJson delta = OrderedJson::object();
      delta["role"] = chat_.role;
      delta["content"] = "";
      OrderedJson choice = OrderedJson::object();
      choice["index"] = i;
      choice["delta"] = std::move(delta);
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = nullptr;
      OrderedJson c = chunk(std::move(choice));
      if (continuous_usage_) c["usage"] = usage_json(prompt_tokens(), 0, false);
      c["prompt_token_ids"] =
          request_.return_token_ids ? OrderedJson(chat_.rendered.token_ids) : OrderedJson(nullptr);
      out += sse_event(c);
    }
    if (chat_.echo_text.empty()) return;
    for (int i = 0; i < request_.n; ++i) {
      OrderedJson choice = OrderedJson::object();
      choice["index"] = i;
      choice["delta"] = OrderedJson{{"content", chat_.echo_text}};
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = nullptr;
      OrderedJson c = chunk(std::move(choice));
      if (continuous_usage_) c["usage"] = usage_json(prompt_tokens(), 0, false);
      out += sse_event(c);
    }
  }

  void emit_delta(std::string& out, const CompletionOutput& output) {
    size_t i = static_cast<size_t>(output.index);
    if (i >= finish_sent_.size() || finish_sent_[i]) return;
    if (output.text.empty() && output.token_ids.empty() && num_tokens_[i] == 0)
      return;  // prefill step
    OrderedJson choice = OrderedJson::object();
    choice["index"] = output.index;
    choice["delta"] = OrderedJson{{"content", output.text}};
    if (request_.logprobs) {
      LogprobsFormat format{ctx_.tokenizer_or_null(), request_.return_tokens_as_token_ids};
      choice["logprobs"] = chat_logprobs(output.token_ids, as_positions(output.logprobs),
                                         request_.top_logprobs, format);
    } else {
      choice["logprobs"] = nullptr;
    }
    num_tokens_[i] += static_cast<int64_t>(output.token_ids.size());
    if (!output.finish_reason) {
      choice["finish_reason"] = nullptr;
    } else {
      choice["finish_reason"] = *output.finish_reason;
      choice["stop_reason"] = stop_reason_json(output);
      finish_sent_[i] = true;
    }
    choice["token_ids"] =
        request_.return_token_ids ? OrderedJson(output.token_ids) : OrderedJson(nullptr);
    OrderedJson c = chunk(std::move(choice));
    if (continuous_usage_) c["usage"] = usage_json(prompt_tokens(), num_tokens_[i], false);
    out += sse_event(c);
  }

  void emit_usage(std::string& out) override {
    if (!include_usage_) return;
    int64_t completion = 0;
    for (int64_t n : num_tokens_) completion += n;
    OrderedJson c = chunk(nullptr);
    c["usage"] = usage_json(prompt_tokens(), completion, false, cached_tokens_);
    out += sse_event(c);
  }

  ChatCompletionRequest request_;
  PreparedChat chat_;
  std::string id_;
  int64_t created_;
  std::vector<int64_t> num_tokens_;
  std::vector<bool> finish_sent_;
  bool first_ = true;
  bool include_usage_ = false;
  bool continuous_usage_ = false;
};

}  // namespace

void ChatServing::create_chat_completion(const httplib::Request& req, httplib::Response& res) {
  double arrival_ts = monotonic_seconds();
  if (!ctx_.accepting()) throw ApiError(503, "The server is shutting down.");
  ChatCompletionRequest request = parse_chat_request(parse_json_object(req.body));
  ctx_.check_model(request.model);
  ctx_.check_priority(request.priority);
  PreparedChat chat = prepare_chat(ctx_, request);
  std::string id =
      ctx_.make_response_id("chatcmpl", req.get_header_value("X-Request-Id"), request.request_id);
  int64_t created = unix_time();

  auto streams = std::make_unique<OutputStreams>(ctx_.engine());
  std::string engine_id = ctx_.make_engine_id(id, 0);
  Prompt prompt(chat.rendered.token_ids);
  if (request.cache_salt) prompt.cache_salt = *request.cache_salt;
  streams->add(engine_id, ctx_.submit(engine_id, prompt, chat.params, request));
  auto probe = ConnectionProbe::for_request(req);
  if (request.stream) {
    SseStreamer::attach(std::make_shared<ChatStreamer>(ctx_, std::move(request), std::move(chat),
                                                       std::move(streams), probe, id, created,
                                                       arrival_ts),
                        res);
    return;
  }
  InFlightGuard guard(ctx_.in_flight());
  std::vector<RequestOutput> finals;
  if (!wait_for_final_outputs(*streams, *probe, ctx_, request.n, arrival_ts, finals))
    return;  // client gone
  res.set_content(dump_json(chat_response(ctx_, request, chat, finals[0], id, created)),
                  "application/json");
}

void ChatServing::render_chat(const httplib::Request& req, httplib::Response& res) {
  ChatCompletionRequest request = parse_chat_request(parse_json_object(req.body));
  ctx_.check_model(request.model);
  PreparedChat chat = prepare_chat(ctx_, request);
  chat.params.validate();
  std::string id =
      ctx_.make_response_id("chatcmpl", req.get_header_value("X-Request-Id"), request.request_id);
  OrderedJson out = OrderedJson::object();
  out["request_id"] = id;
  out["model"] = ctx_.model_name();
  out["prompt"] = chat.rendered.prompt_text;
  out["token_ids"] = chat.rendered.token_ids;
  out["sampling_params"] = sampling_params_json(chat.params);
  out["stream"] = request.stream;
  out["cache_salt"] = request.cache_salt ? OrderedJson(*request.cache_salt) : OrderedJson(nullptr);
  out["priority"] = request.priority;
  out["token_offsets"] = nullptr;
  res.set_content(dump_json(out), "application/json");
}

}  // namespace cvllm::server
