#include "util/utf8.h"

namespace cvllm::utf8 {

int sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return lead >= 0xC2 ? 2 : 0;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return lead <= 0xF4 ? 4 : 0;
  return 0;
}

void append(std::string& out, uint32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// Valid range of the second byte of a sequence: it excludes overlong forms, surrogates and code
// points past U+10FFFF (the Unicode "well-formed byte sequences" table).
bool valid_second_byte(uint8_t lead, uint8_t second) {
  if ((second & 0xC0) != 0x80) return false;
  if (lead == 0xE0) return second >= 0xA0;
  if (lead == 0xED) return second < 0xA0;
  if (lead == 0xF0) return second >= 0x90;
  if (lead == 0xF4) return second < 0x90;
  return true;
}

}  // namespace

uint32_t decode(std::string_view text, size_t& pos) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  uint8_t lead = byte(pos);
  int len = sequence_length(lead);
  if (len == 1) {
    pos += 1;
    return lead;
  }
  if (len == 0) {
    pos += 1;
    return 0xFFFD;
  }
  // A malformed sequence is replaced by one U+FFFD per maximal valid prefix, as Python's
  // decode(errors="replace") and Rust's from_utf8_lossy do.
  uint32_t cp = lead & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (int i = 1; i < len; ++i) {
    bool ok = pos + i < text.size() &&
              (i == 1 ? valid_second_byte(lead, byte(pos + 1)) : (byte(pos + i) & 0xC0) == 0x80);
    if (!ok) {
      pos += i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  pos += len;
  return cp;
}

size_t incomplete_suffix_length(std::string_view text) {
  // A sequence is at most 4 bytes, so only the last 3 bytes can start an unfinished one.
  size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    uint8_t b = static_cast<uint8_t>(text[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    int len = sequence_length(b);
    if (len > static_cast<int>(back)) {
      // Unfinished: hold back only if what we have so far could still become valid.
      for (size_t i = 1; i < back; ++i) {
        if ((static_cast<uint8_t>(text[n - back + i]) & 0xC0) != 0x80) return 0;
      }
      return back;
    }
    return 0;
  }
  return 0;
}

std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    uint32_t cp = decode(text, pos);
    if (cp == 0xFFFD && !(pos - start == 3 && text.substr(start, 3) == "\xEF\xBF\xBD")) {
      append(out, 0xFFFD);
    } else {
      out.append(text.substr(start, pos - start));
    }
  }
  return out;
}

}  // namespace cvllm::utf8
