// Chat-template conformance: every real chat template (../shared/testdata/chat-templates/, the
// templates of the models we run in tests/golden/data/chat/templates/, and the example templates
// we ship in examples/) renders a set of
// conversations byte-identically to Python jinja2 in transformers' environment, and turns
// OpenAI-style requests into template input as vLLM does. Fixtures:
// tests/golden/data/chat/conformance/<template>.json from scripts/gen_chat_template_fixtures.py.
// One test per template.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "util/error.h"

namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

const std::string kDataDir = std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/chat/";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(kDataDir + "conformance")) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string template_text(const std::string& source) {
  std::string name = source.substr(source.find(':') + 1);
  if (source.rfind("shared:", 0) == 0) {
    return cvllm::load_chat_template(std::string(CVLLM_SOURCE_DIR) +
                                     "/../shared/testdata/chat-templates/" + name);
  }
  if (source.rfind("examples:", 0) == 0)
    return cvllm::load_chat_template(std::string(CVLLM_SOURCE_DIR) + "/examples/" + name);
  return cvllm::load_chat_template(kDataDir + "templates/" + name);
}

std::string describe(const ojson& c) {
  std::string d =
      c["conversation"].get<std::string>() +
      " add_generation_prompt=" + (c["add_generation_prompt"].get<bool>() ? "true" : "false") +
      " continue_final_message=" + (c["continue_final_message"].get<bool>() ? "true" : "false");
  if (c.contains("kwargs")) d += " kwargs=" + c["kwargs"].dump();
  return d;
}

class ChatTemplateConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateConformance, RendersLikeTransformers) {
  ojson fixture = ojson::parse(read_file(kDataDir + "conformance/" + GetParam() + ".json"));
  std::string text = template_text(fixture["template"].get<std::string>());
  cvllm::ChatTemplate tmpl(text);

  // vLLM's "auto" content format and its message parsing.
  EXPECT_EQ(tmpl.resolve_content_format("auto"), fixture["content_format"].get<std::string>());
  // The variables a template reads cover jinja2.meta's undeclared variables (vLLM filters
  // chat_template_kwargs with them).
  std::set<std::string> names = tmpl.jinja_template().referenced_names();
  for (const ojson& name : fixture["undeclared_variables"]) {
    EXPECT_TRUE(names.count(name.get<std::string>())) << name;
  }
  for (const auto& [name, conv] : fixture["conversations"].items()) {
    SCOPED_TRACE("conversation " + name);
    EXPECT_EQ(cvllm::normalize_messages(conv["openai_messages"], "auto", text), conv["messages"]);
  }

  int rendered = 0, raised = 0;
  for (const ojson& c : fixture["cases"]) {
    SCOPED_TRACE(describe(c));
    const ojson& conv = fixture["conversations"][c["conversation"].get<std::string>()];
    cvllm::ChatTemplateInputs inputs;
    inputs.messages = conv["messages"];
    inputs.tools = conv["tools"];
    inputs.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    inputs.continue_final_message = c["continue_final_message"].get<bool>();
    inputs.special_tokens = fixture["special_tokens"].get<std::map<std::string, std::string>>();
    if (c.contains("kwargs")) inputs.kwargs = c["kwargs"];
    inputs.now = fixture["now"].get<std::string>();
    if (c.contains("expected")) {
      try {
        EXPECT_EQ(tmpl.apply(inputs), c["expected"].get<std::string>());
      } catch (const std::exception& e) {
        ADD_FAILURE() << "unexpected error: " << e.what();
      }
      ++rendered;
      continue;
    }
    const ojson& error = c["error"];
    try {
      std::string out = tmpl.apply(inputs);
      ADD_FAILURE() << "expected " << error["type"].get<std::string>() << ": "
                    << error["message"].get<std::string>() << ", got output:\n"
                    << out;
    } catch (const cvllm::ValueError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(error["message"].get<std::string>()), std::string::npos) << what;
      if (!error["line"].is_null()) {
        EXPECT_EQ(
            what.rfind("chat template line " + std::to_string(error["line"].get<int>()) + ":", 0),
            0u)
            << what;
      }
    }
    ++raised;
  }
  EXPECT_GT(rendered, 0);
  RecordProperty("rendered", rendered);
  RecordProperty("raised", raised);
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateConformance, ::testing::ValuesIn(fixture_names()),
                         param_name);

}  // namespace
