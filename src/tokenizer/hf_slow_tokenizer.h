// GPT-2-style "slow" tokenizer files: vocab.json + merges.txt (+ tokenizer_config.json,
// special_tokens_map.json) with no tokenizer.json, as facebook/opt-* and openai-community/gpt2
// ship them. We build the tokenizer.json that transformers builds for GPT2Tokenizer from the same
// files (its GPT2Converter / tokenizers-backed GPT2Tokenizer), and load that like any other:
//   model            BPE over vocab.json and merges.txt (no unk token, no byte fallback)
//   pre_tokenizer    ByteLevel(add_prefix_space = tokenizer_config "add_prefix_space", default
//                    false; GPT-2's regex)
//   decoder          ByteLevel
//   post_processor   none: tokenizer_config's add_bos_token / add_eos_token decide what is added
//                    (OPT sets add_bos_token with "</s>" as bos_token; GPT-2 adds nothing)
//   added_tokens     tokenizer_config's added_tokens_decoder (id -> content and flags), then the
//                    special tokens it or special_tokens_map.json names (bos, eos, unk, pad, sep,
//                    cls, mask, additional_special_tokens) that are not added yet: their vocab.json
//                    id, or the next free id after the vocabulary.
// bos, eos and unk default to "<|endoftext|>" when neither file names them (GPT2Tokenizer's
// defaults: openai-community/gpt2's tokenizer_config.json holds only model_max_length).
// Another tokenizer_class (Roberta, CLIP, Qwen2, ...) uses the same file names with a different
// pipeline; it is an Error naming the class rather than a silently different tokenization.
#pragma once

#include <string>
#include <string_view>

namespace cvllm {

struct SlowTokenizerJson {
  std::string tokenizer_json;         // the body of the equivalent tokenizer.json
  std::string tokenizer_config_json;  // tokenizer_config.json with special_tokens_map.json merged
                                      // in and GPT2Tokenizer's default special tokens filled in
};

// Builds the tokenizer.json for these files; pass both results to Tokenizer::from_hf_json.
// `dir_prefix` ("<dir>/") names the files in errors. Throws cvllm::Error naming the file for
// malformed JSON, a malformed merges line, a bad added token or an unsupported tokenizer_class.
SlowTokenizerJson gpt2_tokenizer_json_from_slow_files(std::string_view vocab_json,
                                                      std::string_view merges_txt,
                                                      std::string_view tokenizer_config_json,
                                                      std::string_view special_tokens_map_json,
                                                      const std::string& dir_prefix);

}  // namespace cvllm
