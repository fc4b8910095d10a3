// libFuzzer target for the chat-template engine (src/chat/): arbitrary template text is parsed and
// rendered against a fixed conversation (system/user/assistant turns, a tool call and result,
// unicode, tools, special tokens), with tight limits so a runaway template stops quickly.
//
// Input: byte 0 picks the mode, the rest is the template text.
// - bit 0: render through cvllm::ChatTemplate::apply (transformers' semantics) instead of
//   jinja::Template::render with the raw variables;
// - bit 1: continue_final_message (apply mode; the conversation then ends with an assistant turn);
// - bit 2: add_generation_prompt.
// Invariants: parsing and rendering either succeed or throw cvllm::ValueError whose message names
// the template line; nothing else escapes; output stays within the output limit; content-format
// detection never throws. Any broken invariant aborts. Seed corpus: tests/fuzz/corpus/jinja/.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "chat/chat_template.h"
#include "chat/jinja.h"
#include "util/error.h"

namespace {

using ojson = nlohmann::ordered_json;

constexpr size_t kMaxOutput = 1 << 20;

cvllm::jinja::TemplateOptions fuzz_options() {
  cvllm::jinja::TemplateOptions options;
  options.limits.max_recursion_depth = 100;
  options.limits.max_iterations = 20000;
  options.limits.max_output_bytes = kMaxOutput;
  options.max_nesting_depth = 100;
  return options;
}

const ojson& conversation(bool ends_with_assistant) {
  static const ojson with_tools = ojson::parse(R"([
    {"role": "system", "content": "You are helpful. ✓"},
    {"role": "user", "content": "Weather in Paris? 🌍"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21.5}"},
    {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "text", "text": "!"}]}
  ])");
  static const ojson ending = [] {
    ojson c = with_tools;
    c.push_back({{"role", "assistant"}, {"content", "It is sunny, "}, {"reasoning", "think"}});
    return c;
  }();
  return ends_with_assistant ? ending : with_tools;
}

const ojson& tools() {
  static const ojson t = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather",
    "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"},
    "days": {"type": "array", "items": {"type": "integer"}}}, "required": ["city"]}}}])");
  return t;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

void check_error(const cvllm::ValueError& e) {
  std::string what = e.what();
  check(what.rfind("chat template line ", 0) == 0 ||
            what.find("continue_final_message") != std::string::npos ||
            what.find("chat_template_kwargs") != std::string::npos,
        "error message without the template line");
}

void render_raw(const cvllm::jinja::Template& tmpl, bool add_generation_prompt) {
  cvllm::jinja::Dict vars;
  vars.set(cvllm::jinja::Value("messages"), cvllm::jinja::from_json(conversation(false)));
  vars.set(cvllm::jinja::Value("tools"), cvllm::jinja::from_json(tools()));
  vars.set(cvllm::jinja::Value("add_generation_prompt"),
           cvllm::jinja::Value(add_generation_prompt));
  vars.set(cvllm::jinja::Value("bos_token"), cvllm::jinja::Value("<s>"));
  vars.set(
      cvllm::jinja::Value("strftime_now"),
      cvllm::jinja::make_strftime_now(cvllm::jinja::NaiveDateTime::parse("2024-09-05 13:07:42")));
  std::string out = tmpl.render(cvllm::jinja::Value::dict(std::move(vars)));
  check(out.size() <= kMaxOutput, "output over the limit");
}

void render_chat(const std::string& text, bool continue_final, bool add_generation_prompt) {
  cvllm::ChatTemplate tmpl(text, fuzz_options());
  cvllm::ChatTemplateInputs inputs;
  inputs.messages = cvllm::normalize_messages(conversation(continue_final),
                                              tmpl.resolve_content_format("auto"), text);
  inputs.tools = tools();
  inputs.add_generation_prompt = add_generation_prompt && !continue_final;
  inputs.continue_final_message = continue_final;
  inputs.special_tokens = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  inputs.kwargs = {{"enable_thinking", true}};
  inputs.now = "2024-09-05 13:07:42";
  std::string out = tmpl.apply(inputs);
  check(out.size() <= kMaxOutput, "output over the limit");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (flags & 1) {
      render_chat(text, flags & 2, flags & 4);
    } else {
      cvllm::jinja::Template tmpl = cvllm::jinja::Template::parse(text, fuzz_options());
      tmpl.iterates_message_content();
      render_raw(tmpl, flags & 4);
    }
  } catch (const cvllm::ValueError& e) {
    check_error(e);
  }
  return 0;
}
