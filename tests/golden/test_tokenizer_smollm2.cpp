// The default model's tokenizer (SmolLM2-135M-Instruct GGUF, byte-level BPE, pre-type "smollm")
// against Hugging Face `tokenizers` running SmolLM2's tokenizer.json pipeline on the same
// vocabulary (tests/golden/data/tokenizer_smollm2.json, made by scripts/gen_tokenizer_fixtures.py):
// encoding a corpus of hard strings with and without special tokens, and decoding token sequences
// (including random ones that split UTF-8 characters) with skip_special_tokens on and off, whole
// and incrementally. Skipped when the model file is absent (CI has it).
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "golden/tokenizer_fixture.h"
#include "loader/gguf.h"
#include "loader/model_resolver.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

using namespace testing_fixture;

class TokenizerSmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixture_ = std::make_unique<json>(
        load_fixture(CVLLM_SOURCE_DIR "/tests/golden/data/tokenizer_smollm2.json"));
    std::string path = default_model_path();
    if (std::filesystem::exists(path)) tokenizer_ = Tokenizer::from_gguf(*GgufFile::open(path));
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    fixture_.reset();
  }
  void SetUp() override {
    if (!tokenizer_) GTEST_SKIP() << "default model not found at " << default_model_path();
  }

  static std::unique_ptr<json> fixture_;
  static std::unique_ptr<Tokenizer> tokenizer_;
};

std::unique_ptr<json> TokenizerSmolLM2::fixture_;
std::unique_ptr<Tokenizer> TokenizerSmolLM2::tokenizer_;

TEST_F(TokenizerSmolLM2, VocabularyMatchesFixture) {
  EXPECT_EQ(tokenizer_->kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(tokenizer_->pre_type(), "smollm");
  EXPECT_EQ(tokenizer_->vocab_size(), (*fixture_)["vocab_size"].get<int32_t>());
  EXPECT_FALSE(tokenizer_->add_bos_token());
  EXPECT_EQ(tokenizer_->piece_to_id("<|im_start|>"), 1);
  EXPECT_EQ(tokenizer_->piece_to_id("<|im_end|>"), 2);
  EXPECT_TRUE(tokenizer_->is_special(1));
}

TEST_F(TokenizerSmolLM2, EncodeMatchesHuggingFace) {
  expect_encode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerSmolLM2, DecodeMatchesHuggingFace) {
  expect_decode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerSmolLM2, IncrementalDecodeMatchesHuggingFace) {
  expect_incremental_decode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerSmolLM2, ParseSpecialOffSpellsControlTokens) {
  // parse_special=false is llama.cpp's mode for untrusted text: control tokens are then spelled
  // out by BPE instead of becoming one id.
  std::string text = "<|im_start|>user\nHi<|im_end|>";
  std::vector<int32_t> parsed = tokenizer_->encode(text, false, /*parse_special=*/true);
  std::vector<int32_t> literal = tokenizer_->encode(text, false, /*parse_special=*/false);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  EXPECT_GT(literal.size(), parsed.size());
  for (int32_t id : literal) EXPECT_FALSE(tokenizer_->is_special(id));
  EXPECT_EQ(tokenizer_->decode(literal, /*skip_special_tokens=*/true), text);
  EXPECT_EQ(tokenizer_->decode(parsed, /*skip_special_tokens=*/false), text);
  EXPECT_EQ(tokenizer_->decode(parsed, /*skip_special_tokens=*/true), "user\nHi");
}

}  // namespace
}  // namespace cvllm
