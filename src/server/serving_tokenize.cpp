#include "server/serving_tokenize.h"

#include <httplib.h>

#include "server/api_error.h"
#include "server/chat_prompt.h"
#include "server/protocol.h"
#include "server/serving_context.h"
#include "tokenizer/tokenizer.h"

namespace cvllm::server {

void TokenizeServing::tokenize(const httplib::Request& req, httplib::Response& res) {
  TokenizeRequest request = parse_tokenize_request(parse_json_object(req.body));
  ctx_.check_model(request.model);
  const Tokenizer& tok = ctx_.tokenizer();
  std::vector<int32_t> ids;
  if (request.is_chat()) {
    ChatPromptRequest pr;
    pr.messages = &request.messages;
    pr.tools = request.tools.is_null() ? nullptr : &request.tools;
    pr.chat_template = request.chat_template;
    pr.chat_template_kwargs = request.chat_template_kwargs;
    pr.add_generation_prompt = request.add_generation_prompt;
    pr.continue_final_message = request.continue_final_message;
    pr.add_special_tokens = request.add_special_tokens;
    ids = render_chat_prompt(ctx_, pr).token_ids;
  } else {
    ids = tok.encode(request.prompt.value_or(""), request.add_special_tokens);
  }
  OrderedJson out = OrderedJson::object();
  out["count"] = ids.size();
  out["max_model_len"] = ctx_.max_model_len();
  out["tokens"] = ids;
  if (request.return_token_strs) {
    OrderedJson strs = OrderedJson::array();
    for (int32_t id : ids) strs.push_back(tok.id_to_piece(id));
    out["token_strs"] = std::move(strs);
  } else {
    out["token_strs"] = nullptr;
  }
  res.set_content(dump_json(out), "application/json");
}

void TokenizeServing::detokenize(const httplib::Request& req, httplib::Response& res) {
  DetokenizeRequest request = parse_detokenize_request(parse_json_object(req.body));
  ctx_.check_model(request.model);
  OrderedJson out = OrderedJson::object();
  out["prompt"] = ctx_.tokenizer().decode(request.tokens, /*skip_special_tokens=*/false);
  res.set_content(dump_json(out), "application/json");
}

}  // namespace cvllm::server
