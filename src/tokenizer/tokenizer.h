// The tokenizer of a GGUF model: text <-> token ids with Hugging Face `tokenizers` semantics, so
// the ids match what vLLM feeds the same model.
//
// Two vocabulary kinds (`tokenizer.ggml.model`):
// - "gpt2": byte-level BPE. Added tokens are cut out first; the rest is split into words by the
//   pre-tokenizer named by `tokenizer.ggml.pre` (pre_tokenizer.h), each word's bytes are spelled in
//   GPT-2's byte alphabet and merged by rank (`tokenizer.ggml.merges`, rank = index). A byte whose
//   character is not in the vocabulary is dropped, as HF's BPE does without an unk token.
// - "llama": sentencepiece-style BPE (Llama 2, Phi-3). Each stretch of text between added tokens is
//   normalized like their tokenizer.json (prepend "▁" when `tokenizer.ggml.add_space_prefix`, the
//   default; every " " -> "▁") and merged as one word, pairs ranked by the score of the token they
//   make; a character not in the vocabulary becomes its <0xXX> byte tokens, else the unknown token.
//
// Token types (`tokenizer.ggml.token_type`): control and unknown tokens are "special" — matched in
// text only when special parsing is on, dropped by decode(skip_special_tokens); user-defined tokens
// are always matched and always decoded. BOS/EOS/UNK/PAD/EOT ids count as special too (transformers
// registers them so).
//
// Decoding follows the HF decoders: byte-level maps each token's characters back to bytes (a token
// with characters outside the alphabet contributes its own text) and replaces invalid UTF-8 with
// U+FFFD per maximal invalid subpart; sentencepiece maps "▁" to " ", gathers runs of <0xXX> tokens
// (a run that is not valid UTF-8 becomes one U+FFFD per byte) and strips one leading space when
// add_space_prefix is on. Not done: `clean_up_tokenization_spaces` and
// `spaces_between_special_tokens` (transformers-level options that HF fast tokenizers ignore or
// that GGUF does not record).
//
// Not done either: the NFC normalizer some tokenizer.json files have (Qwen2, GPT-NeoX/MPT, OLMo,
// Command-R); text that is already NFC — nearly all text — is unaffected.
//
// Thread safety: a Tokenizer does not change after from_gguf (its word cache is locked inside);
// encode/decode may run on many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"

namespace cvllm {

class GgufFile;

// `tokenizer.ggml.token_type` values.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class TokenizerKind {
  kByteLevelBpe,      // tokenizer.ggml.model = "gpt2"
  kSentencePieceBpe,  // tokenizer.ggml.model = "llama"
};

class Tokenizer {
 public:
  // Reads the vocabulary from GGUF metadata. Throws cvllm::Error naming the file when it is
  // missing or malformed (no tokens, array lengths that disagree, an unsupported model).
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  ~Tokenizer();

  // add_special_tokens: add BOS/EOS as the vocabulary's add_bos/add_eos flags say.
  // parse_special: match control tokens written in the text (HF always does for added tokens;
  // llama.cpp's test vectors use false). Invalid UTF-8 in `text` is first replaced by U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true,
                              bool parse_special = true) const;

  // Throws cvllm::ValueError naming the first id outside [0, vocab_size).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  // The raw vocabulary string (byte-level spelling for BPE tokens). ValueError when out of range.
  std::string id_to_piece(int32_t id) const;
  // Added tokens first, then the model vocabulary (HF token_to_id order).
  std::optional<int32_t> piece_to_id(std::string_view piece) const;

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  TokenizerKind kind() const { return kind_; }
  const std::string& pre_type() const { return pre_type_; }
  TokenType token_type(int32_t id) const;  // ValueError when out of range
  // Control/unknown tokens and the BOS/EOS/UNK/PAD/EOT ids: skipped by skip_special_tokens.
  bool is_special(int32_t id) const;

  std::optional<int32_t> bos_token_id() const { return bos_; }
  std::optional<int32_t> eos_token_id() const { return eos_; }
  std::optional<int32_t> eot_token_id() const { return eot_; }
  std::optional<int32_t> pad_token_id() const { return pad_; }
  std::optional<int32_t> unk_token_id() const { return unk_; }
  bool add_bos_token() const { return add_bos_; }
  bool add_eos_token() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }

 private:
  friend class IncrementalDetokenizer;
  Tokenizer() = default;

  void load_vocab(const GgufFile& file);
  void load_merges(const GgufFile& file);
  void derive_spm_merges();
  void load_special_ids(const GgufFile& file);
  void build_added_tokens(const GgufFile& file);
  void build_decode_tables();

  void check_id(int32_t id) const;
  std::optional<int32_t> model_token(std::string_view piece) const;
  void encode_text(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_byte_level_word(std::string_view word, std::vector<int32_t>& ids) const;
  void encode_spm_text(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_spm_word(std::string_view word, std::vector<int32_t>& ids) const;
  bool find_cached(std::string_view word, std::vector<int32_t>& ids) const;
  void store_cached(std::string_view word, const std::vector<int32_t>& symbols) const;

  TokenizerKind kind_ = TokenizerKind::kByteLevelBpe;
  std::string pre_type_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // byte-level BPE only
  BpeMerges merges_;
  AddedTokenMatcher added_tokens_;

  std::vector<std::string> pieces_;  // [vocab_size] raw vocabulary strings
  std::vector<TokenType> types_;     // [vocab_size]
  std::vector<float> scores_;        // [vocab_size] (sentencepiece merge priorities)
  // The model vocabulary (every token that is not control or user-defined) and the added tokens,
  // by text; views into pieces_.
  std::unordered_map<std::string_view, int32_t> model_index_;
  std::unordered_map<std::string_view, int32_t> added_index_;
  int32_t byte_symbol_[256];  // id of each byte's initial symbol (its byte-level character or its
                              // <0xXX> token), -1 when the vocabulary lacks it

  std::vector<std::string> decoded_;  // [vocab_size] text/bytes each token contributes to decode
  std::vector<int16_t> byte_value_;   // [vocab_size] sentencepiece <0xXX> tokens: the byte, else -1
  std::vector<uint8_t> special_;      // [vocab_size] 1 when skip_special_tokens drops the token

  std::optional<int32_t> bos_, eos_, eot_, pad_, unk_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
  bool spm_words_split_at_space_ = false;

  // Words repeat a lot in text; their merged ids are cached (bounded, cleared when full).
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>
      word_cache_;
};

}  // namespace cvllm
