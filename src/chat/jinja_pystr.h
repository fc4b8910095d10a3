// Python `str` semantics over UTF-8 bytes, for the Jinja engine: lengths, indices and slices count
// code points; whitespace, line breaks, case mapping and printability follow Python's
// definitions. Case mapping and character classes use the C.UTF-8 locale's Unicode tables (simple
// one-to-one mappings, plus Python's special case ß -> SS); where that locale is missing only
// ASCII is mapped. Invalid UTF-8 bytes count as one character each and are kept as they are.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cvllm::jinja::py {

// Byte offsets where each character starts, plus a final entry equal to s.size().
std::vector<size_t> char_offsets(std::string_view s);
bool is_ascii(std::string_view s);
size_t length(std::string_view s);
std::vector<char32_t> code_points(std::string_view s);
void append_utf8(std::string& out, char32_t c);

bool is_space(char32_t c);      // str.isspace
bool is_linebreak(char32_t c);  // str.splitlines boundaries
bool is_alpha(char32_t c);
bool is_decimal(char32_t c);
int decimal_value(char32_t c);  // 0-9 for decimal digits of any script, else -1
// The text of a would-be number with the decimal digits of other scripts made ASCII (Python's
// int()/float() accept them), or nullopt at the first character no number can hold.
std::optional<std::string> number_text(std::string_view s);
// str.strip() without copying.
std::string_view strip_whitespace_view(std::string_view s);
bool is_alnum(char32_t c);
bool is_word(char32_t c);  // regex \w
bool is_printable(char32_t c);
bool is_cased(char32_t c);
bool is_upper_char(char32_t c);
bool is_lower_char(char32_t c);
char32_t to_upper(char32_t c);
char32_t to_lower(char32_t c);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string title(std::string_view s);       // str.title
std::string capitalize(std::string_view s);  // str.capitalize
std::string swapcase(std::string_view s);

// str.strip/lstrip/rstrip; `chars` unset strips whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right);
// str.split / str.rsplit; `sep` unset splits on runs of whitespace. maxsplit < 0: no limit.
// Throws (ValueError "empty separator") through the caller's error path: returns nullopt.
std::optional<std::vector<std::string>> split(std::string_view s,
                                              const std::optional<std::string>& sep,
                                              int64_t maxsplit, bool from_right);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
std::string replace(std::string_view s, std::string_view old_text, std::string_view new_text,
                    int64_t count);
// Code-point index of `sub` within s[start:end] (Python index rules), or -1.
int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start,
             std::optional<int64_t> end, bool from_right);
int64_t count(std::string_view s, std::string_view sub, std::optional<int64_t> start,
              std::optional<int64_t> end);
// str.center / ljust / rjust: align is '^', '<' or '>'.
std::string pad(std::string_view s, int64_t width, std::string_view fill, char align);

// Python slice index arithmetic (PySlice_AdjustIndices). Returns the selected indices.
std::vector<int64_t> slice_indices(int64_t len, std::optional<int64_t> start,
                                   std::optional<int64_t> stop, int64_t step);
std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop,
                  int64_t step);
// The character at Python index `index` (negative counts from the end), or nullopt.
std::optional<std::string> char_at(std::string_view s, int64_t index);
// The characters of s, one string each (iteration over a str).
std::vector<std::string> chars(std::string_view s);

bool str_isspace(std::string_view s);
bool str_isalpha(std::string_view s);
bool str_isdigit(std::string_view s);
bool str_isalnum(std::string_view s);
bool str_islower(std::string_view s);
bool str_isupper(std::string_view s);
bool str_istitle(std::string_view s);

}  // namespace cvllm::jinja::py
