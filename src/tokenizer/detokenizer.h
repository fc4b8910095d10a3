// Incremental detokenization for streaming: generated token ids go in one at a time, text comes out
// as soon as it is final. Concatenating every add_token() result and the final flush() gives
// exactly Tokenizer::decode(generated ids, skip_special_tokens) — with one difference that follows
// vLLM: the text continues the prompt, so sentencepiece's "strip one leading space" applies to the
// generated text only when the prompt decodes to nothing (e.g. just BOS with skipping on).
//
// Never emits part of a UTF-8 character; each call costs O(bytes of the new token) amortized:
// - byte-level BPE holds back only an unfinished UTF-8 sequence at the end (at most 3 bytes);
// - sentencepiece holds back a run of <0xXX> byte tokens until a non-byte token (or flush) ends it,
//   because HF decodes a run as a whole: one that is not valid UTF-8 becomes U+FFFD per byte.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace cvllm {

class Tokenizer;

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  IncrementalDetokenizer(const Tokenizer& tokenizer, std::span<const int32_t> prompt_ids,
                         bool skip_special_tokens);

  // Returns the text that `id` completes (possibly empty). ValueError for an out-of-range id.
  std::string add_token(int32_t id);
  // Returns whatever is held back (incomplete bytes become U+FFFD), at the end of generation.
  std::string flush();

 private:
  void emit(std::string_view text, std::string& out);
  void flush_byte_run(std::string& out);

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  bool strip_leading_space_;
  bool check_strip_marker_;  // the first decoded token decides whether to strip (Metaspace)
  // Byte-level: the bytes of an unfinished UTF-8 sequence. Sentencepiece: a run of byte tokens.
  std::string pending_;
};

}  // namespace cvllm
