// ApiServer: the OpenAI-compatible server (vLLM's api_server.py) over one AsyncEngine. Routes:
//   GET  /health /ping /version /v1/models /metrics
//   POST /v1/completions /v1/completions/render /v1/chat/completions /v1/chat/completions/render
//   POST /tokenize /detokenize /ping
// Lifecycle: bind() (port 0 picks a free port), serve() blocks until shutdown() — which stops
// taking generation requests (503), lets in-flight ones finish for up to a grace period, aborts
// the rest, and closes every connection.
#pragma once

#include <memory>
#include <string>

#include "engine/async_engine.h"
#include "server/server_config.h"

namespace cvllm::server {

class ChatServing;
class CompletionServing;
class HttpServer;
class ServerMetrics;
class ServingContext;
class StatsLogger;
class TokenizeServing;

class ApiServer {
 public:
  ApiServer(AsyncEngine& engine, const ServerConfig& config);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  void bind();
  int port() const;
  void serve();
  // Safe from any thread (not from a signal handler). `drain_timeout_s` bounds the wait for
  // in-flight requests before they are aborted.
  void shutdown(double drain_timeout_s);
  size_t peak_connection_threads() const;

  static std::string version();

 private:
  void add_routes();

  AsyncEngine& engine_;
  ServerConfig config_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<ServingContext> ctx_;
  std::unique_ptr<CompletionServing> completion_;
  std::unique_ptr<ChatServing> chat_;
  std::unique_ptr<TokenizeServing> tokenize_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<StatsLogger> stats_logger_;
};

}  // namespace cvllm::server
