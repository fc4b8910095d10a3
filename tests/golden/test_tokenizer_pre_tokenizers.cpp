// Every `tokenizer.ggml.pre` name the tokenizer knows splits text into the same words as Hugging
// Face `tokenizers` running that model family's tokenizer.json pre_tokenizer pipeline
// (tests/golden/data/tokenizer_pre_tokenizers.json, made by scripts/gen_tokenizer_fixtures.py).
// Words are compared in byte-level spelling, as HF's pre_tokenize_str returns them. This is what
// checks PCRE2 against Oniguruma (\s, (?i:...), Unicode classes) for the families that have no
// vocabulary in shared/testdata (Llama 3, Qwen2, tekken, DeepSeek Coder/V3, BLOOM...).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "golden/tokenizer_fixture.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"

namespace cvllm {
namespace {

using namespace testing_fixture;

const json& fixture() {
  static const json f =
      load_fixture(CVLLM_SOURCE_DIR "/tests/golden/data/tokenizer_pre_tokenizers.json");
  return f;
}

struct Family {
  std::string name;
  size_t index;
};

std::vector<Family> names() {
  std::vector<Family> out;
  const json& f = fixture();
  if (!f.contains("families")) return out;
  for (size_t i = 0; i < f["families"].size(); ++i) {
    for (const json& name : f["families"][i]["names"]) out.push_back({name, i});
  }
  return out;
}

class PreTokenizerConformance : public ::testing::TestWithParam<Family> {};

TEST_P(PreTokenizerConformance, SplitsLikeHuggingFace) {
  std::unique_ptr<PreTokenizer> pre = PreTokenizer::for_pre_type(GetParam().name);
  ASSERT_NE(pre, nullptr) << "unknown pre-type " << GetParam().name;
  const json& texts = fixture()["texts"];
  const json& words = fixture()["families"][GetParam().index]["words"];
  ASSERT_EQ(texts.size(), words.size());
  std::vector<TextRange> ranges;
  int num_failures = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string text = texts[i];
    pre->split(text, ranges);
    std::vector<std::string> actual;
    for (const TextRange& r : ranges) {
      actual.push_back(byte_level::spell(std::string_view(text).substr(r.begin, r.end - r.begin)));
    }
    auto expected = words[i].get<std::vector<std::string>>();
    if (actual != expected) {
      ++num_failures;
      ADD_FAILURE() << "text " << json(text).dump() << "\n  expected " << json(expected).dump()
                    << "\n  actual   " << json(actual).dump();
    }
  }
  EXPECT_EQ(num_failures, 0);
}

std::string test_name(const ::testing::TestParamInfo<Family>& info) {
  std::string name = info.param.name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(TokenizerPre, PreTokenizerConformance, ::testing::ValuesIn(names()),
                         test_name);

TEST(TokenizerPre, UnknownNameHasNoPreTokenizer) {
  EXPECT_EQ(PreTokenizer::for_pre_type("no-such-pre-type"), nullptr);
}

}  // namespace
}  // namespace cvllm
