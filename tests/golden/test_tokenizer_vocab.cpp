// Tokenizer conformance on llama.cpp's vocabulary test files (shared/testdata/tokenizer): every
// NAME.gguf there must turn each string of NAME.gguf.inp into exactly the ids of NAME.gguf.out,
// which Hugging Face `tokenizers` produced (encode with add_special_tokens=False). One test case
// per vocabulary, named after it. Each string must also survive decode(encode(s)).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace cvllm {
namespace {

namespace fs = std::filesystem;

const fs::path kVocabDir = CVLLM_SOURCE_DIR "/../shared/testdata/tokenizer";
constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Vocabulary names (NAME of ggml-vocab-NAME.gguf) that have both test files.
std::vector<std::string> vocab_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kVocabDir, ec)) {
    std::string file = entry.path().filename().string();
    const std::string prefix = "ggml-vocab-", suffix = ".gguf";
    if (file.rfind(prefix, 0) != 0 || file.size() <= prefix.size() + suffix.size() ||
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    if (fs::exists(entry.path().string() + ".inp") && fs::exists(entry.path().string() + ".out")) {
      names.push_back(file.substr(prefix.size(), file.size() - prefix.size() - suffix.size()));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> split_inputs(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t hit = text.find(kSeparator, pos);
    if (hit == std::string::npos) break;
    out.push_back(text.substr(pos, hit - pos));
    pos = hit + kSeparator.size();
  }
  return out;  // the file ends with a separator: the empty tail is not a test
}

std::vector<std::vector<int32_t>> parse_outputs(const std::string& text) {
  std::vector<std::vector<int32_t>> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream ids(line);
    std::vector<int32_t> row;
    int32_t id;
    while (ids >> id) row.push_back(id);
    out.push_back(row);
  }
  return out;
}

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  out.insert(out.begin(), '"');
  out += '"';
  return out;
}

std::string join(const std::vector<int32_t>& ids) {
  // (Built with += only: GCC 12 warns falsely on "[" + std::string&&.)
  std::string out = "[";
  for (int32_t id : ids) {
    out += ' ';
    out += std::to_string(id);
  }
  out += " ]";
  return out;
}

class VocabConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabConformance, MatchesReference) {
  const fs::path gguf = kVocabDir / ("ggml-vocab-" + GetParam() + ".gguf");
  std::shared_ptr<GgufFile> file = GgufFile::open(gguf.string());
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::from_gguf(*file);

  std::vector<std::string> inputs = split_inputs(read_file(gguf.string() + ".inp"));
  std::vector<std::vector<int32_t>> expected = parse_outputs(read_file(gguf.string() + ".out"));
  ASSERT_FALSE(inputs.empty());
  ASSERT_EQ(inputs.size(), expected.size()) << "the .inp and .out files disagree in length";

  int num_mismatches = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& text = inputs[i];
    std::vector<int32_t> ids = tokenizer->encode(text, /*add_special_tokens=*/false,
                                                 /*parse_special=*/false);
    if (ids != expected[i]) {
      ++num_mismatches;
      ADD_FAILURE() << "string " << i << ": " << escape(text) << "\n  expected "
                    << join(expected[i]) << "\n  actual   " << join(ids);
    }
    // Every test string is representable in every vocabulary (no byte is missing from the
    // byte-level alphabets for these; sentencepiece falls back to byte tokens), so decoding gives
    // the text back — except through a user-defined token spelled in the byte alphabet (deepseek's
    // "ü"): HF's ByteLevel decoder maps its characters to bytes too, giving U+FFFD.
    if (std::none_of(ids.begin(), ids.end(), [&](int32_t id) {
          return tokenizer->token_type(id) == TokenType::kUserDefined &&
                 tokenizer->decode(std::vector<int32_t>{id}, false) != tokenizer->id_to_piece(id);
        })) {
      EXPECT_EQ(tokenizer->decode(ids, /*skip_special_tokens=*/false), text)
          << "round trip of string " << i << ": " << escape(text);
    }
  }
  EXPECT_EQ(num_mismatches, 0) << "of " << inputs.size() << " strings";
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(TokenizerVocab, VocabConformance, ::testing::ValuesIn(vocab_names()),
                         test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(VocabConformance);

TEST(TokenizerVocabFiles, TestDataIsPresent) {
  // CI has the shared test data; a missing folder must not silently pass the conformance suite.
  EXPECT_GE(vocab_names().size(), 7u) << "expected the llama.cpp vocabularies in " << kVocabDir;
}

}  // namespace
}  // namespace cvllm
