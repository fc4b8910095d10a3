// Hugging Face tokenizer.json loading (load_hf_tokenizer) against Python `tokenizers` on the same
// files: tests/golden/data/hf_tokenizers/<name>/ holds tokenizer.json, tokenizer_config.json and
// cases.json (made by scripts/gen_hf_tokenizer_fixtures.py): a corpus of hard strings encoded with
// and without special tokens, and id sequences decoded with skip_special_tokens on and off. One
// parameterized case per tokenizer; the decode cases also run through IncrementalDetokenizer.
// For the vocabularies that exist as GGUF too, the GGUF loader must give the same ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "golden/tokenizer_fixture.h"
#include "loader/gguf.h"
#include "loader/model_resolver.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

using nlohmann::json;
using testing_fixture::decode_mismatches;
using testing_fixture::encode_mismatches;
using testing_fixture::join;

const std::string kDataDir = CVLLM_SOURCE_DIR "/tests/golden/data/hf_tokenizers/";

class HfTokenizerGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string dir = kDataDir + GetParam();
    std::ifstream in(dir + "/cases.json");
    ASSERT_TRUE(in.good()) << "missing " << dir << "/cases.json";
    cases_ = json::parse(in);
    tokenizer_ = load_hf_tokenizer(dir);
    ASSERT_NE(tokenizer_, nullptr);
  }

  json cases_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(HfTokenizerGolden, EncodeMatchesTokenizers) {
  EXPECT_EQ(encode_mismatches(*tokenizer_, cases_), 0);
  EXPECT_GT(cases_["encode"].size(), 50u);
}

TEST_P(HfTokenizerGolden, DecodeMatchesTokenizers) {
  EXPECT_EQ(decode_mismatches(*tokenizer_, cases_, /*incremental=*/false), 0);
  EXPECT_GT(cases_["decode"].size(), 50u);
}

// Streaming the ids one at a time must give the same text as decoding them at once.
TEST_P(HfTokenizerGolden, IncrementalDecodeMatchesTokenizers) {
  EXPECT_EQ(decode_mismatches(*tokenizer_, cases_, /*incremental=*/true), 0);
}

// The fixtures converted from a GGUF vocabulary (cases.json names it).
class HfTokenizerGgufAgreement : public HfTokenizerGolden {};

// The same vocabulary loaded from its GGUF gives the same ids and decodes them to the same text
// (texts without added tokens: a tokenizer.json may flag added tokens differently from the GGUF
// token types).
TEST_P(HfTokenizerGgufAgreement, GgufLoaderAgrees) {
  ASSERT_TRUE(cases_["gguf"].is_string());
  std::string name = cases_["gguf"];
  std::string path = name.rfind("~/", 0) == 0
                         ? default_model_path()
                         : std::string(CVLLM_SOURCE_DIR "/../shared/testdata/tokenizer/") + name;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
  std::unique_ptr<Tokenizer> gguf = Tokenizer::from_gguf(*GgufFile::open(path));
  ASSERT_EQ(gguf->vocab_size(), tokenizer_->vocab_size());
  EXPECT_EQ(gguf->bos_token_id(), tokenizer_->bos_token_id());
  EXPECT_EQ(gguf->eos_token_id(), tokenizer_->eos_token_id());
  EXPECT_EQ(gguf->add_bos_token(), tokenizer_->add_bos_token());
  int num_compared = 0, num_failures = 0;
  for (const json& c : cases_["encode"]) {
    std::string text = c["text"];
    bool has_added_token = false;
    for (int32_t id = 0; id < gguf->vocab_size() && !has_added_token; ++id) {
      TokenType type = gguf->token_type(id);
      if (type == TokenType::kControl || type == TokenType::kUserDefined) {
        has_added_token = text.find(gguf->id_to_piece(id)) != std::string::npos;
      }
    }
    if (has_added_token) continue;
    ++num_compared;
    std::vector<int32_t> expected = gguf->encode(text, true);
    std::vector<int32_t> ids = tokenizer_->encode(text, true);
    if (ids != expected && ++num_failures <= 20) {
      ADD_FAILURE() << "input " << json(text).dump() << "\n  gguf " << join(expected) << "\n  json "
                    << join(ids);
    }
    for (bool skip : {true, false}) {
      EXPECT_EQ(gguf->decode(expected, skip), tokenizer_->decode(expected, skip))
          << "ids " << join(expected) << " skip_special_tokens=" << skip;
    }
  }
  EXPECT_EQ(num_failures, 0);
  EXPECT_GT(num_compared, 50);
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kDataDir)) {
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfTokenizerGolden, ::testing::ValuesIn(fixture_names()),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Fixtures, HfTokenizerGgufAgreement,
                         ::testing::Values("gpt2", "llama-spm", "phi-3", "smollm2"), param_name);

}  // namespace
}  // namespace cvllm
