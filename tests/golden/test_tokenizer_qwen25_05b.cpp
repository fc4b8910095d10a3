// Qwen2.5's tokenizer (byte-level BPE, 151,936 tokens, pre-type "qwen2", control and user-defined
// added tokens) read from the Qwen2.5-Coder-0.5B GGUF, against transformers' tokenizer loaded from
// the same file (tests/golden/data/tokenizer_qwen25_05b.json, made by
// scripts/gen_golden_qwen25_05b.py): the hard-string corpus of the SmolLM2 tokenizer test plus
// Qwen's added tokens in context, encoded with and without special tokens, and decoded whole and
// incrementally. Skipped when setup (FETCH_TEST_MODELS=1) has not fetched the model.
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

std::string model_path() {
  return cvllm_cache_dir() + "/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
}

class TokenizerQwen25 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixture_ = std::make_unique<json>(
        load_fixture(CVLLM_SOURCE_DIR "/tests/golden/data/tokenizer_qwen25_05b.json"));
    if (std::filesystem::exists(model_path()))
      tokenizer_ = Tokenizer::from_gguf(*GgufFile::open(model_path()));
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    fixture_.reset();
  }
  void SetUp() override {
    if (!tokenizer_)
      GTEST_SKIP() << "model not found at " << model_path()
                   << " (FETCH_TEST_MODELS=1 bash scripts/setup.sh fetches it)";
  }

  static std::unique_ptr<json> fixture_;
  static std::unique_ptr<Tokenizer> tokenizer_;
};

std::unique_ptr<json> TokenizerQwen25::fixture_;
std::unique_ptr<Tokenizer> TokenizerQwen25::tokenizer_;

TEST_F(TokenizerQwen25, VocabularyMatchesFixture) {
  EXPECT_EQ(tokenizer_->kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(tokenizer_->pre_type(), "qwen2");
  EXPECT_EQ(tokenizer_->vocab_size(), (*fixture_)["vocab_size"].get<int32_t>());
  EXPECT_FALSE(tokenizer_->add_bos_token());
  for (const char* piece : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    std::optional<int32_t> id = tokenizer_->piece_to_id(piece);
    ASSERT_TRUE(id.has_value()) << piece;
    EXPECT_TRUE(tokenizer_->is_special(*id)) << piece;
  }
}

TEST_F(TokenizerQwen25, EncodeMatchesTransformers) {
  expect_encode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerQwen25, DecodeMatchesTransformers) {
  expect_decode_matches(*tokenizer_, *fixture_);
}

TEST_F(TokenizerQwen25, IncrementalDecodeMatchesTransformers) {
  expect_incremental_decode_matches(*tokenizer_, *fixture_);
}

}  // namespace
}  // namespace cvllm
