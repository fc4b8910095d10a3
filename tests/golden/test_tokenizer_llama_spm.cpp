// The sentencepiece-style path (Llama 2's vocabulary from shared/testdata/tokenizer) against
// Hugging Face `tokenizers` running Llama 2's tokenizer.json pipeline (tests/golden/data/
// tokenizer_llama_spm.json, made by scripts/gen_tokenizer_fixtures.py): space prefix per stretch
// between special tokens, byte fallback, BOS from the post-processor, and the decoder's byte runs
// (invalid UTF-8 -> U+FFFD per byte) and leading-space strip, whole and incremental.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "golden/tokenizer_fixture.h"
#include "loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

using namespace testing_fixture;

class TokenizerLlamaSpm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixture_ = std::make_unique<json>(
        load_fixture(CVLLM_SOURCE_DIR "/tests/golden/data/tokenizer_llama_spm.json"));
    tokenizer_ = Tokenizer::from_gguf(*GgufFile::open(
        CVLLM_SOURCE_DIR "/../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf"));
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    fixture_.reset();
  }

  static std::unique_ptr<json> fixture_;
  static std::unique_ptr<Tokenizer> tokenizer_;
};

std::unique_ptr<json> TokenizerLlamaSpm::fixture_;
std::unique_ptr<Tokenizer> TokenizerLlamaSpm::tokenizer_;

TEST_F(TokenizerLlamaSpm, VocabularyMatchesFixture) {
  EXPECT_EQ(tokenizer_->kind(), TokenizerKind::kSentencePieceBpe);
  EXPECT_EQ(tokenizer_->vocab_size(), (*fixture_)["vocab_size"].get<int32_t>());
  EXPECT_TRUE(tokenizer_->add_bos_token());
  EXPECT_TRUE(tokenizer_->add_space_prefix());
  EXPECT_EQ(tokenizer_->bos_token_id(), 1);
  EXPECT_EQ(tokenizer_->unk_token_id(), 0);
}

TEST_F(TokenizerLlamaSpm, EncodeMatchesHuggingFace) {
  expect_encode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerLlamaSpm, DecodeMatchesHuggingFace) {
  expect_decode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerLlamaSpm, IncrementalDecodeMatchesHuggingFace) {
  expect_incremental_decode_matches(*tokenizer_, *fixture_);
}

}  // namespace
}  // namespace cvllm
