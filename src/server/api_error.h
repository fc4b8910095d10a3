// Errors the HTTP API returns, in vLLM's OpenAI shape:
//   {"error": {"message": str, "type": str, "param": str|null, "code": int}}
// Handlers throw ApiError; the router turns it into the status and body. cvllm::ValueError from
// the engine (bad sampling parameters, out-of-vocabulary ids) becomes a 400, like vLLM's
// ValueError/VLLMValidationError; anything else is a 500.
#pragma once

#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace cvllm::server {

struct ApiError : public std::exception {
  ApiError(int status, std::string message, std::optional<std::string> param = std::nullopt,
           std::string type = "");
  const char* what() const noexcept override { return message.c_str(); }

  int status;
  std::string message;
  std::string type;  // "BadRequestError", "NotFoundError", ...
  std::optional<std::string> param;
};

// 400 BadRequestError naming the offending field.
ApiError bad_request(std::string message, std::optional<std::string> param = std::nullopt);
// 404 NotFoundError for a model the server does not serve (param "model").
ApiError model_not_found(const std::string& model);

// vLLM's error type for a status: BadRequestError (400), NotFoundError (404),
// InternalServerError (500), NotImplementedError (501); else the HTTP reason phrase.
std::string error_type_for_status(int status);
std::string reason_phrase(int status);

nlohmann::ordered_json error_json(const ApiError& error);
// The JSON text of an error body (never throws).
std::string error_body(const ApiError& error);

}  // namespace cvllm::server
