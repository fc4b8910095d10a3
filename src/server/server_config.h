// What `cvllm serve` flags configure in the HTTP front end (the engine has its own EngineArgs).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace cvllm::server {

struct ServerConfig {
  std::string host = "0.0.0.0";  // vLLM binds all interfaces by default
  int port = 8000;
  // `Authorization: Bearer <key>` is required on /v1 paths when any key is set (--api-key, or
  // VLLM_API_KEY).
  std::vector<std::string> api_keys;
  // Names accepted in a request's `model` field; the first one is reported back.
  std::vector<std::string> served_model_names;
  std::string model_path;                            // `root` of /v1/models
  std::vector<std::string> allowed_origins = {"*"};  // CORS
  bool enable_request_id_headers = false;            // echo/create X-Request-Id
  bool disable_log_stats = false;
  bool disable_access_log = false;  // --disable-uvicorn-access-log
  double log_stats_interval_s = 10.0;
  bool trust_request_chat_template = false;
  std::optional<std::string> chat_template;  // --chat-template, already loaded (text)
  std::string response_role = "assistant";
  bool enable_prompt_tokens_details = false;
  bool enable_force_include_usage = false;
  // Hardening: request bodies above this are refused with 413; connections idle or stalled this
  // long are dropped; at most this many connections are served at once (more wait in the queue).
  size_t max_request_body_bytes = size_t{32} << 20;
  int read_timeout_s = 30;
  int write_timeout_s = 30;
  int keep_alive_timeout_s = 5;  // uvicorn's default, which vLLM uses
  int max_connections = 4096;
  // SIGTERM/SIGINT: wait this long for in-flight requests before aborting them.
  double shutdown_timeout_s = 0.0;
};

}  // namespace cvllm::server
