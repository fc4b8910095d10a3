// KVCacheManager: which KV blocks each request holds, prefix-cache lookups, and allocation of the
// slots for newly scheduled tokens. Block tables are append-only while a request runs; a request
// gives all its blocks back when it finishes or is preempted.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/block_pool.h"
#include "core/request.h"

namespace cvllm {

struct PrefixCacheStats {
  int64_t queries = 0;  // prompt tokens looked up
  int64_t hits = 0;     // of which found in the cache
};

// Blocks found in the prefix cache for a request, and the tokens they cover.
struct ComputedBlocks {
  std::vector<int> block_ids;
  int num_tokens = 0;
};

class KVCacheManager {
 public:
  KVCacheManager(int num_blocks, int block_size, bool enable_caching);

  int block_size() const { return block_size_; }
  BlockPool& block_pool() { return pool_; }
  const BlockPool& block_pool() const { return pool_; }
  double usage() const { return pool_.usage(); }

  // The longest cached prefix of the request, in whole blocks, leaving at least the last prompt
  // token to be computed (its logits are needed). Does not take references.
  ComputedBlocks get_computed_blocks(Request& request);

  // Makes room for `num_new_tokens` more tokens after the request's num_computed_tokens plus
  // `new_computed.num_tokens` cache hits. Returns the newly allocated block ids, or nullopt (and
  // changes nothing) when the pool cannot supply them.
  std::optional<std::vector<int>> allocate_slots(Request& request, int num_new_tokens,
                                                 const ComputedBlocks& new_computed = {});

  // Gives `child` (same tokens as `parent`, nothing computed beyond it) the parent's KV: full blocks
  // are shared (one more reference each); a partially filled last block is copied into a fresh
  // block, returned as (src, dst) for the runner to copy before its next forward. nullopt (and
  // nothing changes) when no block is free for the copy.
  std::optional<std::optional<std::pair<int, int>>> fork(const Request& parent, Request& child);

  // Releases the request's blocks (tail first, so the end of a sequence is evicted first).
  void free(const Request& request);

  const std::vector<int>& get_block_ids(const std::string& request_id) const;
  bool has_request(const std::string& request_id) const;
  // Called once per request when it is first scheduled with the result of get_computed_blocks.
  void record_prefix_cache_lookup(int num_queried_tokens, int num_hit_tokens);
  const PrefixCacheStats& prefix_cache_stats() const { return stats_; }

 private:
  void update_block_hashes(Request& request) const;
  void cache_full_blocks(Request& request, std::vector<int>& blocks, int num_tokens);

  int block_size_;
  bool enable_caching_;
  BlockPool pool_;
  std::unordered_map<std::string, std::vector<int>> req_to_blocks_;
  std::unordered_map<std::string, int> num_cached_blocks_;  // leading blocks already hashed+cached
  PrefixCacheStats stats_;
};

}  // namespace cvllm
