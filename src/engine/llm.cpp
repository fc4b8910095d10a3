#include "cvllm/llm.h"

#include <algorithm>
#include <string>

#include "engine/llm_engine.h"
#include "engine/progress_bar.h"
#include "util/error.h"

namespace cvllm {

LLM::LLM(const EngineArgs& args) : engine_(std::make_unique<LLMEngine>(args)) {}
LLM::~LLM() = default;

const Tokenizer& LLM::get_tokenizer() const {
  if (engine_->tokenizer() == nullptr) throw ValueError("the tokenizer was not initialized (skip_tokenizer_init)");
  return *engine_->tokenizer();
}

SamplingParams LLM::get_default_sampling_params() const { return engine_->default_sampling_params(); }

std::vector<RequestOutput> LLM::generate(const PromptList& prompts) {
  return generate(prompts, get_default_sampling_params(), true);
}

std::vector<RequestOutput> LLM::generate(const PromptList& prompts, const SamplingParams& params,
                                         bool use_tqdm) {
  std::vector<SamplingParams> all(prompts.prompts().size(), params);
  return generate(prompts, all, use_tqdm);
}

std::vector<RequestOutput> LLM::generate(const PromptList& prompts,
                                         const std::vector<SamplingParams>& params, bool use_tqdm,
                                         const std::vector<int>& priority) {
  const std::vector<Prompt>& list = prompts.prompts();
  if (params.size() != list.size()) {
    throw ValueError("The lengths of prompts and sampling_params must be the same.");
  }
  if (!priority.empty() && priority.size() != list.size()) {
    throw ValueError("The lengths of prompts and priority must be the same.");
  }
  // Offline requests report only final outputs; ids are a counter so results sort back into
  // input order whatever order they finish in.
  std::vector<std::string> ids;
  try {
    for (size_t i = 0; i < list.size(); ++i) {
      SamplingParams p = params[i];
      p.output_kind = RequestOutputKind::kFinalOnly;
      std::string id = std::to_string(next_request_id_++);
      engine_->add_request(id, list[i], p, priority.empty() ? 0 : priority[i]);
      ids.push_back(id);
    }
  } catch (...) {
    engine_->abort_request(ids);  // nothing half-added stays in the engine
    throw;
  }
  ProgressBar bar(static_cast<int64_t>(list.size()), use_tqdm);
  std::vector<RequestOutput> outputs;
  int64_t in_tokens = 0, out_tokens = 0;
  while (engine_->has_unfinished_requests()) {
    for (RequestOutput& out : engine_->step()) {
      if (!out.finished) continue;
      in_tokens += static_cast<int64_t>(out.prompt_token_ids.size());
      for (const CompletionOutput& c : out.outputs) out_tokens += static_cast<int64_t>(c.token_ids.size());
      outputs.push_back(std::move(out));
      bar.update(static_cast<int64_t>(outputs.size()), in_tokens, out_tokens);
    }
  }
  bar.close();
  std::sort(outputs.begin(), outputs.end(), [](const RequestOutput& a, const RequestOutput& b) {
    return std::stoll(a.request_id) < std::stoll(b.request_id);
  });
  return outputs;
}

}  // namespace cvllm
