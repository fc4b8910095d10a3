#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <initializer_list>

#include "tokenizer/byte_level.h"
#include "util/error.h"

namespace cvllm {

namespace {

// Unicode White_Space, which is what Oniguruma's \s means for UTF-8 text (and Rust's
// char::is_whitespace): \t..\r, space, NEL, NBSP, Ogham space, U+2000..U+200A, line and paragraph
// separators, narrow NBSP, medium math space, ideographic space.
constexpr std::string_view kWhiteSpaceClassBody =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A})"
    R"(\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string expand_whitespace_classes(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char n = pattern[++i];
      if (n == 's') {
        out += in_class ? cat(kWhiteSpaceClassBody) : cat('[', kWhiteSpaceClassBody, ']');
      } else if (n == 'S') {
        CVLLM_CHECK(!in_class, "\\S inside a character class is not supported: ", pattern);
        out += cat("[^", kWhiteSpaceClassBody, ']');
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
    } else if (c == ']' && in_class) {
      in_class = false;
    }
    out += c;
  }
  return out;
}

// Match data holds only the whole-match offsets; one per thread, so one compiled Regex can be used
// by many threads at once.
struct ThreadMatchData {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  ~ThreadMatchData() { pcre2_match_data_free(data); }
};

pcre2_match_data* thread_match_data() {
  thread_local ThreadMatchData holder;
  CVLLM_CHECK(holder.data != nullptr, "out of memory creating PCRE2 match data");
  return holder.data;
}

std::string pcre2_error_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return std::string(reinterpret_cast<const char*>(buffer));
}

// --- The regexes of the Hugging Face pre-tokenizers we implement. ---

// ByteLevel(use_regex=true): GPT-2's pattern.
constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3 (tiktoken cl100k): case-insensitive contractions, numbers in groups of up to three.
constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2 / StableLM 2: as Llama 3 but one digit per word.
constexpr std::string_view kQwen2 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
                                    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Mistral tekken: words split at lower-to-upper case changes, one digit per word.
constexpr std::string_view kTekken =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)"
    R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-4o / Llama 4 (o200k): tekken's case split, contractions attached, numbers in threes.
constexpr std::string_view kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)"
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)"
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Digits(individual_digits=true) and Digits(individual_digits=false).
constexpr std::string_view kDigit = R"(\p{N})";
constexpr std::string_view kDigits = R"(\p{N}+)";
// Punctuation(behavior=Contiguous): Rust's is_ascii_punctuation or a Unicode P* character.
constexpr std::string_view kPunctuationRun = R"([\p{P}!-/:-@\[-`{-~]+)";
// DeepSeek LLM / Coder: newlines alone, then letter runs (a fixed list of cased scripts for LLM),
// punctuation runs, trailing whitespace, CJK/Hangul runs.
constexpr std::string_view kNewline = R"([\r\n])";
constexpr std::string_view kDeepseekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
    R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A})"
    R"(\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556})"
    R"(\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF})"
    R"(\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D})"
    R"(\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D})"
    R"(\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4})"
    R"(\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3})"
    R"(\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D})"
    R"(\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184})"
    R"(\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D})"
    R"(\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF})"
    R"(\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F})"
    R"(\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})"
    R"(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
constexpr std::string_view kDeepseekPunctuation =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
constexpr std::string_view kTrailingSpace = R"(\s+$)";
constexpr std::string_view kCjkHangul = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
constexpr std::string_view kDeepseekCoderLetters = R"(\s?\p{L}+)";
constexpr std::string_view kDeepseekCoderPunctuation = R"(\s?\p{P}+)";
// DeepSeek V3: numbers in threes, CJK/kana runs, then a cl100k-like split.
constexpr std::string_view kDeepseekV3Cjk =
    R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)";
constexpr std::string_view kDeepseekV3 =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
    R"(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kThreeDigits = R"(\p{N}{1,3})";
// BLOOM / Poro / GPT-3 Finnish: everything up to whitespace or sentence punctuation.
constexpr std::string_view kBloom =
    R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (name == n) return true;
  }
  return false;
}

}  // namespace

Regex::Regex(std::string_view pattern) {
  std::string expanded = expand_whitespace_classes(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.data()), expanded.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error_code,
                                   &error_offset, nullptr);
  if (code == nullptr) {
    throw Error(cat("cannot compile pre-tokenizer regex '", pattern, "' at offset ", error_offset,
                    ": ", pcre2_error_message(error_code)));
  }
  code_ = code;
  // JIT is optional: without it (unsupported platform) the interpreter gives the same matches.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view text, size_t base, std::vector<TextRange>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* match = thread_match_data();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    int rc = PCRE2_ERROR_JIT_STACKLIMIT;
    if (jit_) rc = pcre2_jit_match(code, subject, text.size(), offset, 0, match, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // No JIT, or its stack ran out: the interpreter keeps backtracking state on the heap.
      rc = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error(cat("pre-tokenizer regex match failed: ", pcre2_error_message(rc)));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {
      // An empty match yields no word; step over one character so the search moves on.
      offset = end + 1;
      while (offset < text.size() && (static_cast<uint8_t>(text[offset]) & 0xC0) == 0x80) ++offset;
      continue;
    }
    out.push_back({base + begin, base + end});
    offset = end;
  }
}

std::unique_ptr<PreTokenizer> PreTokenizer::for_pre_type(std::string_view pre) {
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  if (is_one_of(pre, {"gpt2", "gpt-2", "default", "mpt", "olmo", "jais", "phi-2", "roberta-bpe",
                      "gigachat", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de",
                      "jina-v2-code"})) {
    p->add_step(kGpt2);
  } else if (is_one_of(pre, {"starcoder", "refact", "smollm", "command-r", "codeshell", "exaone",
                             "minerva-7b"})) {
    p->add_step(kDigit);
    p->add_step(kGpt2);
  } else if (is_one_of(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3"})) {
    p->add_step(kLlama3);
    p->ignore_merges_ = true;
  } else if (is_one_of(pre, {"dbrx", "smaug-bpe", "chatglm-bpe"})) {
    p->add_step(kLlama3);
  } else if (is_one_of(pre, {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"})) {
    p->add_step(kQwen2);
  } else if (pre == "tekken") {
    p->add_step(kTekken);
    p->ignore_merges_ = true;
  } else if (is_one_of(pre, {"gpt-4o", "llama4"})) {
    p->add_step(kGpt4o);
  } else if (pre == "falcon") {
    p->add_step(kPunctuationRun);
    p->add_step(kGpt2);
    p->add_step(kDigits, /*after_byte_level=*/true);
    p->add_step("[0-9][0-9][0-9]", /*after_byte_level=*/true);
  } else if (pre == "deepseek-llm") {
    for (std::string_view s :
         {kNewline, kDeepseekLetters, kDeepseekPunctuation, kTrailingSpace, kCjkHangul, kDigit}) {
      p->add_step(s);
    }
  } else if (pre == "deepseek-coder") {
    for (std::string_view s :
         {kNewline, kDeepseekCoderLetters, kDeepseekCoderPunctuation, kCjkHangul, kDigit}) {
      p->add_step(s);
    }
  } else if (pre == "deepseek-v3") {
    p->add_step(kThreeDigits);
    p->add_step(kDeepseekV3Cjk);
    p->add_step(kDeepseekV3);
  } else if (is_one_of(pre, {"bloom", "poro-chat", "gpt3-finnish"})) {
    p->add_step(kBloom);
  } else if (pre == "viking") {
    p->add_step(kBloom);
    p->add_step(kDigit);
  } else {
    return nullptr;
  }
  return p;
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add_step(std::string_view pattern, bool after_byte_level) {
  steps_.push_back({std::make_unique<Regex>(pattern), after_byte_level});
}

namespace {

// Isolated behavior: every match and every non-empty gap between matches becomes a word.
void emit_isolated(const TextRange& word, const std::vector<TextRange>& matches,
                   std::vector<TextRange>& out) {
  size_t pos = word.begin;
  for (const TextRange& m : matches) {
    if (m.begin > pos) out.push_back({pos, m.begin});
    out.push_back(m);
    pos = m.end;
  }
  if (pos < word.end) out.push_back({pos, word.end});
}

}  // namespace

void PreTokenizer::split_byte_level(std::string_view text, const Step& step, const TextRange& word,
                                    std::vector<TextRange>& out) const {
  // Run the regex on the byte-level spelling, then map match offsets back to the raw bytes: every
  // raw byte is exactly one character of the spelling.
  std::string spelled;
  std::vector<size_t> raw_offset;  // raw offset of the byte at each offset of `spelled`
  for (size_t i = word.begin; i < word.end; ++i) {
    byte_level::append_spelling(spelled, static_cast<uint8_t>(text[i]));
    raw_offset.resize(spelled.size(), i);
  }
  raw_offset.push_back(word.end);
  thread_local std::vector<TextRange> matches;
  matches.clear();
  step.regex->find_all(spelled, 0, matches);
  for (TextRange& m : matches) m = {raw_offset[m.begin], raw_offset[m.end]};
  emit_isolated(word, matches, out);
}

void PreTokenizer::split(std::string_view text, std::vector<TextRange>& words) const {
  words.clear();
  if (text.empty()) return;
  words.push_back({0, text.size()});
  thread_local std::vector<TextRange> next;
  thread_local std::vector<TextRange> matches;
  for (const Step& step : steps_) {
    next.clear();
    for (const TextRange& word : words) {
      if (step.after_byte_level) {
        split_byte_level(text, step, word, next);
        continue;
      }
      matches.clear();
      step.regex->find_all(text.substr(word.begin, word.end - word.begin), word.begin, matches);
      emit_isolated(word, matches, next);
    }
    words.swap(next);
  }
}

}  // namespace cvllm
