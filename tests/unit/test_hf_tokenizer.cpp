// tokenizer.json loading: errors name the file and the unsupported component (never a crash), and
// tokenizer_config.json / special_tokens_map.json set the special tokens and the BOS/EOS flags the
// way transformers does. Token ids here come from the JSON written in each test; tokenization
// results themselves are checked against Python `tokenizers` in golden/test_hf_tokenizers.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;

// A minimal byte-level BPE tokenizer.json: the 256-character alphabet is not needed for the
// properties tested here, so the vocabulary is a handful of tokens plus two added ones.
json minimal_tokenizer() {
  json vocab = json::object();
  int id = 0;
  for (const char* t : {"<s>", "</s>", "a", "b", "ab", "\xC4\xA0",
                        "\xC4\xA0"
                        "a"})
    vocab[t] = id++;
  return json{
      {"version", "1.0"},
      {"added_tokens", json::array({
                           {{"id", 0},
                            {"content", "<s>"},
                            {"special", true},
                            {"normalized", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"single_word", false}},
                           {{"id", 1},
                            {"content", "</s>"},
                            {"special", true},
                            {"normalized", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"single_word", false}},
                       })},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({"a b", json::array({"\xC4\xA0", "a"})})}}},
  };
}

std::string error_of(const std::string& tokenizer_json, const std::string& config = "") {
  try {
    Tokenizer::from_hf_json(tokenizer_json, config, {}, "dir/tokenizer.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfTokenizer, MinimalTokenizerLoads) {
  auto t = Tokenizer::from_hf_json(minimal_tokenizer().dump());
  EXPECT_EQ(t->vocab_size(), 7);
  EXPECT_EQ(t->piece_to_id("<s>"), 0);
  EXPECT_TRUE(t->is_special(0));
  EXPECT_FALSE(t->is_special(2));
  EXPECT_EQ(t->kind(), TokenizerKind::kByteLevelBpe);
  // No post-processor and no flags: nothing is added around the text.
  EXPECT_FALSE(t->add_bos_token());
  EXPECT_EQ(t->encode("", true), std::vector<int32_t>{});
}

TEST(HfTokenizer, MissingDirectoryNamesTheFile) {
  try {
    load_hf_tokenizer("/nonexistent/checkpoint");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/checkpoint/tokenizer.json"),
              std::string::npos)
        << e.what();
  }
}

TEST(HfTokenizer, MalformedJsonIsAnError) {
  EXPECT_NE(error_of("{\"model\": ").find("dir/tokenizer.json: malformed JSON"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("dir/tokenizer.json"), std::string::npos);
  EXPECT_NE(error_of("").find("dir/tokenizer.json"), std::string::npos);
  EXPECT_NE(error_of(minimal_tokenizer().dump(), "{oops").find("tokenizer_config.json"),
            std::string::npos);
}

TEST(HfTokenizer, UnsupportedComponentsAreNamed) {
  struct Case {
    const char* field;
    json value;
    const char* expected;
  };
  const Case cases[] = {
      {"normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", "AA=="}}, "Precompiled"},
      {"normalizer", {{"type", "BertNormalizer"}}, "BertNormalizer"},
      {"pre_tokenizer", {{"type", "UnicodeScripts"}}, "UnicodeScripts"},
      {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}}, "WordPiece"},
      {"decoder", {{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 0}}, "Strip"},
      {"post_processor", {{"type", "Unknown"}}, "Unknown"},
  };
  for (const Case& c : cases) {
    json tokenizer = minimal_tokenizer();
    tokenizer[c.field] = c.value;
    std::string error = error_of(tokenizer.dump());
    EXPECT_NE(error.find("dir/tokenizer.json"), std::string::npos) << error;
    EXPECT_NE(error.find(c.expected), std::string::npos) << error;
  }
  json tokenizer = minimal_tokenizer();
  tokenizer["model"]["type"] = "WordPiece";
  EXPECT_NE(error_of(tokenizer.dump()).find("unsupported model type 'WordPiece'"),
            std::string::npos);
}

TEST(HfTokenizer, MalformedStructureIsAnError) {
  json t1 = minimal_tokenizer();
  t1["model"]["vocab"]["x"] = -4;
  EXPECT_NE(error_of(t1.dump()).find("non-negative"), std::string::npos);
  json t2 = minimal_tokenizer();
  t2["model"]["vocab"]["x"] = 1 << 30;  // ids must be dense
  EXPECT_NE(error_of(t2.dump()).find("far beyond"), std::string::npos);
  json t3 = minimal_tokenizer();
  t3["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}};
  EXPECT_NE(error_of(t3.dump()).find("regex"), std::string::npos);
  json t4 = minimal_tokenizer();
  t4["model"]["merges"] = json::array({42});
  EXPECT_NE(error_of(t4.dump()).find("merges"), std::string::npos);
  json t5 = minimal_tokenizer();
  t5["added_tokens"][0].erase("content");
  EXPECT_NE(error_of(t5.dump()).find("content"), std::string::npos);
  // Deep nesting is refused, not recursed into without bound.
  json nested = {{"type", "NFC"}};
  for (int i = 0; i < 100; ++i) nested = {{"type", "Sequence"}, {"normalizers", {nested}}};
  json t6 = minimal_tokenizer();
  t6["normalizer"] = nested;
  EXPECT_NE(error_of(t6.dump()).find("nested too deeply"), std::string::npos);
}

TEST(HfTokenizer, TemplateProcessingGivesBosAndEos) {
  json tokenizer = minimal_tokenizer();
  tokenizer["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"pair", json::array()},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
        {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  auto t = Tokenizer::from_hf_json(tokenizer.dump());
  EXPECT_TRUE(t->add_bos_token());
  EXPECT_TRUE(t->add_eos_token());
  EXPECT_EQ(t->bos_token_id(), 0);
  EXPECT_EQ(t->eos_token_id(), 1);
  std::vector<int32_t> ids = t->encode("ab", true);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  EXPECT_EQ(t->encode("ab", false), std::vector<int32_t>(ids.begin() + 1, ids.end() - 1));

  // tokenizer_config.json flags replace the template (transformers' update_post_processor): a
  // flag that is absent counts as false.
  auto no_eos = Tokenizer::from_hf_json(
      tokenizer.dump(), R"({"bos_token": {"content": "<s>"}, "add_bos_token": true})");
  EXPECT_TRUE(no_eos->add_bos_token());
  EXPECT_FALSE(no_eos->add_eos_token());
  EXPECT_EQ(no_eos->encode("ab", true).front(), 0);
  EXPECT_NE(no_eos->encode("ab", true).back(), 1);
}

TEST(HfTokenizer, SpecialTokensMapWinsOverConfig) {
  auto t = Tokenizer::from_hf_json(minimal_tokenizer().dump(),
                                   R"({"bos_token": "<s>", "eos_token": "<s>"})",
                                   R"({"eos_token": {"content": "</s>", "lstrip": false}})");
  EXPECT_EQ(t->bos_token_id(), 0);
  EXPECT_EQ(t->eos_token_id(), 1);
}

TEST(HfTokenizer, LoadsACheckpointDirectory) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("cvllm_hf_tokenizer_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << minimal_tokenizer().dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "</s>", "add_eos_token": true})";
  auto t = load_hf_tokenizer(dir.string());
  EXPECT_EQ(t->eos_token_id(), 1);
  EXPECT_TRUE(t->add_eos_token());
  EXPECT_EQ(t->encode("a", true).back(), 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cvllm
