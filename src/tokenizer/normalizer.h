// Text normalization before pre-tokenization, as Hugging Face `tokenizers` normalizers do it:
// Unicode forms (NFC/NFD/NFKC/NFKD, through utf8proc), Lowercase, Prepend, Replace (a literal or a
// regex), Strip. A Normalizer is a sequence of these steps applied in order to each stretch of text
// between added tokens; we never need offsets, so the steps work on plain strings.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pre_tokenizer.h"

namespace cvllm {

// Unicode normalization forms of `text` (valid UTF-8). Throws cvllm::Error if utf8proc refuses it.
std::string unicode_nfc(std::string_view text);
std::string unicode_nfkc(std::string_view text);
std::string unicode_nfd(std::string_view text);
std::string unicode_nfkd(std::string_view text);
// tokenizers' Lowercase: Rust's char::to_lowercase on each character ('İ' -> "i̇", the one
// unconditional multi-character mapping); no final-sigma rule, as in tokenizers.
std::string unicode_lowercase(std::string_view text);

class Normalizer {
 public:
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kPrepend, kReplace, kStrip };

  void add_form(Kind kind);  // kNfc, kNfd, kNfkc, kNfkd or kLowercase
  void add_prepend(std::string_view prefix);
  // Replaces every non-overlapping occurrence of `pattern` (a literal, or a regex when `is_regex`).
  void add_replace(std::string_view pattern, bool is_regex, std::string_view content);
  // Removes leading and/or trailing Unicode White_Space.
  void add_strip(bool left, bool right);

  bool empty() const { return steps_.empty(); }
  void normalize(std::string& text) const;

 private:
  struct Step {
    Kind kind;
    std::string pattern;  // prefix for kPrepend, literal pattern for kReplace
    std::string content;  // replacement for kReplace
    std::shared_ptr<const Regex> regex;
    bool left = false, right = false;
  };
  std::vector<Step> steps_;
};

}  // namespace cvllm
