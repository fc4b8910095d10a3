#include "engine/chat_renderer.h"

#include "chat/chat_template.h"
#include "engine/llm_engine.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm {

std::map<std::string, std::string> special_tokens_of(const Tokenizer& tok) {
  std::map<std::string, std::string> out;
  auto put = [&](const char* name, std::optional<int32_t> id) {
    if (id && *id >= 0 && *id < tok.vocab_size()) out[name] = tok.id_to_piece(*id);
  };
  put("bos_token", tok.bos_token_id());
  put("eos_token", tok.eos_token_id());
  put("unk_token", tok.unk_token_id());
  put("pad_token", tok.pad_token_id());
  return out;
}

RenderedChat render_chat(const LLMEngine& engine, const nlohmann::ordered_json& messages,
                         const ChatRenderOptions& options) {
  if (engine.tokenizer() == nullptr) throw ValueError("chat needs a tokenizer (skip_tokenizer_init is set)");
  return render_chat(*engine.tokenizer(), engine.chat_template(), messages, options);
}

RenderedChat render_chat(const Tokenizer& tokenizer, const std::optional<std::string>& model_template,
                         const nlohmann::ordered_json& messages, const ChatRenderOptions& options) {
  const Tokenizer* tok = &tokenizer;
  if (options.add_generation_prompt && options.continue_final_message) {
    throw ValueError("Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
  }
  std::string chat_template;
  if (options.chat_template) {
    chat_template = *options.chat_template;
  } else if (model_template) {
    chat_template = *model_template;
  } else {
    throw ValueError(
        "As of transformers v4.44, default chat template is no longer allowed, so you must "
        "provide a chat template if the tokenizer does not define one.");
  }
  RenderedChat out;
  out.conversation = normalize_messages(messages, options.content_format, chat_template);
  ChatTemplateInputs inputs;
  inputs.messages = out.conversation;
  inputs.tools = options.tools;
  inputs.add_generation_prompt = options.add_generation_prompt;
  inputs.continue_final_message = options.continue_final_message;
  inputs.special_tokens = special_tokens_of(*tok);
  inputs.kwargs = options.chat_template_kwargs;
  out.prompt_text = apply_chat_template(chat_template, inputs);
  out.token_ids = tok->encode(out.prompt_text, options.add_special_tokens);
  return out;
}

}  // namespace cvllm
