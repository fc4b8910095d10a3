// Added tokens — control tokens ("<|im_start|>"), user-defined ones (runs of spaces, "<think>") —
// are found in the raw text before any normalization or BPE, like Hugging Face's AddedVocabulary:
// leftmost match first, the longest one at that position. Control tokens are matched only when
// special parsing is on; user-defined tokens always are (as in llama.cpp and in HF, where
// `split_special_tokens` only affects special tokens).
// `lstrip` / `rstrip` make a match swallow the whitespace before / after it (HF AddedToken flags;
// a GGUF does not store them, the tokenizer sets them for the models known to need them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pre_tokenizer.h"

namespace cvllm {

class AddedTokenMatcher {
 public:
  struct Token {
    int32_t id = -1;
    bool special = false;  // matched only when special parsing is on
    bool lstrip = false;
    bool rstrip = false;
    // Matched only between non-word characters (HF single_word); a rejected match is skipped
    // whole, as HF's matcher moves past it.
    bool single_word = false;
  };

  // A piece of the text: an added token (id >= 0) or ordinary text between tokens (id == -1).
  struct Piece {
    TextRange range;
    int32_t id = -1;
  };

  // Registers `text` (non-empty). A text registered twice keeps its last id (a later vocabulary
  // entry wins, as in a Python dict).
  void add(std::string_view text, const Token& token);
  bool empty() const { return tokens_.empty(); }

  // Splits `text` into ordinary text and added tokens; pieces cover the text in order, except
  // whitespace swallowed by lstrip/rstrip (an added token found inside whitespace that an rstrip
  // swallowed is still emitted after it, as in HF).
  void split(std::string_view text, bool parse_special, std::vector<Piece>& out) const;

 private:
  struct Node {
    int32_t token = -1;  // index into tokens_ when a registered text ends here
  };
  int32_t child(int32_t node, uint8_t byte) const {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
    return it == edges_.end() ? -1 : it->second;
  }
  // Longest eligible token text starting at `pos`: returns its length (0 if none).
  size_t longest_match(std::string_view text, size_t pos, bool parse_special, int32_t* token) const;

  std::vector<Node> nodes_{Node{}};              // nodes_[0] is the root of a byte trie
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child node
  std::vector<Token> tokens_;
  bool first_byte_[256] = {};
};

}  // namespace cvllm
