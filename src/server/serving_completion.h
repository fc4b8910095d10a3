// POST /v1/completions and /v1/completions/render (vLLM's OpenAIServingCompletion): prompts in
// every form the API accepts, n choices per prompt, echo, completions-format logprobs, and
// streaming as vLLM emits it (one chunk per choice delta, optional usage chunk, `data: [DONE]`).
#pragma once

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace cvllm::server {

class ServingContext;

class CompletionServing {
 public:
  explicit CompletionServing(ServingContext& ctx) : ctx_(ctx) {}
  void create_completion(const httplib::Request& req, httplib::Response& res);
  void render_completion(const httplib::Request& req, httplib::Response& res);

 private:
  ServingContext& ctx_;
};

}  // namespace cvllm::server
