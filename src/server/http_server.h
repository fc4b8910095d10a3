// The HTTP layer: cpp-httplib configured for an OpenAI-compatible API server.
// - Routes take handlers that throw ApiError (or cvllm::ValueError -> 400); anything else that
//   escapes is a 500. Every error body has vLLM's {"error": {...}} shape; 404 for an unknown
//   path, 413 for a body over the limit.
// - `Authorization: Bearer <key>` on /v1, /v2 and /inference paths when API keys are set (vLLM's
//   401 body {"error": "Unauthorized"}); CORS headers and preflight; X-Request-Id echo.
// - Keep-alive, read/write timeouts against stalled clients, a worker pool that grows to the
//   number of open connections, and a listen backlog large enough for bursts of connects.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "server/server_config.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace cvllm::server {

class HttpServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  explicit HttpServer(const ServerConfig& config);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void get(const std::string& path, Handler handler);
  void post(const std::string& path, Handler handler);

  // Binds host:port (port 0 picks a free one). Throws cvllm::Error when the address is taken.
  void bind();
  int port() const { return port_; }
  // Serves until stop(); returns after every connection thread has finished.
  void listen();
  void stop();
  bool is_running() const;
  size_t peak_threads() const;

 private:
  class Impl;
  void install_middleware(httplib::Server& s);
  void install_error_handlers(httplib::Server& s);
  Handler wrap(Handler handler) const;
  bool authorized(const httplib::Request& req) const;
  void add_cors_headers(const httplib::Request& req, httplib::Response& res) const;

  ServerConfig config_;
  std::unique_ptr<Impl> server_;
  std::atomic<size_t> peak_threads_{0};  // most connection threads alive at once
  int port_ = -1;
};

}  // namespace cvllm::server
