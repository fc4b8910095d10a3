// Minimal leveled logging to stderr in vLLM's shape: "INFO 11-27 06:20:54 [file.cpp:12] message".
// The level comes from CVLLM_LOGGING_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO).
#pragma once

#include "util/error.h"

namespace cvllm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

bool log_enabled(LogLevel level);
void log_message(LogLevel level, const char* file, int line, const std::string& message);

}  // namespace cvllm

#define CVLLM_LOG(level, ...)                                                                \
  do {                                                                                       \
    if (::cvllm::log_enabled(level))                                                         \
      ::cvllm::log_message(level, __FILE__, __LINE__, ::cvllm::cat(__VA_ARGS__));            \
  } while (0)
#define LOG_DEBUG(...) CVLLM_LOG(::cvllm::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) CVLLM_LOG(::cvllm::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARNING(...) CVLLM_LOG(::cvllm::LogLevel::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) CVLLM_LOG(::cvllm::LogLevel::kError, __VA_ARGS__)
