// GPT-2's byte-level alphabet: every byte 0..255 is spelled as one printable character, so a
// byte-level BPE vocabulary is a set of strings over 256 characters. Printable Latin-1 bytes
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68 bytes take
// U+0100.. in byte order (so a space is 'Ġ' U+0120 and a newline 'Ċ' U+010A).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cvllm::byte_level {

// The character that spells `byte`.
uint32_t code_point(uint8_t byte);

// The byte a character spells, or -1 when the character is not in the alphabet.
int byte_of(uint32_t code_point);

// Appends the UTF-8 encoding of the character that spells `byte`.
void append_spelling(std::string& out, uint8_t byte);

// The byte-level spelling of raw bytes.
std::string spell(std::string_view raw);

// What Hugging Face's ByteLevel decoder makes of one vocabulary token: the bytes its characters
// spell when all of them are in the alphabet, else the token's own UTF-8 text (added tokens such
// as "<|im_start|>" or a run of spaces are stored as plain text).
std::string token_bytes(std::string_view token);

}  // namespace cvllm::byte_level
