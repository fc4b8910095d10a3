// libFuzzer target for the Hugging Face tokenizer.json loader (Tokenizer::from_hf_json).
//
// Input: a tokenizer.json body; if it holds a NUL byte (never valid inside JSON), what follows the
// first NUL is the tokenizer_config.json body. Loading and encoding may only fail with
// cvllm::Error. A tokenizer that loads must encode a fixed hard string (added-token look-alikes,
// digits, whitespace runs, CJK, emoji, combining marks) with and without special tokens to ids
// inside its vocabulary, decode them to valid UTF-8 with skip_special_tokens on and off, and the
// incremental detokenizer must give the same text. Any other exception or broken invariant aborts.
// Seed corpus: tests/fuzz/corpus/tokenizer_json/ (tiny tokenizers of each supported pipeline,
// written by scripts/gen_hf_tokenizer_fixtures.py).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace {

constexpr std::string_view kText =
    "Hello world! <s>Hi</s> <|im_start|>user\n  x\t\t\ty  12345 3.14 caf\xC3\xA9 cafe\xCC\x81 "
    "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xE2\x96\x81x <0x41> [x] hello "
    "world";

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

void exercise(const cvllm::Tokenizer& tokenizer) {
  for (bool add_special : {true, false}) {
    std::vector<int32_t> ids = tokenizer.encode(kText, add_special);
    for (int32_t id : ids) check(id >= 0 && id < tokenizer.vocab_size(), "id out of range");
    for (bool skip : {true, false}) {
      std::string text = tokenizer.decode(ids, skip);
      check(cvllm::utf8::sanitize(text) == text, "decode gave invalid UTF-8");
      cvllm::IncrementalDetokenizer detokenizer(tokenizer, {}, skip);
      std::string streamed;
      for (int32_t id : ids) streamed += detokenizer.add_token(id);
      streamed += detokenizer.flush();
      check(streamed == text, "incremental decode differs from decode");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view config;
  if (size_t nul = input.find('\0'); nul != std::string_view::npos) {
    config = input.substr(nul + 1);
    input = input.substr(0, nul);
  }
  std::unique_ptr<cvllm::Tokenizer> tokenizer;
  try {
    tokenizer = cvllm::Tokenizer::from_hf_json(input, config);
  } catch (const cvllm::Error&) {
    return 0;  // rejected with a message: fine
  }
  try {
    exercise(*tokenizer);
  } catch (const cvllm::Error&) {
    // e.g. a pathological Split regex hitting PCRE2's match limit: reported, not a crash
  }
  return 0;
}
