#include "tokenizer/byte_level.h"

#include <array>

#include "util/utf8.h"

namespace cvllm::byte_level {

namespace {

constexpr bool stands_for_itself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<int16_t, 324> cp_to_byte{};  // the alphabet lies in U+0021..U+0143
};

constexpr Tables make_tables() {
  Tables t;
  for (auto& b : t.cp_to_byte) b = -1;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    uint32_t cp = stands_for_itself(b) ? static_cast<uint32_t>(b) : next++;
    t.byte_to_cp[b] = cp;
    t.cp_to_byte[cp] = static_cast<int16_t>(b);
  }
  return t;
}

constexpr Tables kTables = make_tables();

}  // namespace

uint32_t code_point(uint8_t byte) {
  return kTables.byte_to_cp[byte];
}

int byte_of(uint32_t cp) {
  return cp < kTables.cp_to_byte.size() ? kTables.cp_to_byte[cp] : -1;
}

void append_spelling(std::string& out, uint8_t byte) {
  uint32_t cp = kTables.byte_to_cp[byte];
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {  // every other character of the alphabet is below U+0800: two UTF-8 bytes
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string spell(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) append_spelling(out, static_cast<uint8_t>(c));
  return out;
}

std::string token_bytes(std::string_view token) {
  std::string out;
  size_t pos = 0;
  while (pos < token.size()) {
    size_t start = pos;
    uint32_t cp = utf8::decode(token, pos);
    int b = byte_of(cp);
    // A U+FFFD that came from an invalid byte is not in the alphabet either.
    if (b < 0 || pos - start != (cp < 0x80 ? 1u : 2u)) return std::string(token);
    out += static_cast<char>(b);
  }
  return out;
}

}  // namespace cvllm::byte_level
