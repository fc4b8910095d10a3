// POST /v1/chat/completions and /v1/chat/completions/render (vLLM's OpenAIServingChat): chat
// template rendering, n choices, chat-format logprobs, echo of the last message, and streaming
// as vLLM emits it (a role chunk per choice first, content deltas, a finish chunk per choice,
// optional usage chunk, `data: [DONE]`).
#pragma once

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace cvllm::server {

class ServingContext;

class ChatServing {
 public:
  explicit ChatServing(ServingContext& ctx) : ctx_(ctx) {}
  void create_chat_completion(const httplib::Request& req, httplib::Response& res);
  void render_chat(const httplib::Request& req, httplib::Response& res);

 private:
  ServingContext& ctx_;
};

}  // namespace cvllm::server
