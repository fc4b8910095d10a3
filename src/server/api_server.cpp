#include "server/api_server.h"

#include <httplib.h>

#include <chrono>
#include <thread>

#include "server/api_error.h"
#include "server/http_server.h"
#include "server/json_util.h"
#include "server/metrics.h"
#include "server/response_util.h"
#include "server/serving_chat.h"
#include "server/serving_completion.h"
#include "server/serving_context.h"
#include "server/serving_tokenize.h"
#include "util/logging.h"
#include "util/system.h"

#ifndef CVLLM_VERSION
#define CVLLM_VERSION "0.0.0"
#endif

namespace cvllm::server {

std::string ApiServer::version() {
  return CVLLM_VERSION;
}

ApiServer::ApiServer(AsyncEngine& engine, const ServerConfig& config)
    : engine_(engine), config_(config) {
  if (config_.served_model_names.empty()) {
    config_.served_model_names.push_back(config_.model_path.empty() ? engine.engine().model_path()
                                                                    : config_.model_path);
  }
  if (config_.model_path.empty()) config_.model_path = engine.engine().model_path();
  metrics_ = std::make_unique<ServerMetrics>(config_.served_model_names.front());
  ctx_ = std::make_unique<ServingContext>(engine_, config_, *metrics_);
  completion_ = std::make_unique<CompletionServing>(*ctx_);
  chat_ = std::make_unique<ChatServing>(*ctx_);
  tokenize_ = std::make_unique<TokenizeServing>(*ctx_);
  http_ = std::make_unique<HttpServer>(config_);
  add_routes();
}

ApiServer::~ApiServer() {
  if (stats_logger_) stats_logger_->stop();
}

void ApiServer::add_routes() {
  auto health = [this](const httplib::Request&, httplib::Response& res) {
    res.status = engine_.healthy() ? 200 : 503;
  };
  http_->get("/health", health);
  http_->get("/ping", health);
  http_->post("/ping", health);
  http_->get("/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump_json(OrderedJson{{"version", version()}}), "application/json");
  });
  http_->get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    int64_t created = unix_time();
    OrderedJson data = OrderedJson::array();
    for (const std::string& name : config_.served_model_names) {
      OrderedJson perm = OrderedJson::object();
      perm["id"] = "modelperm-" + random_uuid();
      perm["object"] = "model_permission";
      perm["created"] = created;
      perm["allow_create_engine"] = false;
      perm["allow_sampling"] = true;
      perm["allow_logprobs"] = true;
      perm["allow_search_indices"] = false;
      perm["allow_view"] = true;
      perm["allow_fine_tuning"] = false;
      perm["organization"] = "*";
      perm["group"] = nullptr;
      perm["is_blocking"] = false;
      OrderedJson card = OrderedJson::object();
      card["id"] = name;
      card["object"] = "model";
      card["created"] = created;
      card["owned_by"] = "vllm";
      card["root"] = config_.model_path;
      card["parent"] = nullptr;
      card["max_model_len"] = ctx_->max_model_len();
      card["permission"] = OrderedJson::array({std::move(perm)});
      data.push_back(std::move(card));
    }
    OrderedJson body = OrderedJson::object();
    body["object"] = "list";
    body["data"] = std::move(data);
    res.set_content(dump_json(body), "application/json");
  });
  http_->get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->render(engine_.snapshot()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  http_->post("/v1/completions", [this](Req q, Res s) { completion_->create_completion(q, s); });
  http_->post("/v1/completions/render",
              [this](Req q, Res s) { completion_->render_completion(q, s); });
  http_->post("/v1/chat/completions",
              [this](Req q, Res s) { chat_->create_chat_completion(q, s); });
  http_->post("/v1/chat/completions/render", [this](Req q, Res s) { chat_->render_chat(q, s); });
  http_->post("/tokenize", [this](Req q, Res s) { tokenize_->tokenize(q, s); });
  http_->post("/detokenize", [this](Req q, Res s) { tokenize_->detokenize(q, s); });
}

void ApiServer::bind() {
  http_->bind();
}

int ApiServer::port() const {
  return http_->port();
}

void ApiServer::serve() {
  if (!config_.disable_log_stats) {
    stats_logger_ = std::make_unique<StatsLogger>(engine_, config_.log_stats_interval_s);
  }
  LOG_INFO("Starting vLLM-compatible API server on http://", config_.host, ":", port(),
           " (model: ", ctx_->model_name(), ")");
  http_->listen();
  if (stats_logger_) stats_logger_->stop();
}

void ApiServer::shutdown(double drain_timeout_s) {
  ctx_->stop_accepting();
  double deadline = monotonic_seconds() + drain_timeout_s;
  while (ctx_->in_flight().load() > 0 && monotonic_seconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (int left = ctx_->in_flight().load(); left > 0) {
    LOG_INFO("Shutting down: aborting ", left, " in-flight request(s)");
  }
  // Aborts what is left: handlers see their streams close and end their responses.
  engine_.shutdown(/*drain=*/false);
  double close_deadline = monotonic_seconds() + 5.0;
  while (ctx_->in_flight().load() > 0 && monotonic_seconds() < close_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  http_->stop();
}

size_t ApiServer::peak_connection_threads() const {
  return http_->peak_threads();
}

}  // namespace cvllm::server
