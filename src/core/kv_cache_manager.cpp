#include "core/kv_cache_manager.h"

#include <algorithm>

#include "util/error.h"

namespace cvllm {

KVCacheManager::KVCacheManager(int num_blocks, int block_size, bool enable_caching)
    : block_size_(block_size), enable_caching_(enable_caching), pool_(num_blocks, enable_caching) {
  CVLLM_CHECK(block_size > 0, "block_size must be positive");
}

void KVCacheManager::update_block_hashes(Request& request) const {
  int num_full = request.num_tokens() / block_size_;
  while (static_cast<int>(request.block_hashes.size()) < num_full) {
    size_t i = request.block_hashes.size();
    std::span<const int32_t> tokens(request.all_token_ids.data() + i * block_size_, block_size_);
    const BlockHash* parent = i == 0 ? nullptr : &request.block_hashes[i - 1];
    request.block_hashes.push_back(hash_block_tokens(parent, tokens, request.cache_salt));
  }
}

ComputedBlocks KVCacheManager::get_computed_blocks(Request& request) {
  ComputedBlocks result;
  if (!enable_caching_ || request.skip_reading_prefix_cache) return result;
  update_block_hashes(request);
  // The last token must be recomputed to produce logits, so at most num_tokens - 1 can hit.
  int max_hit_blocks = (request.num_tokens() - 1) / block_size_;
  for (int i = 0; i < max_hit_blocks; ++i) {
    std::optional<int> id = pool_.get_cached_block(request.block_hashes[i]);
    if (!id) break;
    result.block_ids.push_back(*id);
  }
  result.num_tokens = static_cast<int>(result.block_ids.size()) * block_size_;
  return result;
}

std::optional<std::vector<int>> KVCacheManager::allocate_slots(Request& request, int num_new_tokens,
                                                               const ComputedBlocks& new_computed) {
  CVLLM_CHECK(num_new_tokens >= 0, "negative token count");
  auto& blocks = req_to_blocks_[request.request_id];
  int num_computed = request.num_computed_tokens + new_computed.num_tokens;
  int num_required = (num_computed + num_new_tokens + block_size_ - 1) / block_size_;
  int num_new_blocks =
      num_required - static_cast<int>(blocks.size()) - static_cast<int>(new_computed.block_ids.size());
  num_new_blocks = std::max(num_new_blocks, 0);
  // Cache hits that sit in the free list count against free capacity once revived.
  int num_evictable_hits = 0;
  for (int id : new_computed.block_ids) {
    if (pool_.block(id).ref_cnt == 0) ++num_evictable_hits;
  }
  if (num_new_blocks + num_evictable_hits > pool_.num_free_blocks()) {
    if (blocks.empty()) req_to_blocks_.erase(request.request_id);
    return std::nullopt;
  }
  pool_.touch(new_computed.block_ids);
  blocks.insert(blocks.end(), new_computed.block_ids.begin(), new_computed.block_ids.end());
  std::vector<int> new_blocks = pool_.get_new_blocks(num_new_blocks);
  blocks.insert(blocks.end(), new_blocks.begin(), new_blocks.end());
  if (enable_caching_) {
    // Only tokens whose ids are known can be hashed; the sampled token of this step is not yet.
    int num_tokens_to_cache = std::min(num_computed + num_new_tokens, request.num_tokens());
    cache_full_blocks(request, blocks, num_tokens_to_cache);
  }
  return new_blocks;
}

void KVCacheManager::cache_full_blocks(Request& request, std::vector<int>& blocks, int num_tokens) {
  update_block_hashes(request);
  int& num_cached = num_cached_blocks_[request.request_id];
  int num_full = std::min<int>(num_tokens / block_size_, request.block_hashes.size());
  for (int i = num_cached; i < num_full; ++i) pool_.cache_full_block(blocks[i], request.block_hashes[i]);
  num_cached = std::max(num_cached, num_full);
}

std::optional<std::optional<std::pair<int, int>>> KVCacheManager::fork(const Request& parent,
                                                                        Request& child) {
  const std::vector<int>& parent_blocks = get_block_ids(parent.request_id);
  CVLLM_CHECK(!has_request(child.request_id), "fork target ", child.request_id, " already has blocks");
  const int num_full = parent.num_computed_tokens / block_size_;
  const bool partial = parent.num_computed_tokens % block_size_ != 0;
  CVLLM_CHECK(static_cast<int>(parent_blocks.size()) >= num_full + (partial ? 1 : 0),
              "parent ", parent.request_id, " lacks blocks for its computed tokens");
  std::optional<std::pair<int, int>> copy;
  std::vector<int> child_blocks(parent_blocks.begin(), parent_blocks.begin() + num_full);
  if (partial) {
    if (pool_.num_free_blocks() < 1) return std::nullopt;
    int dst = pool_.get_new_blocks(1)[0];
    copy = std::make_pair(parent_blocks[num_full], dst);
    child_blocks.push_back(dst);
  }
  pool_.touch(std::vector<int>(parent_blocks.begin(), parent_blocks.begin() + num_full));
  req_to_blocks_[child.request_id] = std::move(child_blocks);
  auto cached = num_cached_blocks_.find(parent.request_id);
  if (cached != num_cached_blocks_.end()) {
    num_cached_blocks_[child.request_id] = std::min(cached->second, num_full);
  }
  return copy;
}

void KVCacheManager::free(const Request& request) {
  auto it = req_to_blocks_.find(request.request_id);
  if (it == req_to_blocks_.end()) return;
  std::vector<int> reversed(it->second.rbegin(), it->second.rend());
  pool_.free_blocks(reversed);
  req_to_blocks_.erase(it);
  num_cached_blocks_.erase(request.request_id);
}

void KVCacheManager::record_prefix_cache_lookup(int num_queried_tokens, int num_hit_tokens) {
  if (!enable_caching_) return;
  stats_.queries += num_queried_tokens;
  stats_.hits += num_hit_tokens;
}

const std::vector<int>& KVCacheManager::get_block_ids(const std::string& request_id) const {
  static const std::vector<int> kEmpty;
  auto it = req_to_blocks_.find(request_id);
  return it == req_to_blocks_.end() ? kEmpty : it->second;
}

bool KVCacheManager::has_request(const std::string& request_id) const {
  return req_to_blocks_.count(request_id) > 0;
}

}  // namespace cvllm
