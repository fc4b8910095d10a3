#include "core/block_pool.h"

#include "util/error.h"

namespace cvllm {

BlockPool::BlockPool(int num_blocks, bool enable_caching) : enable_caching_(enable_caching) {
  CVLLM_CHECK(num_blocks >= 2, "the KV cache needs at least 2 blocks, got ", num_blocks);
  blocks_.resize(num_blocks);
  for (int i = 0; i < num_blocks; ++i) blocks_[i].block_id = i;
  blocks_[0].ref_cnt = 1;  // the null block is permanently "in use"
  for (int i = 1; i < num_blocks; ++i) append_to_free_list(i);
}

double BlockPool::usage() const {
  int usable = num_blocks() - 1;
  return usable <= 0 ? 0.0 : 1.0 - static_cast<double>(num_free_) / usable;
}

void BlockPool::remove_from_free_list(int id) {
  KVCacheBlock& b = blocks_[id];
  CVLLM_CHECK(b.in_free_list, "block ", id, " is not free");
  if (b.prev_free >= 0) blocks_[b.prev_free].next_free = b.next_free; else free_head_ = b.next_free;
  if (b.next_free >= 0) blocks_[b.next_free].prev_free = b.prev_free; else free_tail_ = b.prev_free;
  b.prev_free = b.next_free = -1;
  b.in_free_list = false;
  --num_free_;
}

void BlockPool::append_to_free_list(int id) {
  KVCacheBlock& b = blocks_[id];
  b.prev_free = free_tail_;
  b.next_free = -1;
  if (free_tail_ >= 0) blocks_[free_tail_].next_free = id; else free_head_ = id;
  free_tail_ = id;
  b.in_free_list = true;
  ++num_free_;
}

void BlockPool::maybe_evict_cached_hash(KVCacheBlock& block) {
  if (!block.block_hash) return;
  auto it = hash_to_block_.find(*block.block_hash);
  if (it != hash_to_block_.end() && it->second == block.block_id) {
    hash_to_block_.erase(it);
    ++num_evictions_;
  }
  block.block_hash.reset();
}

std::vector<int> BlockPool::get_new_blocks(int n) {
  CVLLM_CHECK(n >= 0 && n <= num_free_, "asked for ", n, " blocks with ", num_free_, " free");
  std::vector<int> ids;
  ids.reserve(n);
  for (int i = 0; i < n; ++i) {
    int id = free_head_;
    remove_from_free_list(id);
    KVCacheBlock& b = blocks_[id];
    maybe_evict_cached_hash(b);
    b.ref_cnt = 1;
    ids.push_back(id);
  }
  return ids;
}

std::optional<int> BlockPool::get_cached_block(const BlockHash& hash) const {
  if (!enable_caching_) return std::nullopt;
  auto it = hash_to_block_.find(hash);
  if (it == hash_to_block_.end()) return std::nullopt;
  return it->second;
}

void BlockPool::touch(const std::vector<int>& block_ids) {
  for (int id : block_ids) {
    KVCacheBlock& b = blocks_.at(id);
    if (b.ref_cnt == 0) remove_from_free_list(id);
    ++b.ref_cnt;
  }
}

void BlockPool::free_blocks(const std::vector<int>& block_ids) {
  for (int id : block_ids) {
    if (id == 0) continue;  // the null block is never freed
    KVCacheBlock& b = blocks_.at(id);
    CVLLM_CHECK(b.ref_cnt > 0, "double free of KV block ", id);
    if (--b.ref_cnt == 0) append_to_free_list(id);
  }
}

void BlockPool::cache_full_block(int block_id, const BlockHash& hash) {
  if (!enable_caching_ || block_id == 0) return;
  KVCacheBlock& b = blocks_.at(block_id);
  if (b.block_hash) return;  // already cached (e.g. a shared prefix block)
  b.block_hash = hash;
  // Keep the first block cached under a hash; a duplicate computed concurrently stays private.
  hash_to_block_.emplace(hash, block_id);
}

bool BlockPool::reset_prefix_cache() {
  if (num_free_ != num_blocks() - 1) return false;
  hash_to_block_.clear();
  for (auto& b : blocks_) b.block_hash.reset();
  return true;
}

void BlockPool::check_invariants() const {
  CVLLM_CHECK(blocks_[0].ref_cnt >= 1 && !blocks_[0].in_free_list, "null block was released");
  int count = 0;
  int prev = -1;
  for (int id = free_head_; id >= 0; id = blocks_[id].next_free) {
    const KVCacheBlock& b = blocks_[id];
    CVLLM_CHECK(b.in_free_list && b.ref_cnt == 0, "free list holds block ", id, " with ref_cnt ",
                b.ref_cnt);
    CVLLM_CHECK(b.prev_free == prev, "free list links broken at block ", id);
    prev = id;
    CVLLM_CHECK(++count <= num_blocks(), "free list has a cycle");
  }
  CVLLM_CHECK(prev == free_tail_ && count == num_free_, "free list count ", count, " != ", num_free_);
  for (const auto& b : blocks_) {
    CVLLM_CHECK(b.ref_cnt >= 0, "block ", b.block_id, " has negative ref_cnt");
    CVLLM_CHECK(b.in_free_list == (b.ref_cnt == 0), "block ", b.block_id, " free-list flag wrong");
  }
  for (const auto& [hash, id] : hash_to_block_) {
    CVLLM_CHECK(blocks_[id].block_hash && *blocks_[id].block_hash == hash,
                "hash index points at block ", id, " which holds another hash");
  }
}

}  // namespace cvllm
