#include "server/serving_completion.h"

#include <httplib.h>

#include "server/api_error.h"
#include "server/logprobs_format.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "server/response_util.h"
#include "server/serving_context.h"
#include "server/streaming.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/system.h"

namespace cvllm::server {
namespace {

// One prompt after tokenization, with what the engine gets for it.
struct PreparedPrompt {
  std::string text;  // the prompt as text (decoded when given as token ids): echo returns it
  std::vector<int32_t> token_ids;
  SamplingParams params;
};

std::vector<PreparedPrompt> prepare_prompts(ServingContext& ctx, const CompletionRequest& request) {
  std::vector<PreparedPrompt> prepared;
  SamplingDefaults defaults = ctx.sampling_defaults();
  const Tokenizer* tok = ctx.tokenizer_or_null();
  for (const PromptInput& input : request.prompts) {
    PreparedPrompt p;
    p.token_ids =
        input.text ? ctx.tokenize(*input.text, request.add_special_tokens) : input.token_ids;
    size_t original_len = p.token_ids.size();
    ctx.fit_prompt(p.token_ids, request.truncate_prompt_tokens, request.max_tokens, "max_tokens");
    if (input.text && p.token_ids.size() == original_len) {
      p.text = *input.text;
    } else if (tok && request.echo) {
      p.text = tok->decode(p.token_ids, /*skip_special_tokens=*/false);
    }
    bool echo_only = request.echo && request.max_tokens == 0;
    int max_tokens = echo_only ? 1
                               : ctx.resolve_max_tokens(request.max_tokens,
                                                        static_cast<int>(p.token_ids.size()));
    std::optional<int> prompt_logprobs = request.prompt_logprobs;
    if (!prompt_logprobs && request.echo) prompt_logprobs = request.logprobs;
    p.params = to_sampling_params(request, defaults, max_tokens, request.logprobs, prompt_logprobs);
    ctx.check_logprobs_limit(p.params);
    prepared.push_back(std::move(p));
  }
  return prepared;
}

// What one choice shows for one output: the echoed prompt first, then the generated delta.
struct ChoicePiece {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<std::optional<PositionLogprobs>> logprobs;
  bool echoed = false;
};

ChoicePiece choice_piece(const CompletionRequest& request, const PreparedPrompt& prompt,
                         const RequestOutput& res, const CompletionOutput& output, bool echo_now) {
  ChoicePiece piece;
  if (echo_now) {
    piece.echoed = true;
    const auto& prompt_lps = res.prompt_logprobs;
    if (request.max_tokens == 0) {
      piece.text = prompt.text;
      piece.token_ids = prompt.token_ids;
      if (prompt_lps) piece.logprobs = *prompt_lps;
    } else {
      piece.text = prompt.text + output.text;
      piece.token_ids = prompt.token_ids;
      piece.token_ids.insert(piece.token_ids.end(), output.token_ids.begin(),
                             output.token_ids.end());
      if (prompt_lps) piece.logprobs = *prompt_lps;
      auto gen = as_positions(output.logprobs);
      piece.logprobs.insert(piece.logprobs.end(), gen.begin(), gen.end());
    }
    return piece;
  }
  piece.text = output.text;
  piece.token_ids = output.token_ids;
  piece.logprobs = as_positions(output.logprobs);
  return piece;
}

OrderedJson completion_response(ServingContext& ctx, const CompletionRequest& request,
                                const std::vector<PreparedPrompt>& prompts,
                                const std::vector<RequestOutput>& finals, const std::string& id,
                                int64_t created) {
  LogprobsFormat format{ctx.tokenizer_or_null(), request.return_tokens_as_token_ids};
  OrderedJson choices = OrderedJson::array();
  int64_t num_prompt_tokens = 0, num_generated = 0;
  for (size_t i = 0; i < finals.size(); ++i) {
    const RequestOutput& res = finals[i];
    for (const CompletionOutput& output : res.outputs) {
      ChoicePiece piece = choice_piece(request, prompts[i], res, output, request.echo);
      OrderedJson c = OrderedJson::object();
      c["index"] = choices.size();
      c["text"] = piece.text;
      c["logprobs"] = request.logprobs ? completion_logprobs(piece.token_ids, piece.logprobs,
                                                             *request.logprobs, 0, format)
                                       : OrderedJson(nullptr);
      c["finish_reason"] = finish_reason_json(output.finish_reason);
      c["stop_reason"] = stop_reason_json(output);
      c["token_ids"] =
          request.return_token_ids ? OrderedJson(output.token_ids) : OrderedJson(nullptr);
      c["prompt_logprobs"] =
          res.prompt_logprobs ? prompt_logprobs_json(*res.prompt_logprobs) : OrderedJson(nullptr);
      c["prompt_token_ids"] =
          request.return_token_ids ? OrderedJson(prompts[i].token_ids) : OrderedJson(nullptr);
      choices.push_back(std::move(c));
      num_generated += static_cast<int64_t>(output.token_ids.size());
    }
    num_prompt_tokens += static_cast<int64_t>(prompts[i].token_ids.size());
  }
  OrderedJson body = OrderedJson::object();
  body["id"] = id;
  body["object"] = "text_completion";
  body["created"] = created;
  body["model"] = ctx.model_name();
  body["choices"] = std::move(choices);
  body["service_tier"] = nullptr;
  body["system_fingerprint"] = nullptr;
  std::optional<int64_t> cached;
  if (ctx.config().enable_prompt_tokens_details && !finals.empty())
    cached = finals.back().num_cached_tokens;
  body["usage"] = usage_json(num_prompt_tokens, num_generated, /*with_null_details=*/true, cached);
  body["kv_transfer_params"] = nullptr;
  return body;
}

// The SSE events of one streaming completions request (vLLM's completion_stream_generator).
class CompletionStreamer : public SseStreamer {
 public:
  CompletionStreamer(ServingContext& ctx, CompletionRequest request,
                     std::vector<PreparedPrompt> prompts, std::unique_ptr<OutputStreams> streams,
                     std::shared_ptr<ConnectionProbe> probe, std::string id, int64_t created,
                     double arrival_ts)
      : SseStreamer(ctx, std::move(streams), std::move(probe), request.n, arrival_ts),
        request_(std::move(request)),
        prompts_(std::move(prompts)),
        id_(std::move(id)),
        created_(created),
        num_choices_(request_.n),
        text_lens_(prompts_.size() * num_choices_, 0),
        num_tokens_(prompts_.size() * num_choices_, 0),
        echoed_(prompts_.size() * num_choices_, false) {
    const StreamOptions so = request_.stream_options.value_or(StreamOptions{});
    bool force = ctx.config().enable_force_include_usage;
    include_usage_ = force || so.include_usage;
    continuous_usage_ = include_usage_ && so.continuous_usage_stats;
  }

 private:
  void emit_output(std::string& out, size_t index, const RequestOutput& res) override {
    for (const CompletionOutput& output : res.outputs) emit_choice(out, index, res, output);
  }

  void emit_choice(std::string& out, size_t prompt_idx, const RequestOutput& res,
                   const CompletionOutput& output) {
    size_t i = output.index + prompt_idx * num_choices_;
    bool echo_now = request_.echo && !echoed_[i];
    ChoicePiece piece = choice_piece(request_, prompts_[prompt_idx], res, output, echo_now);
    if (echo_now) echoed_[i] = true;
    if (!piece.echoed && piece.text.empty() && piece.token_ids.empty() && num_tokens_[i] == 0) {
      return;  // a chunked-prefill step produced nothing yet
    }
    OrderedJson choice = OrderedJson::object();
    choice["index"] = i;
    choice["text"] = piece.text;
    if (request_.logprobs) {
      LogprobsFormat format{ctx_.tokenizer_or_null(), request_.return_tokens_as_token_ids};
      choice["logprobs"] = completion_logprobs(piece.token_ids, piece.logprobs, *request_.logprobs,
                                               text_lens_[i], format);
    } else {
      choice["logprobs"] = nullptr;
    }
    choice["finish_reason"] = finish_reason_json(output.finish_reason);
    choice["stop_reason"] = stop_reason_json(output);
    bool send_prompt_ids = piece.echoed || (request_.return_token_ids && !sent_prompt_ids_[i]);
    choice["prompt_token_ids"] =
        send_prompt_ids ? OrderedJson(prompts_[prompt_idx].token_ids) : OrderedJson(nullptr);
    sent_prompt_ids_[i] = true;
    choice["token_ids"] =
        request_.return_token_ids ? OrderedJson(output.token_ids) : OrderedJson(nullptr);
    text_lens_[i] += python_len(piece.text);
    num_tokens_[i] += static_cast<int64_t>(output.token_ids.size());

    OrderedJson chunk = chunk_header();
    chunk["choices"] = OrderedJson::array({std::move(choice)});
    if (continuous_usage_) {
      int64_t p = static_cast<int64_t>(prompts_[prompt_idx].token_ids.size());
      chunk["usage"] = usage_json(p, num_tokens_[i], false);
    }
    out += sse_event(chunk);
  }

  OrderedJson chunk_header() const {
    OrderedJson chunk = OrderedJson::object();
    chunk["id"] = id_;
    chunk["object"] = "text_completion";
    chunk["created"] = created_;
    chunk["model"] = ctx_.model_name();
    return chunk;
  }

  void emit_usage(std::string& out) override {
    if (!include_usage_) return;
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (const PreparedPrompt& p : prompts_)
      prompt_tokens += static_cast<int64_t>(p.token_ids.size());
    for (int64_t n : num_tokens_) completion_tokens += n;
    OrderedJson chunk = chunk_header();
    chunk["choices"] = OrderedJson::array();
    chunk["usage"] = usage_json(prompt_tokens, completion_tokens, false, cached_tokens_);
    out += sse_event(chunk);
  }

  CompletionRequest request_;
  std::vector<PreparedPrompt> prompts_;
  std::string id_;
  int64_t created_;
  size_t num_choices_;
  std::vector<int> text_lens_;
  std::vector<int64_t> num_tokens_;
  std::vector<bool> echoed_;
  std::map<size_t, bool> sent_prompt_ids_;
  bool include_usage_ = false;
  bool continuous_usage_ = false;
};

}  // namespace

void CompletionServing::create_completion(const httplib::Request& req, httplib::Response& res) {
  double arrival_ts = monotonic_seconds();
  if (!ctx_.accepting()) throw ApiError(503, "The server is shutting down.");
  CompletionRequest request = parse_completion_request(parse_json_object(req.body));
  ctx_.check_model(request.model);
  ctx_.check_priority(request.priority);
  std::vector<PreparedPrompt> prompts = prepare_prompts(ctx_, request);
  std::string id =
      ctx_.make_response_id("cmpl", req.get_header_value("X-Request-Id"), request.request_id);
  int64_t created = unix_time();

  auto streams = std::make_unique<OutputStreams>(ctx_.engine());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string engine_id = ctx_.make_engine_id(id, i);
    Prompt prompt(prompts[i].token_ids);
    if (request.cache_salt) prompt.cache_salt = *request.cache_salt;
    streams->add(engine_id, ctx_.submit(engine_id, prompt, prompts[i].params, request));
  }
  auto probe = ConnectionProbe::for_request(req);
  if (request.stream) {
    SseStreamer::attach(std::make_shared<CompletionStreamer>(ctx_, std::move(request),
                                                             std::move(prompts), std::move(streams),
                                                             probe, id, created, arrival_ts),
                        res);
    return;
  }
  InFlightGuard guard(ctx_.in_flight());
  std::vector<RequestOutput> finals;
  if (!wait_for_final_outputs(*streams, *probe, ctx_, request.n, arrival_ts, finals))
    return;  // client gone
  res.set_content(dump_json(completion_response(ctx_, request, prompts, finals, id, created)),
                  "application/json");
}

void CompletionServing::render_completion(const httplib::Request& req, httplib::Response& res) {
  CompletionRequest request = parse_completion_request(parse_json_object(req.body));
  ctx_.check_model(request.model);
  std::vector<PreparedPrompt> prompts = prepare_prompts(ctx_, request);
  std::string id =
      ctx_.make_response_id("cmpl", req.get_header_value("X-Request-Id"), request.request_id);
  OrderedJson out = OrderedJson::array();
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompts[i].params.validate();
    OrderedJson item = OrderedJson::object();
    item["request_id"] = cat(id, "-", i);
    item["model"] = ctx_.model_name();
    item["prompt"] = prompts[i].text;
    item["token_ids"] = prompts[i].token_ids;
    item["sampling_params"] = sampling_params_json(prompts[i].params);
    item["stream"] = request.stream;
    item["cache_salt"] =
        request.cache_salt ? OrderedJson(*request.cache_salt) : OrderedJson(nullptr);
    item["priority"] = request.priority;
    item["token_offsets"] = nullptr;
    out.push_back(std::move(item));
  }
  res.set_content(dump_json(out), "application/json");
}

}  // namespace cvllm::server
