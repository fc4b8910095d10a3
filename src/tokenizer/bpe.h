// Byte-pair merging within one word. A word starts as a list of symbol ids (one per byte for
// byte-level vocabularies, one per character for sentencepiece-style ones); the adjacent pair with
// the lowest merge rank is replaced by its merged token, the leftmost first among equal ranks,
// until no adjacent pair has a merge. This is Hugging Face `tokenizers`' BPE order.
//
// Cost: O(n log n) for n symbols — a doubly linked list of symbols and a min-heap of candidate
// pairs; a heap entry whose pair was changed by an earlier merge is recognised and dropped when
// popped (its recorded ids no longer match).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace cvllm {

class BpeMerges {
 public:
  // Registers the merge (left, right) -> result with the next rank. Returns false (and keeps the
  // earlier, better-ranked merge) when the pair already has one.
  bool add(int32_t left, int32_t right, int32_t result);
  size_t size() const { return merges_.size(); }
  bool empty() const { return merges_.empty(); }

  // Applies merges to `symbols` in place.
  void merge(std::vector<int32_t>& symbols) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* find(int32_t left, int32_t right) const {
    auto it = merges_.find(key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  std::unordered_map<uint64_t, Merge> merges_;
  int32_t next_rank_ = 0;
};

}  // namespace cvllm
