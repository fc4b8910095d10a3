// libFuzzer target for the tokenizer and the incremental detokenizer. Real vocabularies from
// shared/testdata/tokenizer are loaded once: GPT-2 (byte-level, every byte in the alphabet), Llama
// 2 (sentencepiece with byte fallback), Phi-3 (rstrip added tokens), DeepSeek LLM (multi-regex
// pre-tokenizer, user-defined tokens) and Falcon (a split after the byte-level mapping).
//
// Input: byte 0 picks the vocabulary and the flags, the rest is the payload.
// - encode mode: the payload is text (any bytes, invalid UTF-8 included). Every id must be in
// range,
//   decode must give valid UTF-8, the incremental detokenizer must agree with decode, and where HF
//   semantics promise it the text must round-trip (GPT-2 always; Llama 2 without special parsing).
// - decode mode: the payload is a list of little-endian int32 ids, either reduced into range or
//   raw; raw ones out of range must raise ValueError (and nothing else).
// Any broken invariant aborts, which libFuzzer reports as a crash.
// Seed corpus: tests/fuzz/corpus/tokenizer/.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace {

using cvllm::Tokenizer;

struct Vocab {
  const char* name;
  std::unique_ptr<Tokenizer> tokenizer;
};

std::vector<Vocab>& vocabs() {
  static std::vector<Vocab> v = [] {
    std::vector<Vocab> out;
    for (const char* name : {"gpt-2", "llama-spm", "phi-3", "deepseek-llm", "falcon"}) {
      std::string path = std::string(CVLLM_SOURCE_DIR) +
                         "/../shared/testdata/tokenizer/ggml-vocab-" + name + ".gguf";
      out.push_back({name, Tokenizer::from_gguf(*cvllm::GgufFile::open(path))});
    }
    return out;
  }();
  return v;
}

void check(bool ok, const char* what, const Vocab& vocab) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken (%s): %s\n", vocab.name, what);
    std::abort();
  }
}

bool valid_utf8(const std::string& s) {
  return cvllm::utf8::sanitize(s) == s;
}

std::string decode_incrementally(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  cvllm::IncrementalDetokenizer detokenizer(tok, {}, skip);
  std::string text;
  for (int32_t id : ids) text += detokenizer.add_token(id);
  return text + detokenizer.flush();
}

void check_decode(const Vocab& vocab, const std::vector<int32_t>& ids, bool skip) {
  const Tokenizer& tok = *vocab.tokenizer;
  std::string text = tok.decode(ids, skip);
  check(valid_utf8(text), "decode gave invalid UTF-8", vocab);
  check(decode_incrementally(tok, ids, skip) == text, "incremental decode differs", vocab);
}

void fuzz_encode(const Vocab& vocab, std::string_view text, bool add_special, bool parse_special) {
  const Tokenizer& tok = *vocab.tokenizer;
  std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  for (int32_t id : ids) check(id >= 0 && id < tok.vocab_size(), "id out of range", vocab);
  check_decode(vocab, ids, true);
  check_decode(vocab, ids, false);
  // Sentencepiece decodes a literal "▁" in the input as a space, as HF does.
  bool round_trips = std::strcmp(vocab.name, "gpt-2") == 0 ||
                     (std::strcmp(vocab.name, "llama-spm") == 0 && !parse_special &&
                      text.find("\xE2\x96\x81") == std::string_view::npos);
  if (round_trips && !add_special) {
    check(tok.decode(ids, false) == cvllm::utf8::sanitize(text), "round trip failed", vocab);
  }
}

void fuzz_decode(const Vocab& vocab, const uint8_t* data, size_t size, bool clamp, bool skip) {
  const Tokenizer& tok = *vocab.tokenizer;
  std::vector<int32_t> ids;
  bool any_out_of_range = false;
  for (size_t i = 0; i + 4 <= size; i += 4) {
    int32_t id;
    std::memcpy(&id, data + i, 4);
    if (clamp) id = static_cast<int32_t>(static_cast<uint32_t>(id) % tok.vocab_size());
    any_out_of_range |= id < 0 || id >= tok.vocab_size();
    ids.push_back(id);
  }
  if (!any_out_of_range) {
    check_decode(vocab, ids, skip);
    return;
  }
  try {
    tok.decode(ids, skip);
    check(false, "no ValueError for an out-of-range id", vocab);
  } catch (const cvllm::ValueError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const Vocab& vocab = vocabs()[(flags & 7) % vocabs().size()];
  const bool bit_a = flags & 8, bit_b = flags & 16, decode_mode = flags & 32;
  ++data;
  --size;
  if (decode_mode) {
    fuzz_decode(vocab, data, size, /*clamp=*/bit_a, /*skip=*/bit_b);
  } else {
    fuzz_encode(vocab, std::string_view(reinterpret_cast<const char*>(data), size),
                /*add_special=*/bit_a, /*parse_special=*/bit_b);
  }
  return 0;
}
