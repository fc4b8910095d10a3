// Pre-tokenization: how a byte-level BPE vocabulary cuts text into the words that BPE then merges
// within. Each `tokenizer.ggml.pre` name maps to the steps of that model's Hugging Face
// tokenizer.json `pre_tokenizer`, written as regex splits with "Isolated" behavior (every match and
// every gap between matches becomes a word):
//   Split(regex)            -> that regex
//   Digits(individual)      -> \p{N} (or \p{N}+ when not individual)
//   Punctuation(Contiguous) -> runs of ASCII punctuation or \p{P}
//   ByteLevel(use_regex)    -> the GPT-2 regex; steps after a ByteLevel see the byte-level spelling
//                              of the text (falcon's Digits runs after it), marked
//                              `after_byte_level`.
// Each step runs on every word the previous steps produced, so lookarounds and `$` see only that
// word, as in Hugging Face `tokenizers`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cvllm {

// A [begin, end) byte range of some text.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

// A PCRE2 pattern compiled for UTF-8 with Unicode properties (\p{L}, \p{N}, ...), JIT-compiled
// when the platform supports it. `\s` and `\S` are rewritten to Unicode White_Space, the class
// Oniguruma (which Hugging Face uses) gives them; PCRE2's own \s also takes U+180E.
class Regex {
 public:
  // Throws cvllm::Error when the pattern does not compile.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the successive non-overlapping matches in `text` (which must be valid UTF-8), as
  // ranges offset by `base`.
  void find_all(std::string_view text, size_t base, std::vector<TextRange>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

class PreTokenizer {
 public:
  // The steps for a `tokenizer.ggml.pre` name; nullptr for a name we do not know.
  static std::unique_ptr<PreTokenizer> for_pre_type(std::string_view pre_type);
  ~PreTokenizer();

  // Splits `text` (valid UTF-8) into words, as byte ranges of `text`, in order, covering it.
  void split(std::string_view text, std::vector<TextRange>& words) const;

  // Hugging Face BPE `ignore_merges`: a word that is itself a vocabulary token is emitted whole.
  bool ignore_merges() const { return ignore_merges_; }

 private:
  struct Step {
    std::unique_ptr<Regex> regex;
    bool after_byte_level = false;
  };
  PreTokenizer() = default;
  void add_step(std::string_view pattern, bool after_byte_level = false);
  void split_byte_level(std::string_view text, const Step& step, const TextRange& word,
                        std::vector<TextRange>& out) const;

  std::vector<Step> steps_;
  bool ignore_merges_ = false;
};

}  // namespace cvllm
