// Checks shared by the tokenizer fixture tests: a fixture written by
// scripts/gen_tokenizer_fixtures.py holds Hugging Face `tokenizers` results for one vocabulary:
//   encode: [{text, ids (add_special_tokens=True), ids_no_special (False)}]
//   decode: [{ids, skip_special_tokens, text}]
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace cvllm::testing_fixture {

using nlohmann::json;

inline json load_fixture(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) {
    ADD_FAILURE() << "missing fixture " << path;
    return json::object();
  }
  return json::parse(in);
}

inline std::string join(const std::vector<int32_t>& ids) {
  // (Built with += only: GCC 12 warns falsely on "[" + std::string&&.)
  std::string out = "[";
  for (int32_t id : ids) {
    out += ' ';
    out += std::to_string(id);
  }
  out += " ]";
  return out;
}

// HF encodes with every added token matched (parse_special=true).
inline void expect_encode_matches(const Tokenizer& tokenizer, const json& fixture) {
  int num_failures = 0;
  for (const json& c : fixture["encode"]) {
    std::string text = c["text"];
    auto expected = c["ids"].get<std::vector<int32_t>>();
    auto expected_no_special = c["ids_no_special"].get<std::vector<int32_t>>();
    std::vector<int32_t> ids = tokenizer.encode(text, /*add_special_tokens=*/true);
    std::vector<int32_t> ids_no_special = tokenizer.encode(text, /*add_special_tokens=*/false);
    if (ids != expected || ids_no_special != expected_no_special) {
      ++num_failures;
      ADD_FAILURE() << "input " << json(text).dump() << "\n  expected " << join(expected)
                    << "\n  actual   " << join(ids) << "\n  expected (no special) "
                    << join(expected_no_special) << "\n  actual   (no special) "
                    << join(ids_no_special);
    }
  }
  EXPECT_EQ(num_failures, 0);
  EXPECT_GT(fixture["encode"].size(), 0u);
}

inline void expect_decode_matches(const Tokenizer& tokenizer, const json& fixture) {
  for (const json& c : fixture["decode"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    bool skip = c["skip_special_tokens"];
    EXPECT_EQ(tokenizer.decode(ids, skip), c["text"].get<std::string>())
        << "ids " << join(ids) << " skip_special_tokens=" << skip;
  }
  EXPECT_GT(fixture["decode"].size(), 0u);
}

// Feeding the same ids one at a time (no prompt) must give the same text.
inline void expect_incremental_decode_matches(const Tokenizer& tokenizer, const json& fixture) {
  for (const json& c : fixture["decode"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    bool skip = c["skip_special_tokens"];
    IncrementalDetokenizer detokenizer(tokenizer, {}, skip);
    std::string text;
    for (int32_t id : ids) text += detokenizer.add_token(id);
    text += detokenizer.flush();
    EXPECT_EQ(text, c["text"].get<std::string>())
        << "ids " << join(ids) << " skip_special_tokens=" << skip;
  }
}

}  // namespace cvllm::testing_fixture
