#include "tokenizer/hf_pre_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>

#include "tokenizer/byte_level.h"
#include "util/error.h"
#include "util/utf8.h"

namespace cvllm {

namespace {

// ByteLevel(use_regex=true): GPT-2's pattern.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// A piece of a word: a match of the split pattern or a gap between matches.
struct Span {
  size_t begin;
  size_t end;
  bool is_match;
};

bool in_char_class(HfPreTokenizer::CharClass char_class, uint32_t cp) {
  switch (char_class) {
    case HfPreTokenizer::CharClass::kWhiteSpace:
      return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
             (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
             cp == 0x205F || cp == 0x3000;
    case HfPreTokenizer::CharClass::kNumeric: {  // Rust char::is_numeric: Nd, Nl, No
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
      return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
             cat == UTF8PROC_CATEGORY_NO;
    }
    case HfPreTokenizer::CharClass::kPunctuation: {  // ASCII punctuation or Unicode P*
      if (cp < 0x80) {
        return (cp >= '!' && cp <= '/') || (cp >= ':' && cp <= '@') || (cp >= '[' && cp <= '`') ||
               (cp >= '{' && cp <= '~');
      }
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
      return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
    }
  }
  return false;
}

// Adds the gap before `begin` (if any) and the match [begin, end).
void push_match(size_t begin, size_t end, size_t& prev, std::vector<Span>& spans) {
  if (begin > prev) spans.push_back({prev, begin, false});
  spans.push_back({begin, end, true});
  prev = end;
}

// Folds matches and gaps into the pieces a split keeps, as tokenizers' split() does.
void fold_spans(const std::vector<Span>& spans, SplitBehavior behavior, std::vector<Span>& out) {
  out.clear();
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.is_match) out.push_back(s);
      }
      return;
    case SplitBehavior::kIsolated:
      out = spans;
      return;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      return;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return;
  }
}

std::string spell_bytes(std::string_view raw) {
  return byte_level::spell(raw);
}

}  // namespace

void HfPreTokenizer::add_split_regex(std::string_view pattern, SplitBehavior behavior,
                                     bool invert) {
  Step step{StepKind::kSplitRegex};
  step.regex = std::make_shared<const Regex>(pattern);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

void HfPreTokenizer::add_split_literal(std::string_view literal, SplitBehavior behavior,
                                       bool invert) {
  Step step{StepKind::kSplitLiteral};
  step.literal = std::string(literal);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

void HfPreTokenizer::add_split_chars(CharClass char_class, SplitBehavior behavior, bool invert) {
  Step step{StepKind::kSplitChars};
  step.char_class = char_class;
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

void HfPreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  Step step{StepKind::kByteLevel};
  if (use_regex) step.regex = std::make_shared<const Regex>(kGpt2Pattern);
  step.flag = add_prefix_space;
  steps_.push_back(std::move(step));
  has_byte_level_ = true;
}

void HfPreTokenizer::add_metaspace(std::string_view replacement, PrependScheme prepend_scheme,
                                   bool split) {
  Step step{StepKind::kMetaspace};
  step.literal = std::string(replacement);
  step.prepend_scheme = prepend_scheme;
  step.flag = split;
  steps_.push_back(std::move(step));
}

void HfPreTokenizer::pre_tokenize(std::string_view text, bool at_start,
                                  std::vector<PreWord>& words) const {
  words.clear();
  if (text.empty()) return;
  words.push_back({std::string(text), at_start});
  std::vector<PreWord> next;
  for (const Step& step : steps_) {
    next.clear();
    for (PreWord& word : words) apply(step, word, next);
    words.swap(next);
  }
}

void HfPreTokenizer::apply(const Step& step, PreWord& word, std::vector<PreWord>& out) const {
  std::string& text = word.text;
  std::vector<Span> spans;
  SplitBehavior behavior = step.behavior;
  bool invert = step.invert;
  bool spell = false;
  size_t prev = 0;
  switch (step.kind) {
    case StepKind::kByteLevel:
      if (step.flag && text.front() != ' ') text.insert(text.begin(), ' ');
      spell = true;
      behavior = SplitBehavior::kIsolated;
      if (!step.regex) {
        out.push_back({spell_bytes(text), word.at_start});
        return;
      }
      [[fallthrough]];
    case StepKind::kSplitRegex: {
      std::vector<TextRange> matches;
      step.regex->find_all(text, 0, matches);
      for (const TextRange& m : matches) push_match(m.begin, m.end, prev, spans);
      break;
    }
    case StepKind::kMetaspace: {
      std::string replaced;
      for (char c : text) {
        if (c == ' ') {
          replaced += step.literal;
        } else {
          replaced += c;
        }
      }
      bool starts = replaced.compare(0, step.literal.size(), step.literal) == 0;
      bool prepend = step.prepend_scheme == PrependScheme::kAlways ||
                     (step.prepend_scheme == PrependScheme::kFirst && word.at_start);
      if (prepend && !starts) replaced.insert(0, step.literal);
      text.swap(replaced);
      if (!step.flag) {
        out.push_back(std::move(word));
        return;
      }
      behavior = SplitBehavior::kMergedWithNext;
      invert = false;
      [[fallthrough]];
    }
    case StepKind::kSplitLiteral:
      if (!step.literal.empty()) {
        for (size_t hit = text.find(step.literal); hit != std::string::npos;
             hit = text.find(step.literal, hit + step.literal.size())) {
          push_match(hit, hit + step.literal.size(), prev, spans);
        }
      }
      break;
    case StepKind::kSplitChars:
      for (size_t pos = 0; pos < text.size();) {
        size_t begin = pos;
        uint32_t cp = utf8::decode(text, pos);
        if (in_char_class(step.char_class, cp)) push_match(begin, pos, prev, spans);
      }
      break;
  }
  if (prev < text.size()) spans.push_back({prev, text.size(), false});
  if (invert) {
    for (Span& s : spans) s.is_match = !s.is_match;
  }
  std::vector<Span> pieces;
  fold_spans(spans, behavior, pieces);
  for (const Span& p : pieces) {
    if (p.end <= p.begin) continue;
    std::string_view piece = std::string_view(text).substr(p.begin, p.end - p.begin);
    out.push_back({spell ? spell_bytes(piece) : std::string(piece), word.at_start && p.begin == 0});
  }
}

}  // namespace cvllm
