// The chat-template API (src/chat/chat_template.h) against its references: vLLM's content-format
// detection and message parsing, and transformers' apply_chat_template (None-valued keys dropped,
// reasoning aliases, special tokens and kwargs, continue_final_message and its errors), all from
// tests/golden/data/chat/chat_api_cases.json (scripts/gen_chat_template_fixtures.py); then
// load_chat_template's rules and strftime_now pinning.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/chat_template.h"
#include "util/error.h"

namespace {

using ojson = nlohmann::ordered_json;

ojson api_cases() {
  std::ifstream in(std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/chat/chat_api_cases.json");
  if (!in) throw std::runtime_error("missing chat_api_cases.json");
  return ojson::parse(in);
}

TEST(ChatTemplateApi, DetectsContentFormatLikeVllm) {
  ojson cases = api_cases()["content_format"];
  ASSERT_FALSE(cases.empty());
  for (const ojson& c : cases) {
    SCOPED_TRACE(c["template"].get<std::string>());
    EXPECT_EQ(cvllm::detect_content_format(c["template"].get<std::string>()),
              c["format"].get<std::string>());
  }
}

TEST(ChatTemplateApi, NormalizesMessagesLikeVllm) {
  for (const ojson& c : api_cases()["normalize"]) {
    std::string format = c["format"].get<std::string>();
    SCOPED_TRACE(format);
    ojson got = cvllm::normalize_messages(c["openai_messages"], format, "");
    ASSERT_EQ(got.size(), c["messages"].size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], c["messages"][i]) << "message " << i;
  }
}

TEST(ChatTemplateApi, RejectsMediaAndUnknownParts) {
  ojson image = ojson::parse(
      R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])");
  EXPECT_THROW(cvllm::normalize_messages(image, "string", ""), cvllm::ValueError);
  ojson unknown = ojson::parse(R"([{"role": "user", "content": [{"type": "hologram"}]}])");
  EXPECT_THROW(cvllm::normalize_messages(unknown, "openai", ""), cvllm::ValueError);
  ojson untyped = ojson::parse(R"([{"role": "user", "content": [{"text": "no type"}]}])");
  EXPECT_THROW(cvllm::normalize_messages(untyped, "string", ""), cvllm::ValueError);
  EXPECT_THROW(cvllm::normalize_messages(ojson::array(), "markdown", ""), cvllm::ValueError);
}

TEST(ChatTemplateApi, AppliesLikeTransformers) {
  ojson fixture = api_cases();
  for (const ojson& c : fixture["apply"]) {
    SCOPED_TRACE(c["template"].get<std::string>() + " with " + c["messages"].dump());
    cvllm::ChatTemplateInputs inputs;
    inputs.messages = c["messages"];
    inputs.tools = c["tools"];
    inputs.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    inputs.continue_final_message = c["continue_final_message"].get<bool>();
    inputs.special_tokens = c["special_tokens"].get<std::map<std::string, std::string>>();
    inputs.kwargs = c["kwargs"];
    inputs.now = fixture["now"].get<std::string>();
    std::string template_text = c["template"].get<std::string>();
    if (c.contains("expected")) {
      EXPECT_EQ(cvllm::apply_chat_template(template_text, inputs),
                c["expected"].get<std::string>());
    } else {
      try {
        cvllm::apply_chat_template(template_text, inputs);
        ADD_FAILURE() << "expected: " << c["error"]["message"].get<std::string>();
      } catch (const cvllm::ValueError& e) {
        // The "does not appear" message ends with the rendered chat, which carries the marker tag.
        std::string expected = c["error"]["message"].get<std::string>();
        expected = expected.substr(0, expected.find("Final message to continue"));
        EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      }
    }
  }
}

TEST(ChatTemplateApi, AcceptsPlainJson) {
  // nlohmann::json (sorted keys) converts implicitly.
  nlohmann::json messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  cvllm::ChatTemplateInputs inputs;
  inputs.messages = messages;
  EXPECT_EQ(cvllm::apply_chat_template("{{ messages[0].content }}", inputs), "hi");
}

TEST(ChatTemplateApi, StrftimeNowCanBePinned) {
  cvllm::ChatTemplateInputs inputs;
  inputs.messages = ojson::parse(R"([{"role": "user", "content": "x"}])");
  const std::string tmpl = "{{ strftime_now('%Y-%m-%d %H:%M') }}";
  inputs.now = "2031-02-03 04:05";
  EXPECT_EQ(cvllm::apply_chat_template(tmpl, inputs), "2031-02-03 04:05");
  inputs.now.clear();
  setenv("CVLLM_STRFTIME_NOW", "2030-12-31", 1);
  EXPECT_EQ(cvllm::apply_chat_template(tmpl, inputs), "2030-12-31 00:00");
  unsetenv("CVLLM_STRFTIME_NOW");
  inputs.now = "not a date";
  EXPECT_THROW(cvllm::apply_chat_template(tmpl, inputs), cvllm::ValueError);
}

TEST(ChatTemplateApi, LoadChatTemplateFollowsVllmRules) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("cvllm_chat_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path file = dir / "t.jinja";
  std::ofstream(file, std::ios::binary) << "{{ 'from file' }}\r\nline2\n";
  // A readable file: its contents, newlines as Python's text mode reads them.
  EXPECT_EQ(cvllm::load_chat_template(file.string()), "{{ 'from file' }}\nline2\n");
  // Text with template characters that is not a file: the template itself.
  EXPECT_EQ(cvllm::load_chat_template("{{ messages }}"), "{{ messages }}");
  EXPECT_EQ(cvllm::load_chat_template("no braces\nbut a newline"), "no braces\nbut a newline");
  // Path-like strings that cannot be opened (missing file, a directory): ValueError.
  try {
    cvllm::load_chat_template((dir / "missing.jinja").string());
    ADD_FAILURE() << "expected ValueError";
  } catch (const cvllm::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("looks like a file path, but it failed to be opened"),
              std::string::npos);
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos);
  }
  EXPECT_THROW(cvllm::load_chat_template(dir.string()), cvllm::ValueError);
  EXPECT_THROW(cvllm::load_chat_template(""), cvllm::ValueError);
  fs::remove_all(dir);
}

}  // namespace
