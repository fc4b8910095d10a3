#include "core/block_hash.h"

namespace cvllm {
namespace {

// Two independent 64-bit lanes of a multiply-xorshift mix (the splitmix64 finalizer); each input
// word is absorbed into both lanes with different constants.
inline uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

struct Hasher {
  uint64_t a = 0x243F6A8885A308D3ull;
  uint64_t b = 0x13198A2E03707344ull;
  void absorb(uint64_t word) {
    a = mix(a ^ (word + 0x9E3779B97F4A7C15ull));
    b = mix(b ^ (word * 0xC2B2AE3D27D4EB4Full + 0x165667B19E3779F9ull));
  }
};

}  // namespace

BlockHash hash_block_tokens(const BlockHash* parent, std::span<const int32_t> token_ids,
                            std::string_view cache_salt) {
  Hasher h;
  h.absorb(parent ? 1 : 0);
  if (parent) {
    h.absorb(parent->lo);
    h.absorb(parent->hi);
  }
  h.absorb(token_ids.size());
  for (int32_t t : token_ids) h.absorb(static_cast<uint32_t>(t));
  h.absorb(cache_salt.size());
  for (char c : cache_salt) h.absorb(static_cast<uint8_t>(c));
  return BlockHash{h.a, h.b};
}

}  // namespace cvllm
