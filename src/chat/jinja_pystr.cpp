#include "chat/jinja_pystr.h"

#include <locale.h>
#include <wctype.h>

#include <algorithm>

#include "util/utf8.h"

namespace cvllm::jinja::py {

namespace {

// The C.UTF-8 locale carries glibc's Unicode character tables; the "C" locale would only know
// ASCII. Created once, never freed (it lives as long as the process).
locale_t unicode_locale() {
  static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0));
  return loc;
}

bool in_ranges(char32_t c, std::initializer_list<std::pair<char32_t, char32_t>> ranges) {
  for (const auto& [lo, hi] : ranges) {
    if (c >= lo && c <= hi) return true;
  }
  return false;
}

// Decodes one character at `pos`; an invalid byte decodes to U+FFFD and `raw` says whether the
// bytes were really U+FFFD (so callers can keep invalid bytes untouched).
char32_t next_char(std::string_view s, size_t& pos, bool* valid) {
  size_t start = pos;
  char32_t c = utf8::decode(s, pos);
  if (valid) {
    *valid = c != 0xFFFD || (pos - start == 3 && s.substr(start, 3) == "\xEF\xBF\xBD");
  }
  return c;
}

// Applies a per-character mapping, keeping invalid bytes as they are.
template <typename Fn>
std::string map_chars(std::string_view s, Fn fn) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    bool valid = true;
    char32_t c = next_char(s, pos, &valid);
    if (!valid) {
      out.append(s.substr(start, pos - start));
      continue;
    }
    fn(out, c);
  }
  return out;
}

void append_upper(std::string& out, char32_t c) {
  if (c == 0xDF) {  // Python: 'ß'.upper() == 'SS'
    out += "SS";
    return;
  }
  append_utf8(out, to_upper(c));
}

int64_t clamp_index(int64_t index, int64_t len) {
  if (index < 0) index += len;
  return std::clamp<int64_t>(index, 0, len);
}

}  // namespace

std::vector<size_t> char_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  size_t pos = 0;
  while (pos < s.size()) {
    offsets.push_back(pos);
    utf8::decode(s, pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

bool is_ascii(std::string_view s) {
  for (char ch : s) {
    if (static_cast<unsigned char>(ch) >= 0x80) return false;
  }
  return true;
}

size_t length(std::string_view s) {
  if (is_ascii(s)) return s.size();
  size_t n = 0, pos = 0;
  while (pos < s.size()) {
    utf8::decode(s, pos);
    ++n;
  }
  return n;
}

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  size_t pos = 0;
  while (pos < s.size()) out.push_back(utf8::decode(s, pos));
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  utf8::append(out, c);
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool is_linebreak(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  locale_t loc = unicode_locale();
  return loc && iswalpha_l(static_cast<wint_t>(c), loc);
}

// The first code point of common blocks of decimal digits 0-9 (Unicode Nd); Python knows them all.
constexpr char32_t kDigitZeros[] = {0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6,  0xB66, 0xBE6,
                                    0xC66, 0xCE6, 0xD66, 0xE50, 0xED0, 0xF20, 0x1040, 0xFF10};

int decimal_value(char32_t c) {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  for (char32_t zero : kDigitZeros) {
    if (c >= zero && c <= zero + 9) return static_cast<int>(c - zero);
  }
  return -1;
}

bool is_decimal(char32_t c) {
  return decimal_value(c) >= 0;
}

std::optional<std::string> number_text(std::string_view s) {
  std::string out;
  size_t pos = 0;
  while (pos < s.size()) {
    unsigned char b = static_cast<unsigned char>(s[pos]);
    if (b < 0x80) {
      // Characters a Python int or float literal can hold (digits, letters for bases and
      // inf/nan, sign, point, underscore); anything else ends the scan at once.
      if (!(isalnum(b) || b == '+' || b == '-' || b == '.' || b == '_')) return std::nullopt;
      out += static_cast<char>(b);
      ++pos;
      continue;
    }
    int d = decimal_value(utf8::decode(s, pos));
    if (d < 0) return std::nullopt;
    out += static_cast<char>('0' + d);
  }
  return out;
}

std::string_view strip_whitespace_view(std::string_view s) {
  size_t begin = 0, end = s.size();
  while (begin < end) {
    size_t next = begin;
    if (!is_space(utf8::decode(s, next))) break;
    begin = next;
  }
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 &&
           end - start < 4) {
      --start;
    }
    size_t next = start;
    char32_t c = utf8::decode(s, next);
    if (next != end || !is_space(c)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

bool is_alnum(char32_t c) {
  return is_alpha(c) || is_decimal(c);
}

bool is_word(char32_t c) {
  if (c == '_') return true;
  if (is_alnum(c)) return true;
  locale_t loc = unicode_locale();
  return c >= 0x80 && loc && iswalnum_l(static_cast<wint_t>(c), loc);
}

bool is_printable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c < 0xA0)) return false;
  if (c < 0x7F) return true;
  // Python's isprintable is false for the separators (Zs except space, Zl, Zp), format (Cf),
  // private-use (Co), surrogate (Cs) and unassigned (Cn) characters.
  if (in_ranges(c, {{0xA0, 0xA0},       {0xAD, 0xAD},       {0x600, 0x605},     {0x61C, 0x61C},
                    {0x6DD, 0x6DD},     {0x70F, 0x70F},     {0x890, 0x891},     {0x8E2, 0x8E2},
                    {0x1680, 0x1680},   {0x180E, 0x180E},   {0x2000, 0x200F},   {0x2028, 0x202F},
                    {0x205F, 0x2064},   {0x2066, 0x206F},   {0x3000, 0x3000},   {0xD800, 0xF8FF},
                    {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
                    {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
                    {0xE0020, 0xE007F}, {0xF0000, 0x10FFFF}})) {
    return false;
  }
  locale_t loc = unicode_locale();
  return !loc || iswprint_l(static_cast<wint_t>(c), loc);
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  locale_t loc = unicode_locale();
  return loc ? static_cast<char32_t>(towupper_l(static_cast<wint_t>(c), loc)) : c;
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  locale_t loc = unicode_locale();
  return loc ? static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), loc)) : c;
}

bool is_upper_char(char32_t c) {
  return to_lower(c) != c;
}
bool is_lower_char(char32_t c) {
  return to_upper(c) != c || c == 0xDF;
}
bool is_cased(char32_t c) {
  return is_upper_char(c) || is_lower_char(c);
}

std::string upper(std::string_view s) {
  return map_chars(s, append_upper);
}

std::string lower(std::string_view s) {
  if (s.find("\xCE\xA3") == std::string_view::npos) {
    return map_chars(s, [](std::string& out, char32_t c) { append_utf8(out, to_lower(c)); });
  }
  // Python's Final_Sigma rule: a capital sigma after a cased letter and not before one lowers
  // to the final form.
  std::vector<char32_t> cps = code_points(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    char32_t c = cps[i];
    if (c == 0x3A3) {
      bool after_cased = i > 0 && is_cased(cps[i - 1]);
      bool before_cased = i + 1 < cps.size() && is_cased(cps[i + 1]);
      append_utf8(out, after_cased && !before_cased ? 0x3C2 : 0x3C3);
    } else {
      append_utf8(out, to_lower(c));
    }
  }
  return out;
}

std::string swapcase(std::string_view s) {
  return map_chars(s, [](std::string& out, char32_t c) {
    if (is_upper_char(c)) {
      append_utf8(out, to_lower(c));
    } else if (is_lower_char(c)) {
      append_upper(out, c);
    } else {
      append_utf8(out, c);
    }
  });
}

std::string title(std::string_view s) {
  bool previous_cased = false;
  return map_chars(s, [&](std::string& out, char32_t c) {
    bool cased = is_cased(c);
    if (cased && !previous_cased) {
      append_upper(out, c);
    } else if (cased) {
      append_utf8(out, to_lower(c));
    } else {
      append_utf8(out, c);
    }
    previous_cased = cased;
  });
}

std::string capitalize(std::string_view s) {
  bool first = true;
  return map_chars(s, [&](std::string& out, char32_t c) {
    if (first) {
      append_upper(out, c);
    } else {
      append_utf8(out, to_lower(c));
    }
    first = false;
  });
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right) {
  std::vector<char32_t> strip_set;
  if (chars) strip_set = code_points(*chars);
  auto should_strip = [&](char32_t c) {
    if (!chars) return is_space(c);
    return std::find(strip_set.begin(), strip_set.end(), c) != strip_set.end();
  };
  // Only the ends are decoded, so stripping a long string costs what is stripped.
  size_t begin = 0, end = s.size();
  while (left && begin < end) {
    size_t next = begin;
    if (!should_strip(utf8::decode(s, next))) break;
    begin = next;
  }
  while (right && end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 &&
           end - start < 4) {
      --start;
    }
    size_t next = start;
    char32_t c = utf8::decode(s, next);
    if (next != end) {  // the last byte ends an invalid sequence: it is a character by itself
      start = end - 1;
      c = 0xFFFD;
    }
    if (!should_strip(c)) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

namespace {

std::vector<std::string> split_whitespace(std::string_view s, int64_t maxsplit, bool from_right) {
  // Work on characters so that multi-byte whitespace (U+3000, ...) splits too.
  std::vector<size_t> offsets = char_offsets(s);
  size_t n = offsets.size() - 1;
  std::vector<bool> space(n);
  for (size_t i = 0; i < n; ++i) {
    size_t pos = offsets[i];
    space[i] = is_space(utf8::decode(s, pos));
  }
  auto piece = [&](size_t a, size_t b) {
    return std::string(s.substr(offsets[a], offsets[b] - offsets[a]));
  };
  std::vector<std::string> out;
  if (!from_right) {
    size_t i = 0;
    while (i < n) {
      while (i < n && space[i]) ++i;
      if (i == n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t end = n;
        while (end > i && space[end - 1]) --end;
        out.push_back(piece(i, end));
        break;
      }
      size_t j = i;
      while (j < n && !space[j]) ++j;
      out.push_back(piece(i, j));
      i = j;
    }
    return out;
  }
  size_t i = n;
  while (i > 0) {
    while (i > 0 && space[i - 1]) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t begin = 0;
      while (begin < i && space[begin]) ++begin;
      out.push_back(piece(begin, i));
      break;
    }
    size_t j = i;
    while (j > 0 && !space[j - 1]) --j;
    out.push_back(piece(j, i));
    i = j;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace

std::optional<std::vector<std::string>> split(std::string_view s,
                                              const std::optional<std::string>& sep,
                                              int64_t maxsplit, bool from_right) {
  if (!sep) return split_whitespace(s, maxsplit, from_right);
  if (sep->empty()) return std::nullopt;
  std::vector<std::string> out;
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    if (end < sep->size()) break;
    size_t hit = s.rfind(*sep, end - sep->size());
    if (hit == std::string_view::npos) break;
    out.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
    end = hit;
  }
  out.emplace_back(s.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  std::vector<std::string> out;
  size_t line_start = 0, pos = 0;
  while (pos < s.size()) {
    size_t char_start = pos;
    char32_t c = utf8::decode(s, pos);
    if (!is_linebreak(c)) continue;
    size_t break_end = pos;
    if (c == '\r' && pos < s.size() && s[pos] == '\n') break_end = ++pos;
    out.emplace_back(s.substr(line_start, (keepends ? break_end : char_start) - line_start));
    line_start = break_end;
  }
  if (line_start < s.size()) out.emplace_back(s.substr(line_start));
  return out;
}

std::string replace(std::string_view s, std::string_view old_text, std::string_view new_text,
                    int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts the replacement before every character and at the end.
    std::vector<size_t> offsets = char_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      out += s.substr(offsets[i], offsets[i + 1] - offsets[i]);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(old_text, pos);
    if (hit == std::string_view::npos) break;
    out += s.substr(pos, hit - pos);
    out += new_text;
    pos = hit + old_text.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start,
             std::optional<int64_t> end, bool from_right) {
  std::vector<size_t> offsets = char_offsets(s);
  int64_t len = static_cast<int64_t>(offsets.size()) - 1;
  int64_t a = start ? clamp_index(*start, len) : 0;
  int64_t b = end ? clamp_index(*end, len) : len;
  if (a > b) return -1;
  std::string_view window = s.substr(offsets[a], offsets[b] - offsets[a]);
  size_t hit = from_right ? window.rfind(sub) : window.find(sub);
  if (hit == std::string_view::npos) return -1;
  size_t byte = offsets[a] + hit;
  return std::lower_bound(offsets.begin(), offsets.end(), byte) - offsets.begin();
}

int64_t count(std::string_view s, std::string_view sub, std::optional<int64_t> start,
              std::optional<int64_t> end) {
  std::vector<size_t> offsets = char_offsets(s);
  int64_t len = static_cast<int64_t>(offsets.size()) - 1;
  int64_t a = start ? clamp_index(*start, len) : 0;
  int64_t b = end ? clamp_index(*end, len) : len;
  if (a > b) return 0;
  if (sub.empty()) return b - a + 1;
  std::string_view window = s.substr(offsets[a], offsets[b] - offsets[a]);
  int64_t n = 0;
  size_t pos = 0;
  while ((pos = window.find(sub, pos)) != std::string_view::npos) {
    ++n;
    pos += sub.size();
  }
  return n;
}

std::string pad(std::string_view s, int64_t width, std::string_view fill, char align) {
  int64_t len = static_cast<int64_t>(length(s));
  if (width <= len) return std::string(s);
  int64_t total = width - len;
  int64_t left = 0;
  if (align == '>') {
    left = total;
  } else if (align == '^') {
    // CPython's str.center puts the extra space on the left when the odd count and width agree.
    left = total / 2 + (total & width & 1);
  }
  int64_t right = total - left;
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < right; ++i) out += fill;
  return out;
}

std::vector<int64_t> slice_indices(int64_t len, std::optional<int64_t> start,
                                   std::optional<int64_t> stop, int64_t step) {
  int64_t lower = step < 0 ? -1 : 0;
  int64_t upper = step < 0 ? len - 1 : len;
  auto adjust = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  int64_t a = adjust(start, step < 0 ? upper : lower);
  int64_t b = adjust(stop, step < 0 ? lower : upper);
  std::vector<int64_t> out;
  if (step > 0) {
    for (int64_t i = a; i < b; i += step) out.push_back(i);
  } else {
    for (int64_t i = a; i > b; i += step) out.push_back(i);
  }
  return out;
}

std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop,
                  int64_t step) {
  std::vector<size_t> offsets = char_offsets(s);
  int64_t len = static_cast<int64_t>(offsets.size()) - 1;
  std::string out;
  if (step == 1) {
    std::vector<int64_t> idx = slice_indices(len, start, stop, 1);
    if (idx.empty()) return out;
    return std::string(
        s.substr(offsets[idx.front()], offsets[idx.back() + 1] - offsets[idx.front()]));
  }
  for (int64_t i : slice_indices(len, start, stop, step)) {
    out += s.substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
  return out;
}

std::optional<std::string> char_at(std::string_view s, int64_t index) {
  std::vector<size_t> offsets = char_offsets(s);
  int64_t len = static_cast<int64_t>(offsets.size()) - 1;
  if (index < 0) index += len;
  if (index < 0 || index >= len) return std::nullopt;
  return std::string(s.substr(offsets[index], offsets[index + 1] - offsets[index]));
}

std::vector<std::string> chars(std::string_view s) {
  std::vector<size_t> offsets = char_offsets(s);
  std::vector<std::string> out;
  out.reserve(offsets.size() - 1);
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    out.emplace_back(s.substr(offsets[i], offsets[i + 1] - offsets[i]));
  }
  return out;
}

namespace {

template <typename Pred>
bool all_chars(std::string_view s, Pred pred) {
  if (s.empty()) return false;
  size_t pos = 0;
  while (pos < s.size()) {
    if (!pred(utf8::decode(s, pos))) return false;
  }
  return true;
}

}  // namespace

bool str_isspace(std::string_view s) {
  return all_chars(s, is_space);
}
bool str_isalpha(std::string_view s) {
  return all_chars(s, is_alpha);
}
bool str_isdigit(std::string_view s) {
  return all_chars(s, is_decimal);
}
bool str_isalnum(std::string_view s) {
  return all_chars(s, is_alnum);
}

bool str_islower(std::string_view s) {
  bool any_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c = utf8::decode(s, pos);
    if (is_upper_char(c)) return false;
    if (is_lower_char(c)) any_cased = true;
  }
  return any_cased;
}

bool str_isupper(std::string_view s) {
  bool any_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c = utf8::decode(s, pos);
    if (is_lower_char(c) && !is_upper_char(c)) return false;
    if (is_upper_char(c)) any_cased = true;
  }
  return any_cased;
}

bool str_istitle(std::string_view s) {
  bool any_cased = false, previous_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c = utf8::decode(s, pos);
    if (is_upper_char(c)) {
      if (previous_cased) return false;
      previous_cased = any_cased = true;
    } else if (is_lower_char(c)) {
      if (!previous_cased) return false;
      previous_cased = any_cased = true;
    } else {
      previous_cased = false;
    }
  }
  return any_cased;
}

}  // namespace cvllm::jinja::py
