#include "chat/chat_template.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>

#include "chat/jinja_pystr.h"
#include "util/error.h"

namespace cvllm {

namespace {

using ojson = nlohmann::ordered_json;
using jinja::Dict;
using jinja::Value;

constexpr const char* kContinueTag = "CONTINUE_FINAL_MESSAGE_TAG ";
constexpr const char* kReasoningFields[] = {"reasoning_content", "thinking", "reasoning"};

std::optional<jinja::NaiveDateTime> fixed_now(const std::string& now) {
  std::string text = now;
  if (text.empty()) {
    const char* env = std::getenv("CVLLM_STRFTIME_NOW");
    if (!env || !*env) return std::nullopt;
    text = env;
  }
  std::optional<jinja::NaiveDateTime> t = jinja::NaiveDateTime::parse(text);
  if (!t)
    throw ValueError(
        cat("invalid date for strftime_now: '", text, "' (expected YYYY-MM-DD[ HH:MM:SS])"));
  return t;
}

// transformers' _normalize_chat_messages (keys whose value is None are dropped) and
// _alias_reasoning_fields (reasoning copied to `thinking` first and `reasoning_content` last).
ojson prepare_messages(const ojson& messages) {
  if (!messages.is_array()) throw ValueError("messages must be a list of message objects");
  ojson out = ojson::array();
  for (const ojson& message : messages) {
    if (!message.is_object()) {
      throw ValueError(
          cat("Chat messages should be dicts, dataclasses or pydantic models, but got ",
              message.dump(), "."));
    }
    ojson kept = ojson::object();
    for (auto it = message.begin(); it != message.end(); ++it) {
      if (!it.value().is_null()) kept[it.key()] = it.value();
    }
    std::optional<ojson> reasoning;
    for (const char* field : kReasoningFields) {
      if (kept.contains(field)) {
        reasoning = kept[field];
        break;
      }
    }
    if (reasoning) {
      // {"thinking": reasoning, **message, "reasoning_content": reasoning}
      ojson aliased = ojson::object();
      aliased["thinking"] = *reasoning;
      for (auto it = kept.begin(); it != kept.end(); ++it) aliased[it.key()] = it.value();
      aliased["reasoning_content"] = *reasoning;
      kept = std::move(aliased);
    }
    out.push_back(std::move(kept));
  }
  return out;
}

// Appends the continuation tag to the final message's text, as transformers does before
// rendering. Returns the text that was there (to find it again in the output).
std::string tag_final_message(ojson& messages, const std::string& chat_template) {
  if (messages.empty())
    throw ValueError("continue_final_message is set but the conversation is empty!");
  ojson& last = messages.back();
  if (!last.contains("content")) {
    throw ValueError(
        "continue_final_message is set but the final message has no \"content\" to continue!");
  }
  if (chat_template.find("content") == std::string::npos) {
    throw ValueError(
        "continue_final_message is set to \"content\" but this is not an accepted field in the "
        "chat_template");
  }
  ojson& content = last["content"];
  if (content.is_array()) {
    for (auto it = content.rbegin(); it != content.rend(); ++it) {
      if (it->is_object() && it->contains("text")) {
        ojson& text = (*it)["text"];
        if (!text.is_string())
          throw ValueError("continue_final_message: the final text block is not a string");
        std::string original = text.get<std::string>();
        text = original + kContinueTag;
        return original;
      }
    }
    throw ValueError(
        "continue_final_message is set but we could not find any text to continue in the final "
        "message!");
  }
  if (!content.is_string()) {
    throw ValueError(cat("can only concatenate str (not \"", content.type_name(), "\") to str"));
  }
  std::string original = content.get<std::string>();
  content = original + kContinueTag;
  return original;
}

std::string cut_after_final_message(const std::string& rendered, const std::string& final_message) {
  std::string stripped = jinja::py::strip(final_message, std::nullopt, true, true);
  std::string tag = jinja::py::strip(kContinueTag, std::nullopt, true, true);
  if (rendered.find(stripped) == std::string::npos || rendered.find(tag) == std::string::npos) {
    throw ValueError(
        cat("continue_final_message is set but the final message does not appear in the chat after "
            "applying the chat template! This can happen if the chat template deletes portions of "
            "the final message. Please verify the chat template and final message in your chat to "
            "ensure they are compatible.Final message to continue: ",
            stripped, "\nRendered chat:\n", rendered));
  }
  size_t tag_loc = rendered.rfind(tag);
  if (rendered.compare(tag_loc, std::strlen(kContinueTag), kContinueTag) == 0)
    return rendered.substr(0, tag_loc);
  // The template trimmed the space after the tag: the message's trailing spacing is gone too.
  return jinja::py::strip(rendered.substr(0, tag_loc), std::nullopt, false, true);
}

// ---- vLLM message parsing

const char* const kTextPartTypes[] = {"text", "input_text", "output_text", "refusal", "thinking"};
const char* const kMediaPartTypes[] = {"image_url",    "input_image",   "image_embeds",
                                       "audio_embeds", "prompt_embeds", "image_pil",
                                       "audio_url",    "input_audio",   "video_url"};
const char* const kDirectMediaKeys[] = {"image_url",    "image_pil",     "image_embeds",
                                        "audio_embeds", "prompt_embeds", "audio_url",
                                        "input_audio",  "video_url"};

bool one_of(const std::string& s, const char* const* begin, const char* const* end) {
  for (auto it = begin; it != end; ++it) {
    if (s == *it) return true;
  }
  return false;
}

// One content part -> text (nullopt: skipped), or a tool reference.
struct ParsedPart {
  std::string type;  // "text" or "tool_reference"
  std::string text;
};

std::optional<ParsedPart> parse_part(const ojson& part) {
  if (part.is_string()) return ParsedPart{"text", part.get<std::string>()};
  if (!part.is_object()) throw ValueError("Chat content parts must be strings or objects.");
  ojson type = part.contains("type") ? part["type"] : ojson(nullptr);
  bool has_uuid = part.contains("uuid") && !part["uuid"].is_null();
  if (type.is_null() || has_uuid) {
    for (const char* key : kDirectMediaKeys) {
      if (part.contains(key)) {
        throw ValueError(
            cat("Unsupported chat content part '", key, "': cvllm serves text-only models"));
      }
    }
    if (part.contains("tool_reference")) {
      const ojson& name = part["tool_reference"];
      return ParsedPart{"tool_reference", name.is_string() ? name.get<std::string>() : name.dump()};
    }
    if (type.is_null()) throw ValueError("Missing 'type' field in multimodal part.");
  }
  if (!type.is_string()) throw ValueError("Invalid 'type' field in multimodal part.");
  std::string t = type.get<std::string>();
  if (one_of(t, std::begin(kTextPartTypes), std::end(kTextPartTypes))) {
    const char* field = t == "refusal" ? "refusal" : t == "thinking" ? "thinking" : "text";
    if (!part.contains(field) || part[field].is_null()) return std::nullopt;  // vLLM skips these
    if (!part[field].is_string())
      throw ValueError(cat("content part '", t, "' must hold a string"));
    return ParsedPart{"text", part[field].get<std::string>()};
  }
  if (t == "tool_reference") {
    const ojson& name = part.contains("name") ? part["name"] : ojson(nullptr);
    return ParsedPart{"tool_reference", name.is_string() ? name.get<std::string>() : ""};
  }
  if (one_of(t, std::begin(kMediaPartTypes), std::end(kMediaPartTypes))) {
    throw ValueError(
        cat("Unsupported chat content part type: '", t, "': cvllm serves text-only models"));
  }
  throw ValueError(
      cat("Unsupported chat content part type: '", t,
          "'. Supported types: input_text, output_text, refusal, text, thinking, tool_reference."));
}

ojson parse_content(const ojson& content, bool openai_format) {
  std::vector<ParsedPart> parts;
  if (content.is_string()) {
    parts.push_back({"text", content.get<std::string>()});
  } else if (content.is_array()) {
    for (const ojson& part : content) {
      if (std::optional<ParsedPart> p = parse_part(part)) parts.push_back(std::move(*p));
    }
  } else if (!content.is_null()) {
    throw ValueError("message content must be a string, a list of content parts or null");
  }
  if (openai_format) {
    ojson list = ojson::array();
    for (const ParsedPart& p : parts) {
      if (p.type == "text") {
        list.push_back({{"type", "text"}, {"text", p.text}});
      } else {
        list.push_back({{"type", "tool_reference"}, {"name", p.text}});
      }
    }
    return list;
  }
  std::string joined;
  for (size_t i = 0; i < parts.size(); ++i) joined += (i ? "\n" : "") + parts[i].text;
  return joined;
}

// vLLM's _postprocess_messages: tool-call arguments given as JSON strings become objects.
void parse_tool_call_arguments(ojson& message) {
  if (!message.contains("tool_calls") || !message["tool_calls"].is_array()) return;
  ojson& calls = message["tool_calls"];
  if (calls.empty()) {
    message.erase("tool_calls");
    return;
  }
  for (ojson& call : calls) {
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) {
      throw ValueError("each tool call needs a \"function\" object");
    }
    ojson& function = call["function"];
    ojson args = function.contains("arguments") ? function["arguments"] : ojson(nullptr);
    if (args.is_string()) {
      ojson parsed = ojson::parse(args.get<std::string>(), nullptr, false);
      function["arguments"] = parsed.is_discarded() ? ojson::object() : parsed;
    } else if (!args.is_object() && !args.is_array()) {
      function["arguments"] = ojson::object();
    }
  }
}

ojson normalize_message(const ojson& message, bool openai_format) {
  if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
    throw ValueError("each message needs a string \"role\"");
  }
  std::string role = message["role"].get<std::string>();
  ojson out = ojson::object();
  out["role"] = role;
  out["content"] = parse_content(message.contains("content") ? message["content"] : ojson(nullptr),
                                 openai_format);
  if (role == "assistant") {
    if (message.contains("tool_calls") && !message["tool_calls"].is_null())
      out["tool_calls"] = message["tool_calls"];
    if (message.contains("reasoning") && !message["reasoning"].is_null()) {
      out["reasoning"] = message["reasoning"];
      out["reasoning_content"] = message["reasoning"];
    }
  } else if (role == "tool") {
    if (message.contains("tool_call_id")) out["tool_call_id"] = message["tool_call_id"];
    ojson& content = out["content"];
    if (content.is_array()) {
      bool only_text = true;
      std::string texts;
      size_t n = 0;
      for (const ojson& item : content) {
        if (item.is_object() && item.value("type", "") != "text") only_text = false;
        if (item.is_object() && item.value("type", "") == "text") {
          texts += (n++ ? "\n" : "") + item.value("text", "");
        }
      }
      if (only_text) content = texts;
    }
  }
  if (message.contains("name") && message["name"].is_string()) out["name"] = message["name"];
  if (message.contains("task") && message["task"].is_string()) out["task"] = message["task"];
  if (role == "developer")
    out["tools"] = message.contains("tools") ? message["tools"] : ojson(nullptr);
  return out;
}

// A few recently used templates, parsed (vLLM and transformers both cache compiled templates).
std::shared_ptr<const ChatTemplate> cached_template(const std::string& text) {
  static std::mutex mu;
  static std::list<std::pair<std::string, std::shared_ptr<const ChatTemplate>>> lru;
  constexpr size_t kCapacity = 16;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = lru.begin(); it != lru.end(); ++it) {
    if (it->first == text) {
      lru.splice(lru.begin(), lru, it);
      return lru.front().second;
    }
  }
  auto parsed = std::make_shared<const ChatTemplate>(text);
  lru.emplace_front(text, parsed);
  if (lru.size() > kCapacity) lru.pop_back();
  return parsed;
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& text, jinja::TemplateOptions options)
    : template_(jinja::Template::parse(text, options)) {}

std::string ChatTemplate::apply(const ChatTemplateInputs& inputs) const {
  if (inputs.messages.is_array() && inputs.messages.empty()) {
    throw ValueError(
        "Cannot apply chat template to an empty conversation. Provide at least one message.");
  }
  if (inputs.continue_final_message && inputs.add_generation_prompt) {
    throw ValueError(
        "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
  }
  ojson messages = prepare_messages(inputs.messages);
  std::string final_message;
  if (inputs.continue_final_message) final_message = tag_final_message(messages, text());

  Dict vars;
  for (const auto& [name, token] : inputs.special_tokens) vars.set(Value(name), Value(token));
  if (!inputs.kwargs.is_null()) {
    if (!inputs.kwargs.is_object()) throw ValueError("chat_template_kwargs must be an object");
    for (auto it = inputs.kwargs.begin(); it != inputs.kwargs.end(); ++it) {
      if (it.key() == "messages" || it.key() == "tools" || it.key() == "documents" ||
          it.key() == "add_generation_prompt") {
        throw ValueError(cat("render() got multiple values for keyword argument '", it.key(), "'"));
      }
      vars.set(Value(it.key()), jinja::from_json(it.value()));
    }
  }
  vars.set(Value("messages"), jinja::from_json(messages));
  vars.set(Value("tools"), jinja::from_json(inputs.tools));
  vars.set(Value("documents"), jinja::from_json(inputs.documents));
  vars.set(Value("add_generation_prompt"), Value(inputs.add_generation_prompt));
  if (std::optional<jinja::NaiveDateTime> now = fixed_now(inputs.now)) {
    vars.set(Value("strftime_now"), jinja::make_strftime_now(now));
  }
  std::string rendered = template_.render(Value::dict(std::move(vars)));
  if (inputs.continue_final_message) rendered = cut_after_final_message(rendered, final_message);
  return rendered;
}

std::string ChatTemplate::resolve_content_format(const std::string& given) const {
  if (given == "string" || given == "openai") return given;
  if (given != "auto") {
    throw ValueError(cat("chat_template_content_format must be 'auto', 'string' or 'openai', got '",
                         given, "'"));
  }
  return template_.iterates_message_content() ? "openai" : "string";
}

std::string apply_chat_template(const std::string& chat_template,
                                const ChatTemplateInputs& inputs) {
  return cached_template(chat_template)->apply(inputs);
}

std::string detect_content_format(const std::string& chat_template) {
  try {
    return cached_template(chat_template)->resolve_content_format("auto");
  } catch (const ValueError&) {
    return "string";  // vLLM falls back to "string" when the template does not parse
  }
}

nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& openai_messages,
                                          const std::string& content_format,
                                          const std::string& chat_template) {
  std::string format = content_format;
  if (format == "auto") {
    format = detect_content_format(chat_template);
  } else if (format != "string" && format != "openai") {
    throw ValueError(cat("chat_template_content_format must be 'auto', 'string' or 'openai', got '",
                         format, "'"));
  }
  if (!openai_messages.is_array()) throw ValueError("messages must be a list");
  ojson out = ojson::array();
  for (const ojson& message : openai_messages)
    out.push_back(normalize_message(message, format == "openai"));
  for (ojson& message : out) {
    if (message["role"] == "assistant") parse_tool_call_arguments(message);
  }
  return out;
}

std::string load_chat_template(const std::string& path_or_text) {
  int err = ENOENT;
  if (FILE* f = std::fopen(path_or_text.c_str(), "rb")) {
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    bool failed = std::ferror(f);
    err = errno;  // EISDIR for a directory, which fopen accepts and fread refuses
    std::fclose(f);
    if (!failed) {
      // Python reads the file in text mode: universal newlines.
      std::string out;
      out.reserve(text.size());
      for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\r') {
          out += '\n';
          if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
        } else {
          out += text[i];
        }
      }
      return out;
    }
  } else {
    err = errno;
  }
  if (path_or_text.find_first_of("{}\n") == std::string::npos) {
    throw ValueError(cat("The supplied chat template (", path_or_text,
                         ") looks like a file path, but it failed to be opened. Tried: ",
                         path_or_text, ". Reason: [Errno ", err, "] ", std::strerror(err), ": ",
                         jinja::string_repr(path_or_text)));
  }
  return path_or_text;  // the template text itself
}

}  // namespace cvllm
