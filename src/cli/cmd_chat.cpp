// `cvllm chat`: an interactive chat in the terminal. Keeps the conversation, renders it with the
// model's chat template each turn, and streams the answer as it is generated.
//   cvllm chat [--model M] [--system-prompt "..."] [--chat-template FILE] [--temperature T]
// Commands: /reset forgets the conversation, /exit (or end of input) quits.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/chat_template.h"
#include "cli/commands.h"
#include "engine/chat_renderer.h"
#include "engine/llm_engine.h"
#include "util/error.h"

namespace cvllm::cli {

int run_chat(int argc, char** argv) {
  std::set<std::string> values = engine_value_flags();
  values.insert({"system-prompt", "chat-template", "temperature", "top-p", "top-k", "min-p", "max-tokens"});
  Flags flags(argc, argv, 2, values, engine_bool_flags());
  LLMEngine engine(engine_args_from_flags(flags));
  SamplingParams params = engine.default_sampling_params();
  params.max_tokens = 512;  // a bound on one answer; the model normally ends its turn first
  if (auto v = flags.get_double("temperature")) params.temperature = *v;
  if (auto v = flags.get_double("top-p")) params.top_p = *v;
  if (auto v = flags.get_int("top-k")) params.top_k = static_cast<int>(*v);
  if (auto v = flags.get_double("min-p")) params.min_p = *v;
  if (auto v = flags.get_int("max-tokens")) params.max_tokens = static_cast<int>(*v);
  params.output_kind = RequestOutputKind::kDelta;
  params.validate();
  ChatRenderOptions options;
  if (auto t = flags.get("chat-template")) options.chat_template = load_chat_template(*t);

  auto fresh_history = [&] {
    nlohmann::ordered_json h = nlohmann::ordered_json::array();
    if (auto s = flags.get("system-prompt")) h.push_back({{"role", "system"}, {"content", *s}});
    return h;
  };
  nlohmann::ordered_json history = fresh_history();
  std::cerr << "cvllm chat: /reset clears the conversation, /exit quits.\n";
  int64_t turn = 0;
  std::string line;
  while (true) {
    std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      history = fresh_history();
      std::cout << "(conversation cleared)\n";
      continue;
    }
    if (line.empty()) continue;
    history.push_back({{"role", "user"}, {"content", line}});
    RenderedChat rendered;
    try {
      rendered = render_chat(engine, history, options);
      engine.add_request(std::to_string(turn++), Prompt(rendered.token_ids), params);
    } catch (const ValueError& e) {
      history.erase(history.end() - 1);
      std::cout << "error: " << e.what() << "\n";
      continue;
    }
    std::string answer;
    while (engine.has_unfinished_requests()) {
      for (const RequestOutput& out : engine.step()) {
        const std::string& piece = out.outputs[0].text;
        answer += piece;
        std::cout << piece << std::flush;
      }
    }
    std::cout << "\n";
    history.push_back({{"role", "assistant"}, {"content", answer}});
  }
  return 0;
}

}  // namespace cvllm::cli
