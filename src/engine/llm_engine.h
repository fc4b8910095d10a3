// LLMEngine: one loaded model with its tokenizer, backend, engine core and input/output
// processing. add_request validates and tokenizes; step() advances every running request by one
// engine step and returns the RequestOutputs that step produced. `LLM` (offline) and the server
// (online) both drive it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/scheduler.h"
#include "engine/beam_search.h"
#include "cvllm/beam_search.h"
#include "cvllm/engine_args.h"
#include "cvllm/llm.h"
#include "cvllm/outputs.h"
#include "cvllm/sampling_params.h"
#include "loader/generation_config.h"
#include "models/model_config.h"

namespace cvllm {

class Backend;
class CausalLM;
enum class CheckpointFormat;
class EngineCore;
class GgufFile;
class OutputProcessor;
class Tokenizer;
class WeightSource;

// A validated, tokenized request ready to enter the engine.
struct PreparedRequest {
  std::string request_id;
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_token_ids;
  std::shared_ptr<SamplingParams> params;  // resolved: stop ids merged, bad words tokenized
  int priority = 0;
  std::string cache_salt;
  int max_tokens = 16;
};

class LLMEngine {
 public:
  explicit LLMEngine(const EngineArgs& args);
  ~LLMEngine();

  // Throws ValueError for invalid parameters or prompts (too long, empty, out-of-vocab ids).
  void add_request(const std::string& request_id, const Prompt& prompt, const SamplingParams& params,
                   int priority = 0);
  // add_request in two halves: prepare_request reads no mutable engine state, so any thread may
  // call it while another runs step(); add_prepared must run on the engine's thread.
  PreparedRequest prepare_request(const std::string& request_id, const Prompt& prompt,
                                  const SamplingParams& params, int priority = 0) const;
  void add_prepared(PreparedRequest request);
  // Beam search for one prompt, run inside the engine; the result appears in
  // take_finished_beam_searches() once done. Throws ValueError like add_request.
  void add_beam_search_request(const std::string& request_id, const Prompt& prompt,
                               const BeamSearchParams& params, int priority = 0);
  std::vector<BeamSearchResult> take_finished_beam_searches();
  void abort_request(const std::vector<std::string>& request_ids);
  std::vector<RequestOutput> step();
  bool has_unfinished_requests() const;

  const Tokenizer* tokenizer() const { return tokenizer_.get(); }  // null with skip_tokenizer_init
  const ModelConfig& model_config() const { return model_config_; }
  const EngineArgs& args() const { return args_; }
  int max_model_len() const { return max_model_len_; }
  SchedulerStats scheduler_stats() const;
  // vLLM's get_default_sampling_params: the model's generation defaults over vLLM's.
  SamplingParams default_sampling_params() const { return generation_defaults_.apply_to(SamplingParams{}); }
  const GenerationDefaults& generation_defaults() const { return generation_defaults_; }
  std::string model_path() const { return model_path_; }
  std::optional<std::string> chat_template() const { return chat_template_; }
  EngineCore& engine_core() { return *core_; }
  Backend& backend() { return *backend_; }

 private:
  std::vector<int32_t> tokenize_prompt(const Prompt& prompt, const SamplingParams& params) const;
  std::shared_ptr<SamplingParams> resolve_params(const SamplingParams& params, int prompt_len) const;
  // Loading: each sets model_config_, weights_, the tokenizer (unless skip_tokenizer_init), EOS
  // ids, chat template and generation defaults from its kind of checkpoint.
  void load_gguf(const EngineArgs& args, const std::string& path);
  void load_hf(const EngineArgs& args, const std::string& dir);
  static std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path,
                                                   const std::shared_ptr<GgufFile>& gguf);

  EngineArgs args_;
  std::string model_path_;
  std::shared_ptr<GgufFile> gguf_;               // GGUF checkpoints only
  std::unique_ptr<WeightSource> weights_;        // keeps the mapped files the model points into
  CheckpointFormat checkpoint_format_{};
  ModelConfig model_config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<CausalLM> model_;
  std::unique_ptr<EngineCore> core_;
  std::unique_ptr<OutputProcessor> output_processor_;
  int max_model_len_ = 0;
  std::optional<int32_t> eos_token_id_;
  std::vector<int32_t> extra_eos_token_ids_;
  std::optional<std::string> chat_template_;
  GenerationDefaults generation_defaults_;
  BeamSearchCoordinator beams_;
  std::vector<BeamSearchResult> finished_beams_;
};

}  // namespace cvllm
