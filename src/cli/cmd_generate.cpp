// `cvllm generate`: offline generation from the command line, the quickest way to try a model.
//   cvllm generate --prompt "Hello, my name is" --temperature 0 --max-tokens 32
//   cvllm generate --chat --prompt "What is the capital of France?"   (one user message)
//   cvllm generate --beam-width 4 --prompt "..."
// Prints each completion's text (or, with --output-json, vLLM's RequestOutput fields as JSON).
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cvllm/cvllm.h"

namespace cvllm::cli {
namespace {

nlohmann::json to_json(const RequestOutput& out) {
  nlohmann::json j;
  j["request_id"] = out.request_id;
  j["prompt"] = out.prompt ? nlohmann::json(*out.prompt) : nlohmann::json(nullptr);
  j["prompt_token_ids"] = out.prompt_token_ids;
  j["finished"] = out.finished;
  for (const CompletionOutput& c : out.outputs) {
    nlohmann::json o;
    o["index"] = c.index;
    o["text"] = c.text;
    o["token_ids"] = c.token_ids;
    o["finish_reason"] = c.finish_reason ? nlohmann::json(*c.finish_reason) : nlohmann::json(nullptr);
    if (auto* s = std::get_if<std::string>(&c.stop_reason)) o["stop_reason"] = *s;
    else if (auto* t = std::get_if<int32_t>(&c.stop_reason)) o["stop_reason"] = *t;
    else o["stop_reason"] = nullptr;
    o["cumulative_logprob"] = c.cumulative_logprob ? nlohmann::json(*c.cumulative_logprob) : nlohmann::json(nullptr);
    j["outputs"].push_back(o);
  }
  return j;
}

}  // namespace

int run_generate(int argc, char** argv) {
  std::set<std::string> values = engine_value_flags();
  for (const char* f : {"prompt", "temperature", "top-p", "top-k", "min-p", "max-tokens", "min-tokens",
                        "stop", "n", "presence-penalty", "frequency-penalty", "repetition-penalty",
                        "logprobs", "beam-width", "length-penalty", "chat-template"}) {
    values.insert(f);
  }
  std::set<std::string> bools = engine_bool_flags();
  bools.insert({"ignore-eos", "output-json", "include-stop-str-in-output", "chat"});
  Flags flags(argc, argv, 2, values, bools);

  EngineArgs args = engine_args_from_flags(flags);
  LLM llm(args);
  // The model's generation defaults, then what the flags say.
  SamplingParams params = llm.get_default_sampling_params();
  if (auto v = flags.get_double("temperature")) params.temperature = *v;
  if (auto v = flags.get_double("top-p")) params.top_p = *v;
  if (auto v = flags.get_int("top-k")) params.top_k = static_cast<int>(*v);
  if (auto v = flags.get_double("min-p")) params.min_p = *v;
  if (auto v = flags.get_int("seed")) params.seed = *v;
  if (auto v = flags.get_int("max-tokens")) params.max_tokens = static_cast<int>(*v);
  if (auto v = flags.get_int("min-tokens")) params.min_tokens = static_cast<int>(*v);
  if (auto v = flags.get_int("n")) params.n = static_cast<int>(*v);
  if (auto v = flags.get_double("presence-penalty")) params.presence_penalty = *v;
  if (auto v = flags.get_double("frequency-penalty")) params.frequency_penalty = *v;
  if (auto v = flags.get_double("repetition-penalty")) params.repetition_penalty = *v;
  if (auto v = flags.get_int("logprobs")) params.logprobs = static_cast<int>(*v);
  params.stop = flags.get_all("stop");
  params.ignore_eos = flags.get_bool("ignore-eos");
  params.include_stop_str_in_output = flags.get_bool("include-stop-str-in-output");
  params.validate();

  std::vector<std::string> prompts = flags.get_all("prompt");
  if (prompts.empty()) {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    prompts.push_back(text);
  }
  std::vector<RequestOutput> outputs;
  if (auto width = flags.get_int("beam-width")) {
    // Beam search: --max-tokens (default 16) is the number of expansion steps.
    BeamSearchParams beam(static_cast<int>(*width), params.max_tokens.value_or(16));
    beam.ignore_eos = params.ignore_eos;
    beam.length_penalty = flags.get_double("length-penalty").value_or(1.0);
    beam.temperature = flags.get_double("temperature").value_or(0.0);
    outputs = llm.generate(prompts, beam, /*use_tqdm=*/false);
  } else if (flags.get_bool("chat")) {
    // Each prompt is one user message, rendered with the chat template.
    ChatOptions options;
    if (auto t = flags.get("chat-template")) options.chat_template = load_chat_template(*t);
    std::vector<Conversation> conversations;
    for (const std::string& p : prompts) conversations.push_back({{"user", p}});
    outputs = llm.chat(conversations, params, options, /*use_tqdm=*/false);
  } else {
    outputs = llm.generate(prompts, params, /*use_tqdm=*/false);
  }
  if (flags.get_bool("output-json")) {
    nlohmann::json all = nlohmann::json::array();
    for (const RequestOutput& out : outputs) all.push_back(to_json(out));
    std::cout << all.dump(2) << std::endl;
    return 0;
  }
  for (const RequestOutput& out : outputs) {
    for (const CompletionOutput& c : out.outputs) std::cout << c.text << std::endl;
  }
  return 0;
}

}  // namespace cvllm::cli
