// OutputProcessor: turns engine-core outputs (token ids, logprobs, finish status) into vLLM's
// RequestOutputs — incremental detokenization, stop strings, logprob dicts, n>1 fan-in and the
// CUMULATIVE / DELTA / FINAL_ONLY output kinds. It runs on the caller's thread, off the engine loop.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/scheduler.h"
#include "cvllm/outputs.h"
#include "cvllm/sampling_params.h"

namespace cvllm {

class Tokenizer;
class IncrementalDetokenizer;

class OutputProcessor {
 public:
  explicit OutputProcessor(const Tokenizer* tokenizer);  // null: skip_tokenizer_init
  ~OutputProcessor();

  // Registers a request with `n` children whose engine ids are child_request_ids[i].
  void add_request(const std::string& request_id, std::optional<std::string> prompt,
                   std::vector<int32_t> prompt_token_ids, std::shared_ptr<const SamplingParams> params,
                   const std::vector<std::string>& child_request_ids);

  struct Result {
    std::vector<RequestOutput> request_outputs;
    // Children that hit a stop string: the engine must stop computing them.
    std::vector<std::string> reqs_to_abort;
  };
  Result process_outputs(const std::vector<EngineCoreOutput>& outputs);

  // Marks requests (by parent id) aborted and returns their final outputs.
  std::vector<RequestOutput> abort_requests(const std::vector<std::string>& request_ids);
  // Engine ids of a parent's children that are still running.
  std::vector<std::string> unfinished_children(const std::string& request_id) const;
  bool has_unfinished_requests() const { return !requests_.empty(); }
  size_t num_unfinished_requests() const { return requests_.size(); }

 private:
  struct ChildState;
  struct ParentState;

  bool update_child(ChildState& child, const EngineCoreOutput& out);
  void check_stop_strings(ChildState& child, size_t new_chars);
  std::optional<RequestOutput> make_output(ParentState& parent, bool force);
  std::string decode_token(int32_t token_id) const;
  PositionLogprobs to_position_logprobs(const TokenLogprobs& lp) const;

  const Tokenizer* tokenizer_;
  std::unordered_map<std::string, std::unique_ptr<ParentState>> requests_;
  std::unordered_map<std::string, std::pair<ParentState*, int>> child_to_parent_;
};

}  // namespace cvllm
