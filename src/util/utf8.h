// UTF-8 helpers shared by the tokenizer and the detokenizer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cvllm::utf8 {

// Length of the sequence a lead byte starts (1..4), or 0 for a continuation/invalid byte.
int sequence_length(uint8_t lead);

// Appends the UTF-8 encoding of a code point (invalid ones become U+FFFD).
void append(std::string& out, uint32_t code_point);

// Decodes the code point at `pos`, advancing it; invalid bytes decode to U+FFFD, one byte each.
uint32_t decode(std::string_view text, size_t& pos);

// Number of bytes at the end of `text` that form an incomplete (but so far valid) sequence:
// these must be held back until more bytes arrive.
size_t incomplete_suffix_length(std::string_view text);

// Replaces invalid sequences with U+FFFD, as Python's bytes.decode(errors="replace") does.
std::string sanitize(std::string_view text);

}  // namespace cvllm::utf8
