#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include "util/utf8.h"

namespace cvllm {

namespace {

// Rust's char::is_whitespace (Unicode White_Space), which HF's lstrip/rstrip trim.
bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Start of the run of whitespace that ends at `end`, going back no further than `floor`.
size_t whitespace_start_before(std::string_view text, size_t end, size_t floor) {
  while (end > floor) {
    size_t start = end - 1;
    while (start > floor && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!is_white_space(utf8::decode(text, pos)) || pos != end) break;
    end = start;
  }
  return end;
}

size_t whitespace_end_after(std::string_view text, size_t begin) {
  while (begin < text.size()) {
    size_t pos = begin;
    if (!is_white_space(utf8::decode(text, pos))) break;
    begin = pos;
  }
  return begin;
}

// A letter or number (Rust's char::is_alphanumeric, approximated by general category).
bool is_word_char(uint32_t cp) {
  auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

// Whether the match [begin, end) of `text` stands between non-word characters.
bool is_single_word(std::string_view text, size_t begin, size_t end) {
  if (begin > 0) {
    size_t start = begin - 1;
    while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    if (is_word_char(utf8::decode(text, start))) return false;
  }
  if (end < text.size() && is_word_char(utf8::decode(text, end))) return false;
  return true;
}

}  // namespace

void AddedTokenMatcher::add(std::string_view text, const Token& token) {
  if (text.empty()) return;
  int32_t node = 0;
  for (char c : text) {
    uint8_t b = static_cast<uint8_t>(c);
    int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(Node{});
      edges_.emplace((static_cast<uint64_t>(node) << 8) | b, next);
    }
    node = next;
  }
  first_byte_[static_cast<uint8_t>(text[0])] = true;
  if (nodes_[node].token >= 0) {
    tokens_[nodes_[node].token] = token;
  } else {
    nodes_[node].token = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(token);
  }
}

size_t AddedTokenMatcher::longest_match(std::string_view text, size_t pos, bool parse_special,
                                        int32_t* token) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    int32_t t = nodes_[node].token;
    if (t >= 0 && (parse_special || !tokens_[t].special)) {
      best = i + 1 - pos;
      *token = t;
    }
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, bool parse_special,
                              std::vector<Piece>& out) const {
  out.clear();
  size_t text_start = 0;  // start of the ordinary text not yet emitted
  size_t pos = 0;
  while (pos < text.size()) {
    int32_t t = -1;
    size_t len = first_byte_[static_cast<uint8_t>(text[pos])]
                     ? longest_match(text, pos, parse_special, &t)
                     : 0;
    if (len == 0) {
      ++pos;
      continue;
    }
    const Token& token = tokens_[t];
    if (token.single_word && !is_single_word(text, pos, pos + len)) {
      pos += len;
      continue;
    }
    size_t begin = token.lstrip ? whitespace_start_before(text, pos, text_start) : pos;
    size_t end = token.rstrip ? whitespace_end_after(text, pos + len) : pos + len;
    if (begin > text_start) out.push_back({{text_start, begin}, -1});
    out.push_back({{begin, end}, token.id});
    // Matching goes on right after the token itself, as HF finds all matches in the raw text
    // before stripping: an added token inside the whitespace an rstrip took is still emitted.
    text_start = end;
    pos += len;
  }
  if (text_start < text.size()) out.push_back({{text_start, text.size()}, -1});
}

}  // namespace cvllm
