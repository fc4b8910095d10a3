// Exceptions thrown by the public API. `ValueError` mirrors vLLM's ValueError/VLLMValidationError:
// the caller passed something invalid (a sampling parameter, a prompt, a model path). `Error` is
// everything else (a corrupt model file, an internal fault).
#pragma once

#include <stdexcept>
#include <string>

namespace cvllm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ValueError : public Error {
 public:
  using Error::Error;
};

}  // namespace cvllm
