// Content hash of a full KV block: it chains the parent block's hash, the block's token ids and
// the request's cache salt, so two requests share a block only when their whole prefix up to and
// including that block is equal (and their salts match). 128 bits make an accidental collision —
// which would silently reuse another prefix's KV — practically impossible.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

namespace cvllm {

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;
  bool operator==(const BlockHash&) const = default;
};

BlockHash hash_block_tokens(const BlockHash* parent, std::span<const int32_t> token_ids,
                            std::string_view cache_salt);

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 0x9E3779B97F4A7C15ull)); }
};

}  // namespace cvllm
