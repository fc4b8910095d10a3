// `cvllm render`: prints exactly the prompt text a chat template makes of a conversation (no
// trailing newline added) — how one debugs a template. Needs only the vocabulary: it works on
// vocabulary-only GGUF files too (bos/eos come from the model).
//   cvllm render --model M.gguf --messages chat.json [--chat-template FILE] [--tools tools.json]
//                [--add-generation-prompt true|false] [--continue-final-message]
//                [--chat-template-kwargs '{"enable_thinking": false}'] [--token-ids]
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "cli/commands.h"
#include "engine/chat_renderer.h"
#include "loader/gguf.h"
#include "loader/model_resolver.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm::cli {
namespace {

nlohmann::ordered_json read_json(const std::string& source, const char* what, bool is_file) {
  std::string text = source;
  if (is_file) {
    std::ifstream in(source);
    if (!in) throw ValueError(cat("cannot read ", what, " file ", source));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, false);
  if (j.is_discarded()) throw ValueError(cat(what, " is not valid JSON"));
  return j;
}

bool parse_bool(const std::string& v, const char* flag) {
  if (v == "true" || v == "True" || v == "1") return true;
  if (v == "false" || v == "False" || v == "0") return false;
  throw ValueError(cat("--", flag, " expects true or false, got '", v, "'"));
}

}  // namespace

int run_render(int argc, char** argv) {
  Flags flags(argc, argv, 2,
              {"model", "messages", "chat-template", "tools", "add-generation-prompt",
               "chat-template-kwargs", "chat-template-content-format"},
              {"continue-final-message", "token-ids"});
  std::string model = flags.get("model").value_or(flags.positional().empty() ? "" : flags.positional()[0]);
  ResolvedModel resolved = resolve_model(model);
  if (resolved.format != ModelFormat::kGguf) throw ValueError(cat(resolved.path, ": render needs a .gguf file"));
  std::shared_ptr<GgufFile> file = GgufFile::open(resolved.path);
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::from_gguf(*file);

  std::optional<std::string> messages_path = flags.get("messages");
  nlohmann::ordered_json messages = messages_path
      ? read_json(*messages_path, "--messages", true)
      : read_json(std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()), "messages", false);
  ChatRenderOptions options;
  if (auto t = flags.get("chat-template")) options.chat_template = load_chat_template(*t);
  if (auto t = flags.get("tools")) options.tools = read_json(*t, "--tools", true);
  if (auto k = flags.get("chat-template-kwargs")) options.chat_template_kwargs = read_json(*k, "--chat-template-kwargs", false);
  if (auto f = flags.get("chat-template-content-format")) options.content_format = *f;
  options.continue_final_message = flags.get_bool("continue-final-message");
  // vLLM's default: a generation prompt, unless the last message is to be continued.
  options.add_generation_prompt = flags.get("add-generation-prompt")
      ? parse_bool(*flags.get("add-generation-prompt"), "add-generation-prompt")
      : !options.continue_final_message;
  RenderedChat rendered = render_chat(*tokenizer, file->get_string("tokenizer.chat_template"), messages, options);
  if (flags.get_bool("token-ids")) {
    for (size_t i = 0; i < rendered.token_ids.size(); ++i) std::cout << (i ? " " : "") << rendered.token_ids[i];
    std::cout << std::endl;
  } else {
    std::cout << rendered.prompt_text << std::flush;
  }
  return 0;
}

}  // namespace cvllm::cli
