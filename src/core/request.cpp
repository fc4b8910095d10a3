#include "core/request.h"

namespace cvllm {

const char* finish_reason_name(RequestStatus status) {
  switch (status) {
    case RequestStatus::kFinishedStopped: return "stop";
    case RequestStatus::kFinishedLengthCapped: return "length";
    case RequestStatus::kFinishedAborted: return "abort";
    case RequestStatus::kFinishedError: return "error";
    default: return "";
  }
}

Request::Request(std::string request_id, std::vector<int32_t> prompt_token_ids,
                 std::shared_ptr<const SamplingParams> sampling_params,
                 std::optional<int32_t> eos_token_id, double arrival_time, int priority,
                 std::string cache_salt)
    : request_id(std::move(request_id)),
      prompt_token_ids(std::move(prompt_token_ids)),
      sampling_params(std::move(sampling_params)),
      eos_token_id(eos_token_id),
      arrival_time(arrival_time),
      priority(priority),
      cache_salt(std::move(cache_salt)) {
  all_token_ids = this->prompt_token_ids;
  skip_reading_prefix_cache = this->sampling_params && this->sampling_params->prompt_logprobs;
}

void Request::append_output_token(int32_t token_id) {
  output_token_ids.push_back(token_id);
  all_token_ids.push_back(token_id);
}

}  // namespace cvllm
