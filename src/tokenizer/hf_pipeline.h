// What a Tokenizer built from a Hugging Face tokenizer.json needs beyond the GGUF machinery: the
// normalizer, the pre-tokenizer, the added tokens matched after normalization, and the BPE model's
// options. Private to the tokenizer library (tokenizer.cpp encodes with it, hf_tokenizer.cpp builds
// it).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "tokenizer/added_tokens.h"
#include "tokenizer/hf_pre_tokenizer.h"
#include "tokenizer/normalizer.h"

namespace cvllm {

struct HfPipeline {
  Normalizer normalizer;
  HfPreTokenizer pre_tokenizer;
  // Added tokens with normalized=true: matched in each stretch of normalized text (their text was
  // normalized too); the others are matched in the raw text by Tokenizer::added_tokens_.
  AddedTokenMatcher normalized_added_tokens;

  // BPE model options (tokenizer.json "model").
  bool byte_fallback = false;  // a character missing from the vocabulary -> its <0xXX> tokens
  bool fuse_unk = false;       // consecutive unknown characters -> one unknown token
  bool ignore_merges = false;  // a word that is a vocabulary token is emitted whole
  std::string continuing_subword_prefix;  // prefixed to every character but a word's first
  std::string end_of_word_suffix;         // appended to a word's last character
  std::optional<int32_t> unk;             // the model's unk_token id
  int32_t byte_token[256];                // id of "<0xXX>" for each byte, -1 when missing
  // Words may be cut before each "▁" that follows another character: no merge result has such a
  // "▁" inside, so no merge can cross the cut (see Tokenizer::derive_spm_merges).
  bool split_at_marker = false;
  // Model vocabulary strings that are not pieces_[id] (an added token took the id over, or two
  // strings share an id): stable storage for Tokenizer::model_index_'s views.
  std::deque<std::string> shadowed_pieces;
};

}  // namespace cvllm
