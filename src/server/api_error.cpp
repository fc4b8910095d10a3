#include "server/api_error.h"

#include "server/json_util.h"

namespace cvllm::server {

ApiError::ApiError(int status_, std::string message_, std::optional<std::string> param_,
                   std::string type_)
    : status(status_),
      message(std::move(message_)),
      type(type_.empty() ? error_type_for_status(status_) : std::move(type_)),
      param(std::move(param_)) {}

ApiError bad_request(std::string message, std::optional<std::string> param) {
  return ApiError(400, std::move(message), std::move(param));
}

ApiError model_not_found(const std::string& model) {
  return ApiError(404, "The model `" + model + "` does not exist.", "model");
}

std::string reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Request Entity Too Large";
    case 414:
      return "Request-URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

std::string error_type_for_status(int status) {
  switch (status) {
    case 400:
      return "BadRequestError";
    case 404:
      return "NotFoundError";
    case 500:
      return "InternalServerError";
    case 501:
      return "NotImplementedError";
    default:
      return reason_phrase(status);
  }
}

nlohmann::ordered_json error_json(const ApiError& error) {
  nlohmann::ordered_json inner = nlohmann::ordered_json::object();
  inner["message"] = error.message;
  inner["type"] = error.type;
  inner["param"] =
      error.param ? nlohmann::ordered_json(*error.param) : nlohmann::ordered_json(nullptr);
  inner["code"] = error.status;
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  out["error"] = std::move(inner);
  return out;
}

std::string error_body(const ApiError& error) {
  return dump_json(error_json(error));
}

}  // namespace cvllm::server
