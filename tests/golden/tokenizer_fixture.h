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

// The Hugging Face tokenizer fixtures (scripts/gen_hf_tokenizer_fixtures.py,
// scripts/gen_torch_bin_fixtures.py) use another layout:
//   encode: [{text, with_special, without_special}]   decode: [{ids, skip_special, keep_special}]
// Each check reports its first 20 mismatches and returns how many there were.
inline int encode_mismatches(const Tokenizer& tokenizer, const json& fixture) {
  int num_failures = 0;
  for (const json& c : fixture["encode"]) {
    const std::string text = c["text"];
    for (bool add_special : {true, false}) {
      auto expected = c[add_special ? "with_special" : "without_special"].get<std::vector<int32_t>>();
      std::vector<int32_t> ids = tokenizer.encode(text, add_special);
      if (ids != expected && ++num_failures <= 20) {
        ADD_FAILURE() << "input " << json(text).dump() << " add_special_tokens=" << add_special
                      << "\n  expected " << join(expected) << "\n  actual   " << join(ids);
      }
    }
  }
  return num_failures;
}

// Decoding all ids at once, or (incremental) one at a time through the detokenizer.
inline int decode_mismatches(const Tokenizer& tokenizer, const json& fixture, bool incremental) {
  int num_failures = 0;
  for (const json& c : fixture["decode"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    for (bool skip : {true, false}) {
      const std::string expected = c[skip ? "skip_special" : "keep_special"];
      std::string text;
      if (incremental) {
        IncrementalDetokenizer detokenizer(tokenizer, {}, skip);
        for (int32_t id : ids) text += detokenizer.add_token(id);
        text += detokenizer.flush();
      } else {
        text = tokenizer.decode(ids, skip);
      }
      if (text != expected && ++num_failures <= 20) {
        ADD_FAILURE() << "ids " << join(ids) << " skip_special_tokens=" << skip
                      << (incremental ? " (incremental)" : "") << "\n  expected "
                      << json(expected).dump() << "\n  actual   " << json(text).dump();
      }
    }
  }
  return num_failures;
}

}  // namespace cvllm::testing_fixture
