// Tokenizer and incremental detokenizer behavior beyond the golden fixtures:
// - malformed vocabularies are cvllm::Error naming the file; out-of-range ids are ValueError;
// - invalid UTF-8 input is encoded as its U+FFFD replacement, never a crash;
// - the incremental detokenizer's output concatenates to decode() on many random id sequences
//   (byte tokens that split UTF-8 characters, special tokens, skip on and off), every piece is
//   valid UTF-8, and with a prompt the text continues decode(prompt);
// - relational properties: concurrent encodes agree, long inputs round-trip, rstrip tokens swallow
//   the whitespace after them, unknown pre-types fall back to GPT-2's split.
// Vocabularies come from shared/testdata/tokenizer (llama.cpp's vocab-only GGUF files).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "loader/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace cvllm {
namespace {

const std::string kVocabDir = CVLLM_SOURCE_DIR "/../shared/testdata/tokenizer/";

std::unique_ptr<Tokenizer> load_vocab(const std::string& name) {
  return Tokenizer::from_gguf(*GgufFile::open(kVocabDir + "ggml-vocab-" + name + ".gguf"));
}

bool valid_utf8(std::string_view s) {
  return utf8::sanitize(s) == s;
}

// ---------------------------------------------------------------------------------------------
// A minimal GGUF writer (metadata only) for hand-made vocabularies.

class GgufWriter {
 public:
  GgufWriter& string(const std::string& key, const std::string& value) {
    begin(key, 8);
    str(value);
    return *this;
  }
  GgufWriter& boolean(const std::string& key, bool value) {
    begin(key, 7);
    bytes_.push_back(value ? 1 : 0);
    return *this;
  }
  GgufWriter& strings(const std::string& key, const std::vector<std::string>& values) {
    begin(key, 9);
    u32(8);
    u64(values.size());
    for (const std::string& v : values) str(v);
    return *this;
  }
  GgufWriter& ints(const std::string& key, const std::vector<int32_t>& values) {
    begin(key, 9);
    u32(5);
    u64(values.size());
    for (int32_t v : values) u32(static_cast<uint32_t>(v));
    return *this;
  }
  std::shared_ptr<GgufFile> parse(const std::string& name) {
    std::vector<uint8_t> file;
    auto put = [&](const void* p, size_t n) {
      auto* b = static_cast<const uint8_t*>(p);
      for (size_t i = 0; i < n; ++i) file.push_back(b[i]);
    };
    uint32_t version = 3;
    uint64_t num_tensors = 0;
    put("GGUF", 4);
    put(&version, 4);
    put(&num_tensors, 8);
    put(&num_kv_, 8);
    put(bytes_.data(), bytes_.size());
    while (file.size() % 32 != 0) file.push_back(0);
    storage_ = std::move(file);
    return GgufFile::parse(storage_.data(), storage_.size(), name);
  }

 private:
  void begin(const std::string& key, uint32_t type) {
    ++num_kv_;
    str(key);
    u32(type);
  }
  void u32(uint32_t v) { append(&v, 4); }
  void u64(uint64_t v) { append(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    append(s.data(), s.size());
  }
  void append(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) bytes_.push_back(b[i]);
  }
  std::vector<uint8_t> bytes_;
  std::vector<uint8_t> storage_;
  uint64_t num_kv_ = 0;
};

// A byte-level vocabulary: the 256 byte characters, "<|end|>" (control), and merges "a b", "ab c".
GgufWriter tiny_byte_level_vocab(const std::string& pre) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    byte_level::append_spelling(s, static_cast<uint8_t>(b));
    tokens.push_back(s);
    types.push_back(1);
  }
  tokens.insert(tokens.end(), {"ab", "abc", "<|end|>"});
  types.insert(types.end(), {1, 1, 3});
  GgufWriter w;
  w.string("tokenizer.ggml.model", "gpt2")
      .string("tokenizer.ggml.pre", pre)
      .strings("tokenizer.ggml.tokens", tokens)
      .ints("tokenizer.ggml.token_type", types)
      .strings("tokenizer.ggml.merges", {"a b", "ab c"});
  return w;
}

template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Tokenizer, MissingTokenizerIsErrorNamingFile) {
  GgufWriter w;
  w.string("general.architecture", "llama");
  auto file = w.parse("no_vocab.gguf");
  std::string msg = error_message([&] { Tokenizer::from_gguf(*file); });
  EXPECT_NE(msg.find("no_vocab.gguf"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.ggml.model"), std::string::npos) << msg;
}

TEST(Tokenizer, UnsupportedModelIsError) {
  GgufWriter w;
  w.string("tokenizer.ggml.model", "t5").strings("tokenizer.ggml.tokens", {"a"});
  auto file = w.parse("t5.gguf");
  std::string msg = error_message([&] { Tokenizer::from_gguf(*file); });
  EXPECT_NE(msg.find("t5.gguf"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'t5'"), std::string::npos) << msg;
}

TEST(Tokenizer, MalformedVocabularyIsError) {
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2");
    auto file = w.parse("no_tokens.gguf");
    EXPECT_NE(error_message([&] { Tokenizer::from_gguf(*file); }).find("tokenizer.ggml.tokens"),
              std::string::npos);
  }
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2")
        .strings("tokenizer.ggml.tokens", {"a", "b"})
        .ints("tokenizer.ggml.token_type", {1});
    auto file = w.parse("types.gguf");
    std::string msg = error_message([&] { Tokenizer::from_gguf(*file); });
    EXPECT_NE(msg.find("types.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("token_type"), std::string::npos) << msg;
  }
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", {"a", "b"});
    auto file = w.parse("no_merges.gguf");
    EXPECT_NE(error_message([&] { Tokenizer::from_gguf(*file); }).find("tokenizer.ggml.merges"),
              std::string::npos);
  }
  {
    GgufWriter w;  // a string where an array belongs
    w.string("tokenizer.ggml.model", "gpt2").string("tokenizer.ggml.tokens", "a");
    auto file = w.parse("wrong_type.gguf");
    EXPECT_NE(error_message([&] { Tokenizer::from_gguf(*file); }).find("wrong_type.gguf"),
              std::string::npos);
  }
}

TEST(Tokenizer, TinyVocabularyMergesByRank) {
  auto file = tiny_byte_level_vocab("gpt2").parse("tiny.gguf");
  auto tok = Tokenizer::from_gguf(*file);
  const int32_t ab = 256, abc = 257, end = 258;
  EXPECT_EQ(tok->encode("abc", false), (std::vector<int32_t>{abc}));
  EXPECT_EQ(tok->encode("abab", false), (std::vector<int32_t>{ab, ab}));
  EXPECT_EQ(tok->encode("abc<|end|>", false), (std::vector<int32_t>{abc, end}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{abc, end}, false), "abc<|end|>");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{abc, end}, true), "abc");
}

TEST(Tokenizer, UnknownPreTypeFallsBackToGpt2) {
  auto known = Tokenizer::from_gguf(*tiny_byte_level_vocab("gpt2").parse("a.gguf"));
  auto unknown = Tokenizer::from_gguf(*tiny_byte_level_vocab("no-such-pre").parse("b.gguf"));
  for (std::string text : {"abc abc", "Hello, world! 123 'll", " \n\t x"}) {
    EXPECT_EQ(unknown->encode(text, false), known->encode(text, false)) << text;
  }
}

TEST(Tokenizer, OutOfRangeIdsAreValueErrors) {
  auto tok = load_vocab("gpt-2");
  const int32_t n = tok->vocab_size();
  for (int32_t bad : {n, n + 1000, -1, INT32_MIN}) {
    std::vector<int32_t> ids = {50, bad, 51};
    try {
      tok->decode(ids);
      ADD_FAILURE() << "no error for id " << bad;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
    EXPECT_THROW(tok->id_to_piece(bad), ValueError);
    EXPECT_THROW(tok->is_special(bad), ValueError);
    IncrementalDetokenizer detokenizer(*tok, {}, true);
    EXPECT_THROW(detokenizer.add_token(bad), ValueError);
  }
}

TEST(Tokenizer, InvalidUtf8IsEncodedAsReplacement) {
  for (const char* vocab : {"gpt-2", "llama-spm"}) {
    auto tok = load_vocab(vocab);
    std::string bad =
        "a\xff"
        "b\xe2\x82"
        " c\xf0\x9f\x98";
    EXPECT_EQ(tok->encode(bad, false), tok->encode(utf8::sanitize(bad), false)) << vocab;
    EXPECT_EQ(tok->decode(tok->encode(bad, false)), utf8::sanitize(bad)) << vocab;
  }
}

TEST(Tokenizer, PieceLookupsAgree) {
  for (const char* vocab : {"gpt-2", "llama-spm", "deepseek-llm"}) {
    auto tok = load_vocab(vocab);
    for (int32_t id = 0; id < tok->vocab_size(); id += 97) {
      std::optional<int32_t> back = tok->piece_to_id(tok->id_to_piece(id));
      ASSERT_TRUE(back.has_value()) << vocab << " id " << id;
      EXPECT_EQ(tok->id_to_piece(*back), tok->id_to_piece(id));
    }
    EXPECT_FALSE(tok->piece_to_id("\x01no such piece\x02").has_value());
  }
}

TEST(Tokenizer, SpecialTokensAddAndSkip) {
  auto tok = load_vocab("llama-spm");
  ASSERT_TRUE(tok->bos_token_id().has_value());
  int32_t bos = *tok->bos_token_id();
  std::vector<int32_t> with = tok->encode("Hello world", true);
  std::vector<int32_t> without = tok->encode("Hello world", false);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], bos);
  EXPECT_TRUE(tok->is_special(bos));
  EXPECT_EQ(tok->decode(with, true), "Hello world");
  EXPECT_EQ(tok->decode(with, false), "<s> Hello world");
  // Control text is one token only with special parsing on.
  EXPECT_EQ(tok->encode("<s>", false, true), std::vector<int32_t>{bos});
  EXPECT_GT(tok->encode("<s>", false, false).size(), 1u);
}

TEST(Tokenizer, RstripTokensSwallowFollowingWhitespace) {
  // Phi-3's added tokens carry rstrip in its tokenizer.json; GGUF does not, so the tokenizer
  // sets it for phi3 files: the whitespace after "<|end|>" belongs to the token.
  auto tok = load_vocab("phi-3");
  EXPECT_EQ(tok->encode("<|end|>\n  hi", false), tok->encode("<|end|>hi", false));
  EXPECT_NE(tok->encode("hi  <|end|>", false), tok->encode("hi<|end|>", false));
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  auto tok = load_vocab("gpt-2");
  std::vector<std::string> texts;
  std::mt19937 rng(7);
  const std::vector<std::string> words = {"hello", " world", "123",  " 'll",
                                          "\n",    "  ",     "日本", "🚀"};
  for (int i = 0; i < 200; ++i) {
    std::string t;
    for (int j = 0; j < 30; ++j) t += words[rng() % words.size()];
    texts.push_back(t);
  }
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& t : texts) expected.push_back(tok->encode(t));
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 5; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i)
          failures[k] += tok->encode(texts[i]) != expected[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

TEST(Tokenizer, LongInputsRoundTrip) {
  // One 200 KB word stresses the merge heap; a long text with spaces exercises the word cache.
  std::string word(200000, 'a');
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "token" + std::to_string(i % 37) + " ";
  for (const char* vocab : {"gpt-2", "llama-spm"}) {
    auto tok = load_vocab(vocab);
    EXPECT_EQ(tok->decode(tok->encode(word, false)), word) << vocab;
    EXPECT_EQ(tok->decode(tok->encode(text, false)), text) << vocab;
  }
}

// ---------------------------------------------------------------------------------------------
// Incremental detokenizer.

// Ids that exercise the detokenizer: single-byte tokens of non-ASCII bytes (they split UTF-8
// characters), special tokens, and anything else.
std::vector<int32_t> tricky_ids(const Tokenizer& tok) {
  std::vector<int32_t> out;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    std::string piece = tok.id_to_piece(id);
    bool byte_token = tok.token_type(id) == TokenType::kByte;
    bool single_high_byte = tok.kind() == TokenizerKind::kByteLevelBpe &&
                            byte_level::token_bytes(piece).size() == 1 &&
                            static_cast<uint8_t>(byte_level::token_bytes(piece)[0]) >= 0x80;
    if (byte_token || single_high_byte || tok.is_special(id)) out.push_back(id);
  }
  return out;
}

void check_incremental(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                       const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detokenizer(tok, prompt, skip);
  std::string text;
  for (int32_t id : ids) {
    std::string piece = detokenizer.add_token(id);
    ASSERT_TRUE(valid_utf8(piece)) << "invalid UTF-8 mid-stream";
    text += piece;
  }
  std::string tail = detokenizer.flush();
  ASSERT_TRUE(valid_utf8(tail));
  text += tail;
  if (prompt.empty()) {
    EXPECT_EQ(text, tok.decode(ids, skip));
  } else {
    // The generated text continues the prompt's (the prompt here ends on a whole word).
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), ids.begin(), ids.end());
    EXPECT_EQ(tok.decode(prompt, skip) + text, tok.decode(all, skip));
  }
}

class IncrementalDetokenizerRandom : public ::testing::TestWithParam<std::string> {};

TEST_P(IncrementalDetokenizerRandom, ConcatenationEqualsDecode) {
  auto tok = load_vocab(GetParam());
  std::vector<int32_t> tricky = tricky_ids(*tok);
  ASSERT_FALSE(tricky.empty());
  std::vector<int32_t> prompt = tok->encode("The prompt ends here.", true);
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 400; ++iter) {
    std::vector<int32_t> ids(1 + rng() % 40);
    for (int32_t& id : ids) {
      id = rng() % 100 < 60 ? tricky[rng() % tricky.size()]
                            : static_cast<int32_t>(rng() % tok->vocab_size());
    }
    for (bool skip : {true, false}) {
      check_incremental(*tok, {}, ids, skip);
      check_incremental(*tok, prompt, ids, skip);
    }
    if (HasFailure()) break;
  }
  // Real text split into tokens, fed one by one.
  std::vector<int32_t> ids =
      tok->encode("Emoji 🚀😶‍🌫️, CJK 我想在apple工作, Cửa Việt\n\tend", false);
  check_incremental(*tok, {}, ids, true);
}

INSTANTIATE_TEST_SUITE_P(TokenizerDetokenizer, IncrementalDetokenizerRandom,
                         ::testing::Values("gpt-2", "llama-spm", "phi-3", "deepseek-llm", "mpt"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(TokenizerDetokenizer, HoldsBackSplitCharacters) {
  auto tok = load_vocab("llama-spm");
  // "€" is E2 82 AC: as byte tokens, nothing is emitted until the run ends.
  std::vector<int32_t> euro;
  for (const char* b : {"<0xE2>", "<0x82>", "<0xAC>"}) euro.push_back(*tok->piece_to_id(b));
  IncrementalDetokenizer detokenizer(*tok, tok->encode("Price:", true), true);
  EXPECT_EQ(detokenizer.add_token(euro[0]), "");
  EXPECT_EQ(detokenizer.add_token(euro[1]), "");
  EXPECT_EQ(detokenizer.add_token(euro[2]), "");
  EXPECT_EQ(detokenizer.flush(), "€");
}

TEST(TokenizerDetokenizer, SentencepieceKeepsLeadingSpaceAfterPrompt) {
  auto tok = load_vocab("llama-spm");
  std::vector<int32_t> gen = tok->encode("world", false);  // "▁world"
  {
    IncrementalDetokenizer d(*tok, tok->encode("Hello", true), true);
    std::string text;
    for (int32_t id : gen) text += d.add_token(id);
    EXPECT_EQ(text + d.flush(), " world");
  }
  {
    // A prompt of only BOS decodes to nothing when skipping specials: the space is stripped, as
    // in decode(BOS + gen).
    IncrementalDetokenizer d(*tok, std::vector<int32_t>{*tok->bos_token_id()}, true);
    std::string text;
    for (int32_t id : gen) text += d.add_token(id);
    EXPECT_EQ(text + d.flush(), "world");
  }
}

}  // namespace
}  // namespace cvllm
