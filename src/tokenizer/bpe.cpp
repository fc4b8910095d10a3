#include "tokenizer/bpe.h"

#include <algorithm>

namespace cvllm {

bool BpeMerges::add(int32_t left, int32_t right, int32_t result) {
  bool inserted = merges_.try_emplace(key(left, right), Merge{next_rank_, result}).second;
  ++next_rank_;  // ranks follow the order of the list even where a duplicate was dropped
  return inserted;
}

namespace {

struct Candidate {
  int32_t rank;
  int32_t left;     // symbol index of the pair's left half
  int32_t right;    // symbol index of its right half
  int32_t left_id;  // the ids the pair had when queued: a later merge changes one of them
  int32_t right_id;
  int32_t result;
};

// Min-heap order: lowest rank first, then leftmost.
struct WorseCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  }
};

}  // namespace

void BpeMerges::merge(std::vector<int32_t>& symbols) const {
  const int32_t n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  if (n == 2) {  // the most common case in byte-level text: skip the heap
    if (const Merge* m = find(symbols[0], symbols[1])) symbols = {m->result};
    return;
  }
  thread_local std::vector<int32_t> prev, next;
  thread_local std::vector<Candidate> heap;
  prev.resize(n);
  next.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  auto push = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    if (const Merge* m = find(symbols[left], symbols[right])) {
      heap.push_back({m->rank, left, right, symbols[left], symbols[right], m->result});
      std::push_heap(heap.begin(), heap.end(), WorseCandidate{});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i, i + 1);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), WorseCandidate{});
    Candidate c = heap.back();
    heap.pop_back();
    if (symbols[c.left] != c.left_id || next[c.left] != c.right || symbols[c.right] != c.right_id) {
      continue;  // stale: one half was merged into something else since this was queued
    }
    symbols[c.left] = c.result;
    symbols[c.right] = -1;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push(prev[c.left], c.left);
    push(c.left, next[c.left]);
  }
  int32_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) symbols[out++] = symbols[i];
  symbols.resize(out);
}

}  // namespace cvllm
