// POST /tokenize and /detokenize (vLLM's OpenAIServingTokenization). /tokenize takes a prompt or,
// in its chat form, messages rendered through the chat template; it returns
// {count, max_model_len, tokens, token_strs}. /detokenize turns ids back into {prompt}.
#pragma once

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace cvllm::server {

class ServingContext;

class TokenizeServing {
 public:
  explicit TokenizeServing(ServingContext& ctx) : ctx_(ctx) {}
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);

 private:
  ServingContext& ctx_;
};

}  // namespace cvllm::server
