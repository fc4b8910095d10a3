// `cvllm serve [MODEL]`: the OpenAI-compatible HTTP server, with `vllm serve`'s flags.
//   cvllm serve model.gguf --port 8000 --api-key KEY --served-model-name my-model
// Engine flags are those of every engine command (engine_flags.cpp); like `vllm serve` on CPU,
// the batch defaults are 2048 tokens and 128 sequences. SIGINT/SIGTERM shut down gracefully:
// new requests get 503, in-flight ones get --shutdown-timeout seconds (default 0) to finish and
// are then aborted, and the process exits 0. A second signal exits at once.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "engine/async_engine.h"
#include "loader/model_resolver.h"
#include "server/api_server.h"
#include "server/chat_prompt.h"
#include "util/error.h"
#include "util/logging.h"

namespace cvllm::cli {
namespace {

std::vector<std::string> parse_origins(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    if (!v.empty() && v.front() == '[') {  // vLLM takes a JSON list: --allowed-origins '["*"]'
      nlohmann::json list = nlohmann::json::parse(v, nullptr, false);
      if (!list.is_array()) throw ValueError(cat("--allowed-origins: not a JSON list: ", v));
      for (const auto& item : list) {
        if (!item.is_string()) throw ValueError("--allowed-origins: list items must be strings");
        out.push_back(item.get<std::string>());
      }
    } else {
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) {
        if (!item.empty()) out.push_back(item);
      }
    }
  }
  return out;
}

server::ServerConfig server_config_from_flags(const Flags& f) {
  server::ServerConfig c;
  if (auto v = f.get("host")) c.host = *v;
  if (auto v = f.get_int("port")) c.port = static_cast<int>(*v);
  if (c.port < 0 || c.port > 65535)
    throw ValueError(cat("--port must be in [0, 65535], got ", c.port));
  c.api_keys = f.get_all("api-key");
  if (c.api_keys.empty()) {
    if (const char* env = std::getenv("VLLM_API_KEY"); env && *env) c.api_keys.push_back(env);
  }
  c.served_model_names = f.get_all("served-model-name");
  if (auto origins = f.get_all("allowed-origins"); !origins.empty())
    c.allowed_origins = parse_origins(origins);
  c.enable_request_id_headers = f.get_bool("enable-request-id-headers");
  c.disable_log_stats = f.get_bool("disable-log-stats");
  c.disable_access_log = f.get_bool("disable-uvicorn-access-log");
  c.trust_request_chat_template = f.get_bool("trust-request-chat-template");
  c.enable_prompt_tokens_details = f.get_bool("enable-prompt-tokens-details");
  c.enable_force_include_usage = f.get_bool("enable-force-include-usage");
  if (auto v = f.get("chat-template")) c.chat_template = server::load_chat_template_source(*v);
  if (auto v = f.get("response-role")) c.response_role = *v;
  if (auto v = f.get_int("max-request-body-bytes"))
    c.max_request_body_bytes = static_cast<size_t>(std::max<int64_t>(*v, 1));
  if (auto v = f.get_int("max-connections"))
    c.max_connections = static_cast<int>(std::max<int64_t>(*v, 8));
  if (auto v = f.get_double("shutdown-timeout")) c.shutdown_timeout_s = std::max(*v, 0.0);
  return c;
}

// Waits for SIGINT/SIGTERM on its own thread (the signals are blocked everywhere else), then
// shuts the server down from there: no work happens inside a signal handler.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void()> on_signal) : on_signal_(std::move(on_signal)) {
    thread_ = std::thread([this] { run(); });
  }
  ~SignalWatcher() {
    done_.store(true);
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
    if (shutdown_thread_.joinable()) shutdown_thread_.join();
  }

  static void block_signals() {
    sigset_t set = signal_set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }

 private:
  static sigset_t signal_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    return set;
  }

  void run() {
    sigset_t set = signal_set();
    int num_signals = 0;
    while (!done_.load()) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0 || sig == SIGUSR1) continue;
      if (++num_signals > 1) {
        LOG_WARNING("Second signal: exiting now");
        std::_Exit(130);
      }
      LOG_INFO("Received ", sig == SIGINT ? "SIGINT" : "SIGTERM", ": shutting down");
      // Shut down on another thread so that this one keeps listening for a second signal.
      shutdown_thread_ = std::thread([this] { on_signal_(); });
    }
  }

  std::function<void()> on_signal_;
  std::atomic<bool> done_{false};
  std::thread thread_;
  std::thread shutdown_thread_;
};

}  // namespace

int run_serve(int argc, char** argv) {
  std::set<std::string> values = engine_value_flags();
  for (const char* f : {"host", "port", "api-key", "served-model-name", "chat-template",
                        "allowed-origins", "response-role", "max-request-body-bytes",
                        "max-connections", "shutdown-timeout", "uvicorn-log-level"}) {
    values.insert(f);
  }
  std::set<std::string> bools = engine_bool_flags();
  bools.insert({"enable-request-id-headers", "disable-log-stats", "trust-request-chat-template",
                "disable-uvicorn-access-log", "enable-prompt-tokens-details",
                "enable-force-include-usage"});
  Flags flags(argc, argv, 2, values, bools);

  EngineArgs args = engine_args_from_flags(flags);
  // vLLM's `serve` defaults on CPU: a 2048-token batch of at most 128 sequences.
  if (!flags.get("max-num-batched-tokens")) args.max_num_batched_tokens = 2048;
  if (!flags.get("max-num-seqs")) args.max_num_seqs = 128;
  args.disable_log_stats = true;  // the server logs its own periodic line
  server::ServerConfig config = server_config_from_flags(flags);
  config.model_path = args.model;
  if (args.model.empty() && config.served_model_names.empty()) {
    config.served_model_names.push_back(kDefaultModelName);
  }

  SignalWatcher::block_signals();  // before any thread starts, so all of them inherit the mask
  AsyncEngine engine(args);
  server::ApiServer api(engine, config);
  api.bind();
  std::atomic<bool> stopping{false};
  SignalWatcher watcher([&] {
    if (!stopping.exchange(true)) api.shutdown(config.shutdown_timeout_s);
  });
  api.serve();
  if (!stopping.exchange(true)) api.shutdown(0.0);
  LOG_INFO("Server stopped (peak connection threads: ", api.peak_connection_threads(), ")");
  return 0;
}

}  // namespace cvllm::cli
