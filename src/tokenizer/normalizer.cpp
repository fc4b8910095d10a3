#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "util/error.h"
#include "util/utf8.h"

namespace cvllm {

namespace {

std::string utf8proc_transform(std::string_view text, int options) {
  bool ascii = true;  // ASCII text is invariant under every normalization form
  for (char c : text) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
  if (ascii) return std::string(text);
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    static_cast<utf8proc_ssize_t>(text.size()), &out,
                                    static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (n < 0) {
    throw Error(cat("Unicode normalization failed: ", utf8proc_errmsg(n)));
  }
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

// Rust's char::is_whitespace (Unicode White_Space).
bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::string replace_literal(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

std::string replace_regex(const std::string& s, const Regex& regex, std::string_view to) {
  thread_local std::vector<TextRange> matches;
  matches.clear();
  regex.find_all(s, 0, matches);
  if (matches.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (const TextRange& m : matches) {
    out.append(s, pos, m.begin - pos);
    out.append(to);
    pos = m.end;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string strip_white_space(std::string_view s, bool left, bool right) {
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end) {
      size_t pos = begin;
      if (!is_white_space(utf8::decode(s, pos))) break;
      begin = pos;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
      size_t pos = start;
      if (!is_white_space(utf8::decode(s, pos))) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

}  // namespace

std::string unicode_nfc(std::string_view text) {
  return utf8proc_transform(text, UTF8PROC_COMPOSE);
}
std::string unicode_nfkc(std::string_view text) {
  return utf8proc_transform(text, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
}
std::string unicode_nfd(std::string_view text) {
  return utf8proc_transform(text, UTF8PROC_DECOMPOSE);
}
std::string unicode_nfkd(std::string_view text) {
  return utf8proc_transform(text, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
}

std::string unicode_lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = utf8::decode(text, pos);
    if (cp == 0x130) {  // 'İ': the one full (multi-character) lowercase mapping outside Greek
      out += "i\xCC\x87";
      continue;
    }
    utf8::append(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

void Normalizer::add_form(Kind kind) {
  steps_.push_back({kind, {}, {}, nullptr});
}

void Normalizer::add_prepend(std::string_view prefix) {
  steps_.push_back({Kind::kPrepend, std::string(prefix), {}, nullptr});
}

void Normalizer::add_replace(std::string_view pattern, bool is_regex, std::string_view content) {
  Step step{Kind::kReplace, std::string(pattern), std::string(content), nullptr};
  if (is_regex) step.regex = std::make_shared<const Regex>(pattern);
  steps_.push_back(std::move(step));
}

void Normalizer::add_strip(bool left, bool right) {
  Step step{Kind::kStrip, {}, {}, nullptr};
  step.left = left;
  step.right = right;
  steps_.push_back(std::move(step));
}

void Normalizer::normalize(std::string& text) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kNfc:
        text = unicode_nfc(text);
        break;
      case Kind::kNfd:
        text = unicode_nfd(text);
        break;
      case Kind::kNfkc:
        text = unicode_nfkc(text);
        break;
      case Kind::kNfkd:
        text = unicode_nfkd(text);
        break;
      case Kind::kLowercase:
        text = unicode_lowercase(text);
        break;
      case Kind::kPrepend:
        // HF prepends only to non-empty text.
        if (!text.empty()) text.insert(0, step.pattern);
        break;
      case Kind::kReplace:
        text = step.regex ? replace_regex(text, *step.regex, step.content)
                          : replace_literal(text, step.pattern, step.content);
        break;
      case Kind::kStrip:
        text = strip_white_space(text, step.left, step.right);
        break;
    }
  }
}

}  // namespace cvllm
