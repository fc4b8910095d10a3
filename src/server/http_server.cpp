#include "server/http_server.h"

#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdlib>

#include "server/api_error.h"
#include "server/serving_context.h"
#include "server/task_queue.h"
#include "util/error.h"
#include "util/logging.h"

namespace cvllm::server {

namespace {

// The kernel caps this at net.core.somaxconn (4096 on current Linux).
constexpr int kListenBacklog = 4096;

// Compares in time independent of where the strings differ (vLLM compares key hashes for this).
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

bool is_protected_path(const std::string& path) {
  return path.rfind("/v1", 0) == 0 || path.rfind("/v2", 0) == 0 || path.rfind("/inference", 0) == 0;
}

void set_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  res.set_content(error_body(error), "application/json");
}

// vLLM's 401 body is not the OpenAI error shape.
void set_unauthorized(httplib::Response& res) {
  res.status = 401;
  res.set_content("{\"error\":\"Unauthorized\"}", "application/json");
}

// Ends every connection accepted on `port`: threads blocked reading a stalled client return at
// once instead of after the read timeout, so shutdown does not wait for them.
void shutdown_connections(int port) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd < 0) continue;
    sockaddr_storage local{}, peer{};
    socklen_t len = sizeof(local);
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    int local_port = -1;
    if (local.ss_family == AF_INET)
      local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    else if (local.ss_family == AF_INET6)
      local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    len = sizeof(peer);
    if (local_port != port ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
      continue;
    }
    ::shutdown(static_cast<int>(fd), SHUT_RDWR);
  }
  closedir(dir);
}

}  // namespace

// httplib's listening socket is protected: a subclass can raise the listen backlog from
// httplib's built-in 5, which drops SYNs (one-second client retries) under bursts of connects.
class HttpServer::Impl : public httplib::Server {
 public:
  void raise_backlog(int backlog) {
    int fd = svr_sock_;
    if (fd >= 0 && ::listen(fd, backlog) != 0) LOG_WARNING("could not raise the listen backlog");
  }
};

HttpServer::HttpServer(const ServerConfig& config)
    : config_(config), server_(std::make_unique<Impl>()) {
  // A client that goes away mid-response must fail the write, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  httplib::Server& s = *server_;
  size_t max_threads = static_cast<size_t>(std::max(config_.max_connections, 8));
  s.new_task_queue = [this, max_threads] {
    return new GrowingThreadPool(4, max_threads, &peak_threads_);
  };
  s.set_keep_alive_max_count(100000);
  s.set_keep_alive_timeout(config_.keep_alive_timeout_s);
  s.set_read_timeout(config_.read_timeout_s, 0);
  s.set_write_timeout(config_.write_timeout_s, 0);
  s.set_payload_max_length(config_.max_request_body_bytes);
  s.set_tcp_nodelay(true);  // SSE chunks are small and latency-sensitive

  install_middleware(s);
  install_error_handlers(s);
}

// CORS preflight, authentication of body-less requests, CORS and X-Request-Id response headers.
void HttpServer::install_middleware(httplib::Server& s) {
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "OPTIONS") {  // CORS preflight (never authenticated)
      add_cors_headers(req, res);
      res.set_header("Access-Control-Allow-Methods",
                     "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
      std::string asked = req.get_header_value("Access-Control-Request-Headers");
      if (!asked.empty()) res.set_header("Access-Control-Allow-Headers", asked);
      res.set_header("Access-Control-Max-Age", "600");
      res.status = 200;
      return httplib::Server::HandlerResponse::Handled;
    }
    // Requests with a body are checked once it has been read (in the route): answering before
    // would leave the unread body in the connection to be parsed as the next request.
    bool has_body = req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
    if (!has_body && !authorized(req)) {
      set_unauthorized(res);
      add_cors_headers(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    add_cors_headers(req, res);
    if (config_.enable_request_id_headers) {
      std::string id = req.get_header_value("X-Request-Id");
      if (!res.has_header("X-Request-Id"))
        res.set_header("X-Request-Id", id.empty() ? random_uuid() : id);
    }
  });
}

// Error bodies for what httplib rejects itself, uncaught exceptions, and the access log.
void HttpServer::install_error_handlers(httplib::Server& s) {
  // Fills the body of errors httplib raises itself (unknown path, body too large, bad request
  // line); handler errors already carry theirs.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                  httplib::Response& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_)
      return httplib::Server::HandlerResponse::Unhandled;
    std::string phrase = reason_phrase(res.status);
    std::string message = phrase;
    if (res.status == 413) {
      message =
          cat("Request body too large: the limit is ", config_.max_request_body_bytes, " bytes");
    }
    ApiError error(res.status, message, std::nullopt, phrase);
    res.set_content(error_body(error), "application/json");
    add_cors_headers(req, res);
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        LOG_ERROR("unhandled exception in an HTTP handler: ", what);
        set_error(res, ApiError(500, what));
      });
  if (!config_.disable_access_log) {
    s.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      if (req.method.empty()) return;  // the client closed a kept-alive connection
      LOG_INFO(req.remote_addr, ":", req.remote_port, " - \"", req.method, " ", req.path, " ",
               req.version, "\" ", res.status, " ", reason_phrase(res.status));
    });
  }
}

HttpServer::~HttpServer() {
  stop();
}

bool HttpServer::authorized(const httplib::Request& req) const {
  if (config_.api_keys.empty() || !is_protected_path(req.path)) return true;
  std::string header = req.get_header_value("Authorization");
  bool ok = false;
  for (const std::string& key : config_.api_keys)
    ok |= constant_time_equal(header, "Bearer " + key);
  return ok;
}

void HttpServer::add_cors_headers(const httplib::Request& req, httplib::Response& res) const {
  std::string origin = req.get_header_value("Origin");
  if (origin.empty() || res.has_header("Access-Control-Allow-Origin")) return;
  const auto& allowed = config_.allowed_origins;
  if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) {
    res.set_header("Access-Control-Allow-Origin", "*");
  } else if (std::find(allowed.begin(), allowed.end(), origin) != allowed.end()) {
    res.set_header("Access-Control-Allow-Origin", origin);
    res.set_header("Vary", "Origin");
  }
}

HttpServer::Handler HttpServer::wrap(Handler handler) const {
  return [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    try {
      if (!authorized(req)) {
        set_unauthorized(res);
        return;
      }
      handler(req, res);
    } catch (const ApiError& e) {
      set_error(res, e);
    } catch (const ValueError& e) {
      set_error(res, ApiError(400, e.what()));
    } catch (const nlohmann::json::exception& e) {
      set_error(res, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      LOG_ERROR("internal error serving ", req.method, " ", req.path, ": ", e.what());
      set_error(res, ApiError(500, e.what()));
    }
  };
}

void HttpServer::get(const std::string& path, Handler handler) {
  server_->Get(path, wrap(std::move(handler)));
}

// POST bodies are read through a content reader: httplib would otherwise parse form-encoded
// bodies itself (with its own 8 KiB cap), and every body here is JSON whatever its Content-Type.
void HttpServer::post(const std::string& path, Handler handler) {
  Handler wrapped = wrap(std::move(handler));
  server_->Post(path, [wrapped](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader) {
    if (req.is_multipart_form_data()) {
      set_error(res,
                bad_request("JSON decode error: expected a JSON body, got multipart/form-data"));
      return;
    }
    httplib::Request with_body = req;
    bool complete = reader([&](const char* data, size_t len) {
      with_body.body.append(data, len);
      return true;
    });
    if (!complete) {  // httplib sets 413 for a body over the limit
      int status = res.status == 413 ? 413 : 400;
      std::string message =
          status == 413 ? "Request body too large" : "Could not read the request body";
      set_error(res, ApiError(status, message, std::nullopt, reason_phrase(status)));
      return;
    }
    wrapped(with_body, res);
  });
}

void HttpServer::bind() {
  if (config_.port == 0) {
    port_ = server_->bind_to_any_port(config_.host);
    if (port_ < 0) throw Error(cat("cannot bind ", config_.host, " to a free port"));
  } else {
    if (!server_->bind_to_port(config_.host, config_.port)) {
      throw Error(cat("cannot bind ", config_.host, ":", config_.port, " (address in use?)"));
    }
    port_ = config_.port;
  }
  server_->raise_backlog(kListenBacklog);
}

void HttpServer::listen() {
  server_->listen_after_bind();
}

void HttpServer::stop() {
  server_->stop();
  if (port_ > 0) shutdown_connections(port_);
}

bool HttpServer::is_running() const {
  return server_->is_running();
}

size_t HttpServer::peak_threads() const {
  return peak_threads_.load();
}

}  // namespace cvllm::server
