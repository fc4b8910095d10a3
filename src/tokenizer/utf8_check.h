// Strict UTF-8 validity (what Rust's String::from_utf8 accepts), for the tokenizer's fast paths.
#pragma once

#include <cstdint>
#include <string_view>

#include "util/utf8.h"

namespace cvllm {

inline bool is_valid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t start = pos;
    // utf8::decode yields U+FFFD for an invalid sequence; a literal U+FFFD is three bytes EF BF BD.
    if (utf8::decode(text, pos) == 0xFFFD && text.substr(start, pos - start) != "\xEF\xBF\xBD") {
      return false;
    }
  }
  return true;
}

}  // namespace cvllm
