// The pre-tokenizers of Hugging Face `tokenizer.json` files, as a list of steps applied in order to
// every word the previous steps produced (a `Sequence` is flattened into the list). Unlike
// pre_tokenizer.h (GGUF: byte ranges of the raw text, byte-level spelling done by the caller), the
// words here are strings, because steps rewrite text: ByteLevel spells each word in GPT-2's byte
// alphabet (steps after it see that spelling), Metaspace turns spaces into "▁" and may prepend one.
//
// Split semantics follow `tokenizers`' SplitDelimiterBehavior over the list of matches and gaps
// that covers a word (a regex or literal yields its non-overlapping matches; a character class
// yields one match per matching character): Removed drops matches, Isolated keeps each piece,
// MergedWithPrevious / MergedWithNext glue a match to the gap before / after it, Contiguous joins
// runs of adjacent matches; `invert` swaps matches and gaps first. Empty words are dropped.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pre_tokenizer.h"

namespace cvllm {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

enum class PrependScheme { kFirst, kAlways, kNever };

// One word: its text and whether it begins at offset 0 of the original input (Metaspace's
// prepend_scheme "first" prepends only there).
struct PreWord {
  std::string text;
  bool at_start = false;
};

class HfPreTokenizer {
 public:
  enum class CharClass { kNumeric, kPunctuation, kWhiteSpace };

  // Throws cvllm::Error when the regex does not compile.
  void add_split_regex(std::string_view pattern, SplitBehavior behavior, bool invert);
  void add_split_literal(std::string_view literal, SplitBehavior behavior, bool invert);
  void add_split_chars(CharClass char_class, SplitBehavior behavior, bool invert);
  void add_byte_level(bool add_prefix_space, bool use_regex);
  void add_metaspace(std::string_view replacement, PrependScheme prepend_scheme, bool split);

  bool empty() const { return steps_.empty(); }
  // Whether a ByteLevel step is present (its words are byte-level spelled).
  bool has_byte_level() const { return has_byte_level_; }

  // Replaces `words` with the words of `text` (valid UTF-8).
  void pre_tokenize(std::string_view text, bool at_start, std::vector<PreWord>& words) const;

 private:
  enum class StepKind { kSplitRegex, kSplitLiteral, kSplitChars, kByteLevel, kMetaspace };
  struct Step {
    StepKind kind;
    std::shared_ptr<const Regex> regex;  // kSplitRegex; kByteLevel with use_regex
    std::string literal;                 // kSplitLiteral; kMetaspace's replacement
    CharClass char_class = CharClass::kNumeric;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool flag = false;  // kByteLevel: add_prefix_space; kMetaspace: split
    PrependScheme prepend_scheme = PrependScheme::kAlways;
  };
  void apply(const Step& step, PreWord& word, std::vector<PreWord>& out) const;

  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

}  // namespace cvllm
