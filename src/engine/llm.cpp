#include "cvllm/llm.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <span>
#include <utility>
#include <string>

#include "engine/chat_renderer.h"
#include "engine/llm_engine.h"
#include "engine/progress_bar.h"
#include "tokenizer/tokenizer.h"
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

namespace {

// Runs every prompt's beam search in one engine and returns the results in input order.
std::vector<BeamSearchResult> run_beam_searches(LLMEngine& engine, const std::vector<Prompt>& prompts,
                                                const BeamSearchParams& params, bool use_tqdm,
                                                int64_t& next_request_id) {
  params.validate();
  std::vector<std::string> ids;
  try {
    for (const Prompt& prompt : prompts) {
      std::string id = std::to_string(next_request_id++);
      engine.add_beam_search_request(id, prompt, params);
      ids.push_back(id);
    }
  } catch (...) {
    engine.abort_request(ids);
    throw;
  }
  ProgressBar bar(static_cast<int64_t>(prompts.size()), use_tqdm);
  std::vector<BeamSearchResult> results;
  while (engine.has_unfinished_requests()) {
    engine.step();
    for (BeamSearchResult& r : engine.take_finished_beam_searches()) results.push_back(std::move(r));
    bar.update(static_cast<int64_t>(results.size()), 0, 0);
  }
  for (BeamSearchResult& r : engine.take_finished_beam_searches()) results.push_back(std::move(r));
  bar.close();
  std::sort(results.begin(), results.end(), [](const BeamSearchResult& a, const BeamSearchResult& b) {
    return std::stoll(a.request_id) < std::stoll(b.request_id);
  });
  return results;
}

std::string decode_or_empty(const LLMEngine& engine, std::span<const int32_t> ids, bool skip_special) {
  return engine.tokenizer() ? engine.tokenizer()->decode(ids, skip_special) : std::string();
}

}  // namespace

std::vector<BeamSearchOutput> LLM::beam_search(const PromptList& prompts,
                                               const BeamSearchParams& params, bool use_tqdm) {
  std::vector<BeamSearchOutput> outputs;
  for (BeamSearchResult& r : run_beam_searches(*engine_, prompts.prompts(), params, use_tqdm, next_request_id_)) {
    BeamSearchOutput out;
    for (BeamSearchResult::Beam& b : r.beams) {
      BeamSearchSequence seq;
      seq.text = decode_or_empty(*engine_, b.tokens, /*skip_special=*/false);
      seq.tokens = std::move(b.tokens);
      seq.cum_logprob = b.cum_logprob;
      for (const TokenLogprobs& lp : b.logprobs) {
        PositionLogprobs pos = {{lp.sampled_token_id, Logprob{lp.sampled_logprob, lp.sampled_rank, std::nullopt}}};
        for (size_t i = 0; i < lp.top_ids.size(); ++i) {
          if (lp.top_ids[i] != lp.sampled_token_id) {
            pos.push_back({lp.top_ids[i], Logprob{lp.top_logprobs[i], static_cast<int>(i) + 1, std::nullopt}});
          }
        }
        seq.logprobs.push_back(std::move(pos));
      }
      out.sequences.push_back(std::move(seq));
    }
    outputs.push_back(std::move(out));
  }
  return outputs;
}

std::vector<RequestOutput> LLM::generate(const PromptList& prompts, const BeamSearchParams& params,
                                         bool use_tqdm) {
  std::vector<RequestOutput> outputs;
  for (BeamSearchResult& r : run_beam_searches(*engine_, prompts.prompts(), params, use_tqdm, next_request_id_)) {
    outputs.push_back(beam_search_request_output(std::move(r), engine_->tokenizer(),
                                                 params.include_stop_str_in_output));
  }
  return outputs;
}

namespace {

nlohmann::ordered_json parse_json_option(const std::string& text, const char* what,
                                         nlohmann::ordered_json fallback) {
  if (text.empty()) return fallback;
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ValueError(cat(what, " is not valid JSON"));
  return j;
}

ChatRenderOptions render_options(const ChatOptions& options) {
  ChatRenderOptions r;
  r.chat_template = options.chat_template;
  r.content_format = options.chat_template_content_format;
  r.add_generation_prompt = options.add_generation_prompt;
  r.continue_final_message = options.continue_final_message;
  r.tools = parse_json_option(options.tools_json, "tools_json", nullptr);
  r.chat_template_kwargs = parse_json_option(options.chat_template_kwargs_json,
                                             "chat_template_kwargs_json", nlohmann::ordered_json::object());
  return r;
}

nlohmann::ordered_json to_messages(const Conversation& conversation) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (const ChatMessage& m : conversation) messages.push_back({{"role", m.role}, {"content", m.content}});
  return messages;
}

}  // namespace

std::vector<RequestOutput> LLM::chat(const Conversation& conversation, const SamplingParams& params,
                                     const ChatOptions& options, bool use_tqdm) {
  return chat_many(std::vector<Conversation>{conversation}, params, options, use_tqdm);
}

std::vector<RequestOutput> LLM::chat(const Conversation& conversation) {
  return chat(conversation, get_default_sampling_params());
}

std::vector<RequestOutput> LLM::chat_many(const std::vector<Conversation>& conversations,
                                          const SamplingParams& params, const ChatOptions& options,
                                          bool use_tqdm) {
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (const Conversation& c : conversations) all.push_back(to_messages(c));
  return chat_json(all.dump(), params, options, use_tqdm);
}

std::vector<RequestOutput> LLM::chat_json(const std::string& messages_json, const SamplingParams& params,
                                          const ChatOptions& options, bool use_tqdm) {
  nlohmann::ordered_json parsed = parse_json_option(messages_json, "messages", nullptr);
  if (!parsed.is_array()) throw ValueError("messages must be a JSON array");
  // One conversation is an array of message objects; several are an array of such arrays.
  std::vector<nlohmann::ordered_json> conversations;
  if (!parsed.empty() && parsed[0].is_array()) {
    for (const auto& c : parsed) conversations.push_back(c);
  } else {
    conversations.push_back(parsed);
  }
  ChatRenderOptions render = render_options(options);
  std::vector<Prompt> prompts;
  std::vector<std::string> texts;
  for (const auto& c : conversations) {
    RenderedChat rendered = render_chat(*engine_, c, render);
    // Token ids as rendered (no special tokens added again); the text goes back in the outputs.
    prompts.emplace_back(std::move(rendered.token_ids));
    texts.push_back(std::move(rendered.prompt_text));
  }
  std::vector<RequestOutput> outputs = generate(prompts, params, use_tqdm);
  for (size_t i = 0; i < outputs.size() && i < texts.size(); ++i) outputs[i].prompt = texts[i];
  return outputs;
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
