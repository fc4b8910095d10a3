// Error helpers: `cat(...)` builds a message from any streamable values; CVLLM_CHECK throws
// cvllm::Error with the failing condition and a message when an invariant is broken.
#pragma once

#include <sstream>
#include <string>
#include <utility>

#include "cvllm/errors.h"

namespace cvllm {

template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

[[noreturn]] void throw_check_failure(const char* file, int line, const char* cond,
                                      const std::string& message);

}  // namespace cvllm

#define CVLLM_CHECK(cond, ...)                                                        \
  do {                                                                                \
    if (!(cond)) [[unlikely]]                                                         \
      ::cvllm::throw_check_failure(__FILE__, __LINE__, #cond, ::cvllm::cat(__VA_ARGS__)); \
  } while (0)
