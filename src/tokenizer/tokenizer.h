// The tokenizer of a model: text <-> token ids with Hugging Face `tokenizers` semantics, so the ids
// match what vLLM feeds the same model. Two ways to build one: from_gguf (the vocabulary in GGUF
// metadata, below) and from_hf_json (a Hugging Face tokenizer.json; hf_tokenizer.h).
//
// GGUF vocabularies come in two kinds (`tokenizer.ggml.model`):
// - "gpt2": byte-level BPE. Added tokens are cut out first; the rest is split into words by the
//   pre-tokenizer named by `tokenizer.ggml.pre` (pre_tokenizer.h), each word's bytes are spelled in
//   GPT-2's byte alphabet and merged by rank (`tokenizer.ggml.merges`, rank = index). A byte whose
//   character is not in the vocabulary is dropped, as HF's BPE does without an unk token. The
//   pre-types whose tokenizer.json has an NFC normalizer (Qwen2 and its derivatives, GPT-NeoX/MPT,
//   OLMo, Command-R) normalize each stretch of text between added tokens to NFC first.
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
// A tokenizer.json runs its own pipeline (HfPipeline): added tokens with normalized=false are cut
// out of the raw text, each stretch between them is normalized (normalizer.h), added tokens with
// normalized=true are cut out of that, the rest is pre-tokenized (hf_pre_tokenizer.h) and each word
// is merged by the BPE model (byte_fallback, unk_token/fuse_unk, ignore_merges as the file says).
// Its added tokens flagged special get type control (the only ones skip_special_tokens drops, as
// in `tokenizers`), the others user-defined. Its post-processor gives the ids added around the
// text; its decoder is mapped onto one of the two decoding modes below (hf_tokenizer.cpp lists the
// decoder chains we accept).
//
// Decoding follows the HF decoders: byte-level maps each token's characters back to bytes (a token
// with characters outside the alphabet contributes its own text) and replaces invalid UTF-8 with
// U+FFFD per maximal invalid subpart; sentencepiece maps "▁" to " ", gathers runs of <0xXX> tokens
// (a run that is not valid UTF-8 becomes one U+FFFD per byte) and strips one leading space when
// add_space_prefix is on. Not done: `clean_up_tokenization_spaces` and
// `spaces_between_special_tokens` (transformers-level options that HF fast tokenizers ignore or
// that GGUF does not record).
//
// Thread safety: a Tokenizer does not change after it is built (its word cache is locked inside);
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
struct HfPipeline;

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
  // Builds the tokenizer a Hugging Face checkpoint describes: `tokenizer_json` is the body of
  // tokenizer.json; `tokenizer_config_json` and `special_tokens_map_json` those of the optional
  // side files (empty when absent). `source` names the files in error messages. Throws
  // cvllm::Error for malformed JSON or an unsupported component. (hf_tokenizer.cpp)
  static std::unique_ptr<Tokenizer> from_hf_json(std::string_view tokenizer_json,
                                                 std::string_view tokenizer_config_json = {},
                                                 std::string_view special_tokens_map_json = {},
                                                 std::string_view source = "tokenizer.json");
  ~Tokenizer();

  // add_special_tokens: add BOS/EOS as the vocabulary's add_bos/add_eos flags say (for a
  // tokenizer.json: the ids its post-processor adds around the text).
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
  void set_template_from_flags();

  // tokenizer.json loading (hf_tokenizer.cpp).
  class HfLoader;
  friend class HfLoader;

  void check_id(int32_t id) const;
  std::optional<int32_t> model_token(std::string_view piece) const;
  void encode_text(std::string_view text, bool at_start, bool parse_special,
                   std::vector<int32_t>& ids) const;
  void encode_hf_text(std::string_view text, bool at_start, bool parse_special,
                      std::vector<int32_t>& ids) const;
  void encode_hf_word(std::string_view word, std::vector<int32_t>& ids) const;
  void encode_hf_segment(std::string_view segment, std::vector<int32_t>& ids) const;
  void encode_byte_level_word(std::string_view word, std::vector<int32_t>& ids) const;
  void encode_spm_text(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_spm_word(std::string_view word, std::vector<int32_t>& ids) const;
  bool find_cached(std::string_view word, std::vector<int32_t>& ids) const;
  void store_cached(std::string_view word, const std::vector<int32_t>& symbols) const;

  TokenizerKind kind_ = TokenizerKind::kByteLevelBpe;
  std::string pre_type_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // GGUF byte-level BPE only
  std::unique_ptr<HfPipeline> hf_;               // tokenizer.json only
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
  bool nfc_ = false;  // GGUF byte-level: NFC-normalize text between added tokens
  // Ids encode(add_special_tokens=true) puts before / after the text's ids.
  std::vector<int32_t> prefix_ids_;
  std::vector<int32_t> suffix_ids_;
  // Sentencepiece decoding: drop one leading space of the decoded text; when strip_marker_ is set
  // (HF Metaspace decoder), only if the first decoded token's text starts with that marker.
  bool strip_leading_space_ = false;
  std::string strip_marker_;

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
