// Loading a Hugging Face checkpoint's tokenizer: `tokenizer.json` (the `tokenizers` library's
// serialized pipeline: normalizer, pre-tokenizer, BPE model, post-processor, decoder, added tokens)
// plus `tokenizer_config.json` / `special_tokens_map.json` when present (add_bos_token /
// add_eos_token overrides, bos/eos/unk/pad token strings). The result is the same Tokenizer class
// that a GGUF vocabulary builds, so encode/decode/IncrementalDetokenizer work unchanged.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace cvllm {

// Reads `dir`/tokenizer.json (or, without it, GPT-2-style `dir`/vocab.json + merges.txt:
// hf_slow_tokenizer.h) and `dir`/tokenizer_config.json, `dir`/special_tokens_map.json
// (optional). Throws cvllm::Error naming the file and the problem: a missing tokenizer.json (and
// no vocab.json + merges.txt), malformed JSON, or a component we do not support (model type,
// pre-tokenizer, normalizer, decoder, post-processor).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir);

// Whether `dir` has files load_hf_tokenizer can use: tokenizer.json, or vocab.json + merges.txt.
bool has_hf_tokenizer_files(const std::string& dir);

}  // namespace cvllm
