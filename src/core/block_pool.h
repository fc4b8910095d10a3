// BlockPool: every KV-cache block of the engine, their reference counts, the free list and the
// prefix-cache index. Pure bookkeeping over block ids; the runner owns the memory.
//
// Invariants:
// - Block 0 is the reserved null block: never handed out, never freed, never cached.
// - A block with ref_cnt == 0 is in the free list, exactly once; a block with ref_cnt > 0 is not.
// - The free list is in eviction order: blocks freed earlier (and, within one request, blocks
//   later in the sequence, which are freed first) are reused first. A free block may still hold a
//   cached hash: it can be revived by a prefix-cache hit until it is handed out again, at which
//   point its hash is dropped from the index.
// - hash_to_block maps a block hash to one block holding exactly that content.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/block_hash.h"

namespace cvllm {

struct KVCacheBlock {
  int block_id = 0;
  int ref_cnt = 0;
  std::optional<BlockHash> block_hash;  // set once the block is full and cached
  // Intrusive doubly-linked free list (-1 = none).
  int prev_free = -1;
  int next_free = -1;
  bool in_free_list = false;
};

class BlockPool {
 public:
  BlockPool(int num_blocks, bool enable_caching);

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int num_free_blocks() const { return num_free_; }
  // Fraction of usable blocks in use (vLLM's kv_cache_usage).
  double usage() const;
  const KVCacheBlock& block(int block_id) const { return blocks_.at(block_id); }

  // Pops `n` blocks off the free list (evicting their cached hashes), each with ref_cnt 1.
  // Requires n <= num_free_blocks().
  std::vector<int> get_new_blocks(int n);
  // A cached block for this hash, if any.
  std::optional<int> get_cached_block(const BlockHash& hash) const;
  // Takes a reference on blocks found in the cache (reviving them from the free list if unused).
  void touch(const std::vector<int>& block_ids);
  // Drops a reference; blocks reaching zero go to the tail of the free list in the order given.
  void free_blocks(const std::vector<int>& block_ids);
  // Records the hash of a block that just became full so later requests can share it.
  void cache_full_block(int block_id, const BlockHash& hash);
  // Forgets every cached hash (vLLM's reset_prefix_cache); only valid when no block is in use.
  bool reset_prefix_cache();

  // Counters for metrics and tests.
  int64_t num_evictions() const { return num_evictions_; }

  // Checks every invariant above; throws cvllm::Error on violation (used by tests and debug runs).
  void check_invariants() const;

 private:
  void remove_from_free_list(int block_id);
  void append_to_free_list(int block_id);
  void maybe_evict_cached_hash(KVCacheBlock& block);

  std::vector<KVCacheBlock> blocks_;
  bool enable_caching_;
  int free_head_ = -1;
  int free_tail_ = -1;
  int num_free_ = 0;
  std::unordered_map<BlockHash, int, BlockHashHasher> hash_to_block_;
  int64_t num_evictions_ = 0;
};

}  // namespace cvllm
