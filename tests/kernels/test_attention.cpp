// Paged attention and the KV-cache write, backend-ops style. Each case builds one engine step the
// way the model runner does: several requests in one flat batch (a prefill from scratch, a prefill
// chunk that starts mid-sequence with earlier K/V already cached, decode tokens), block tables
// with shuffled block ids and padding entries, slot mappings with -1 entries. Earlier steps' K/V
// go into the cache with write_kv_cache, then this step's; the cache starts as NaN, so a read of
// a slot nobody wrote poisons the output. The reference is a plain double-precision attention
// over each request's logical (unpaged) K/V history, written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/op_test_util.h"
#include "tensor/dtype.h"
#include "tensor/tensor.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cvllm::cpu {
namespace {

using test::all_close;
using test::GuardedBuffer;
using test::random_normal;
using test::same_bits;

ThreadPool& pool1() {
  static ThreadPool pool(1);
  return pool;
}
ThreadPool& pool2() {
  static ThreadPool pool(2);
  return pool;
}
std::vector<ThreadPool*> all_pools() {
  return {nullptr, &pool1(), &pool2()};
}

constexpr uint32_t kF32CacheNan = 0x7FC0BEEFu;  // never-written f32 cache element
constexpr uint16_t kF16CacheNan = 0x7E5Au;      // never-written f16 cache element
constexpr size_t kCacheGuardBytes = 64;
constexpr uint8_t kCacheGuardByte = 0xA5;

double f16_round(float v) {
  return static_cast<double>(static_cast<_Float16>(v));
}

struct Request {
  int32_t seq_len;    // tokens in the cache after this step
  int32_t query_len;  // new tokens this step
};

// Prefill from scratch, a chunk starting at position 26, decodes (one at position 0), a short
// chunk. With block size 1 the 50-token decode spans 50 blocks.
const std::vector<Request> kMixedBatch = {{13, 13}, {37, 11}, {21, 1}, {1, 1}, {50, 1}, {9, 4}};

struct Config {
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_size;
  int64_t block_size;
  DType cache_dtype = DType::kF32;
  float logit_softcap = 0.0f;
  int64_t sliding_window = -1;
  float q_stddev = 1.0f;
};

// A paged KV cache [num_blocks, block_size, num_kv_heads, head_size] with guard bytes around it.
class CacheBuffer {
 public:
  CacheBuffer(DType dtype, int64_t num_elements)
      : dtype_(dtype),
        num_elements_(num_elements),
        storage_(2 * kCacheGuardBytes + num_elements * elem_bytes(), kCacheGuardByte) {
    for (int64_t i = 0; i < num_elements; ++i) {
      if (dtype == DType::kF32) {
        std::memcpy(data() + 4 * i, &kF32CacheNan, 4);
      } else {
        std::memcpy(data() + 2 * i, &kF16CacheNan, 2);
      }
    }
  }
  uint8_t* data() { return storage_.data() + kCacheGuardBytes; }
  size_t elem_bytes() const { return dtype_ == DType::kF32 ? 4 : 2; }
  bool guards_intact() const {
    const size_t end = kCacheGuardBytes + num_elements_ * elem_bytes();
    for (size_t i = 0; i < kCacheGuardBytes; ++i) {
      if (storage_[i] != kCacheGuardByte || storage_[end + i] != kCacheGuardByte) return false;
    }
    return true;
  }
  bool never_written(int64_t i) {
    if (dtype_ == DType::kF32) return std::memcmp(data() + 4 * i, &kF32CacheNan, 4) == 0;
    return std::memcmp(data() + 2 * i, &kF16CacheNan, 2) == 0;
  }
  // Exactly what the cache must hold for value v: v itself, or v rounded to nearest-even f16.
  bool holds(int64_t i, float v) {
    if (dtype_ == DType::kF32) return std::memcmp(data() + 4 * i, &v, 4) == 0;
    _Float16 want = static_cast<_Float16>(v);
    return std::memcmp(data() + 2 * i, &want, 2) == 0;
  }

 private:
  DType dtype_;
  int64_t num_elements_;
  std::vector<uint8_t> storage_;
};

// One engine step plus the history that led to it.
struct Step {
  Config cfg;
  std::vector<Request> reqs;
  int64_t num_blocks = 0;
  int64_t max_blocks_per_req = 0;
  std::vector<int32_t> block_table;                // [num_reqs, max_blocks_per_req]
  std::vector<int32_t> query_start_loc;            // [num_reqs + 1]
  std::vector<int32_t> seq_lens;                   // [num_reqs]
  std::vector<std::vector<float>> k_hist, v_hist;  // per request [seq_len, num_kv_heads, head_size]
  std::vector<float> q;                            // [num_tokens, num_heads, head_size]
  // Earlier steps' tokens in shuffled order, and this step's tokens followed by padding; both
  // interleaved with slot -1 entries whose K/V must never land in the cache.
  std::vector<float> k_old, v_old, k_new, v_new;  // [tokens, num_kv_heads, head_size]
  std::vector<int64_t> slots_old, slots_new;      // [tokens]

  int64_t kv_row() const { return cfg.num_kv_heads * cfg.head_size; }
  int64_t num_tokens() const { return query_start_loc.back(); }
  int64_t cache_elements() const { return num_blocks * cfg.block_size * kv_row(); }
  int64_t slot_of(size_t r, int64_t p) const {
    return static_cast<int64_t>(block_table[r * max_blocks_per_req + p / cfg.block_size]) *
               cfg.block_size +
           p % cfg.block_size;
  }
};

Step make_step(const Config& cfg, const std::vector<Request>& reqs, std::mt19937& rng) {
  Step s;
  s.cfg = cfg;
  s.reqs = reqs;
  const int64_t row = s.kv_row();
  int64_t total_blocks = 0;
  int64_t max_needed = 0;
  std::vector<int64_t> needed;
  for (const Request& r : reqs) {
    needed.push_back((r.seq_len + cfg.block_size - 1) / cfg.block_size);
    total_blocks += needed.back();
    max_needed = std::max(max_needed, needed.back());
  }
  // Block 0 is the null block that pads block-table rows (never written: all NaN), and a few
  // spare blocks stay unused.
  s.num_blocks = total_blocks + 1 + 3;
  s.max_blocks_per_req = max_needed + 2;
  std::vector<int32_t> ids(s.num_blocks - 1);
  std::iota(ids.begin(), ids.end(), 1);
  std::shuffle(ids.begin(), ids.end(), rng);
  s.block_table.assign(reqs.size() * s.max_blocks_per_req, 0);
  size_t next_id = 0;
  for (size_t r = 0; r < reqs.size(); ++r) {
    for (int64_t b = 0; b < needed[r]; ++b) {
      s.block_table[r * s.max_blocks_per_req + b] = ids[next_id++];
    }
  }

  s.query_start_loc.push_back(0);
  for (const Request& r : reqs) {
    s.query_start_loc.push_back(s.query_start_loc.back() + r.query_len);
    s.seq_lens.push_back(r.seq_len);
    s.k_hist.push_back(random_normal(r.seq_len * row, rng));
    s.v_hist.push_back(random_normal(r.seq_len * row, rng));
  }
  s.q = random_normal(s.num_tokens() * cfg.num_heads * cfg.head_size, rng, cfg.q_stddev);

  const std::vector<float> garbage(row, 1e6f);
  auto push = [&](std::vector<float>& k, std::vector<float>& v, std::vector<int64_t>& slots,
                  const float* ks, const float* vs, int64_t slot) {
    k.insert(k.end(), ks, ks + row);
    v.insert(v.end(), vs, vs + row);
    slots.push_back(slot);
  };
  std::vector<std::pair<size_t, int64_t>> old_tokens;  // (request, position)
  for (size_t r = 0; r < reqs.size(); ++r) {
    for (int64_t p = 0; p < reqs[r].seq_len - reqs[r].query_len; ++p) old_tokens.push_back({r, p});
  }
  std::shuffle(old_tokens.begin(), old_tokens.end(), rng);
  for (size_t i = 0; i < old_tokens.size(); ++i) {
    if (i % 5 == 2) push(s.k_old, s.v_old, s.slots_old, garbage.data(), garbage.data(), -1);
    auto [r, p] = old_tokens[i];
    push(s.k_old, s.v_old, s.slots_old, &s.k_hist[r][p * row], &s.v_hist[r][p * row],
         s.slot_of(r, p));
  }
  for (size_t r = 0; r < reqs.size(); ++r) {
    for (int64_t p = reqs[r].seq_len - reqs[r].query_len; p < reqs[r].seq_len; ++p) {
      push(s.k_new, s.v_new, s.slots_new, &s.k_hist[r][p * row], &s.v_hist[r][p * row],
           s.slot_of(r, p));
    }
  }
  for (int i = 0; i < 3; ++i) {  // padding tokens at the end of the step (as for a graph batch)
    push(s.k_new, s.v_new, s.slots_new, garbage.data(), garbage.data(), -1);
  }
  return s;
}

// out[t, h] = softmax_p(cap(scale * q[t, h] . K[p, h / group])) V[p, h / group] over the request's
// positions p in [pos - window + 1, pos], pos = seq_len - query_len + j. K/V read as the cache
// holds them when round_to_f16.
std::vector<double> ref_attention(const Step& s, bool round_to_f16) {
  const Config& c = s.cfg;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_size));
  const int64_t group = c.num_heads / c.num_kv_heads;
  const int64_t row = s.kv_row();
  auto value = [&](float v) { return round_to_f16 ? f16_round(v) : static_cast<double>(v); };
  std::vector<double> out(s.num_tokens() * c.num_heads * c.head_size, 0.0);
  for (size_t r = 0; r < s.reqs.size(); ++r) {
    const Request& req = s.reqs[r];
    for (int64_t j = 0; j < req.query_len; ++j) {
      const int64_t t = s.query_start_loc[r] + j;
      const int64_t pos = req.seq_len - req.query_len + j;
      const int64_t lo =
          c.sliding_window > 0 ? std::max<int64_t>(0, pos - c.sliding_window + 1) : 0;
      for (int64_t h = 0; h < c.num_heads; ++h) {
        const float* qh = &s.q[(t * c.num_heads + h) * c.head_size];
        const int64_t kv_off = (h / group) * c.head_size;
        std::vector<double> w(pos + 1, 0.0);
        double max_score = -std::numeric_limits<double>::infinity();
        for (int64_t p = lo; p <= pos; ++p) {
          double dot = 0.0;
          for (int64_t i = 0; i < c.head_size; ++i) {
            dot += qh[i] * value(s.k_hist[r][p * row + kv_off + i]);
          }
          double score = dot * scale;
          if (c.logit_softcap > 0.0f) score = c.logit_softcap * std::tanh(score / c.logit_softcap);
          w[p] = score;
          max_score = std::max(max_score, score);
        }
        double denom = 0.0;
        for (int64_t p = lo; p <= pos; ++p) denom += (w[p] = std::exp(w[p] - max_score));
        double* oh = &out[(t * c.num_heads + h) * c.head_size];
        for (int64_t p = lo; p <= pos; ++p) {
          for (int64_t i = 0; i < c.head_size; ++i) {
            oh[i] += w[p] / denom * value(s.v_hist[r][p * row + kv_off + i]);
          }
        }
      }
    }
  }
  return out;
}

AttentionShape shape_of(const Config& c) {
  AttentionShape shape;
  shape.num_heads = c.num_heads;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_size = c.head_size;
  shape.block_size = c.block_size;
  shape.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_size)));
  shape.logit_softcap = c.logit_softcap;
  shape.sliding_window = c.sliding_window;
  return shape;
}

// Element i (= kv_head * head_size + e) of a slot's K / V in the CPU cache layout (attention.h).
int64_t k_index(const Step& s, int64_t slot, int64_t i) {
  return k_cache_index(slot, i / s.cfg.head_size, i % s.cfg.head_size, s.cfg.num_kv_heads,
                       s.cfg.head_size, s.cfg.block_size);
}
int64_t v_index(const Step& s, int64_t slot, int64_t i) {
  return v_cache_index(slot, i / s.cfg.head_size, i % s.cfg.head_size, s.cfg.num_kv_heads,
                       s.cfg.head_size, s.cfg.block_size);
}

// Every slot of every request holds its token's K/V (rounded as the cache dtype rounds); every
// other slot, the null block and the spare blocks included, was never written.
void expect_cache_contents(const Step& s, CacheBuffer& k_cache, CacheBuffer& v_cache) {
  const int64_t row = s.kv_row();
  std::vector<bool> owned(s.num_blocks * s.cfg.block_size, false);
  int bad = 0;
  for (size_t r = 0; r < s.reqs.size(); ++r) {
    for (int64_t p = 0; p < s.reqs[r].seq_len; ++p) {
      const int64_t slot = s.slot_of(r, p);
      owned[slot] = true;
      for (int64_t i = 0; i < row; ++i) {
        if (!k_cache.holds(k_index(s, slot, i), s.k_hist[r][p * row + i]) ||
            !v_cache.holds(v_index(s, slot, i), s.v_hist[r][p * row + i])) {
          ++bad;
        }
      }
    }
  }
  for (size_t slot = 0; slot < owned.size(); ++slot) {
    if (owned[slot]) continue;
    for (int64_t i = 0; i < row; ++i) {
      if (!k_cache.never_written(k_index(s, slot, i)) || !v_cache.never_written(v_index(s, slot, i))) ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << "cache elements with the wrong contents";
  EXPECT_TRUE(k_cache.guards_intact());
  EXPECT_TRUE(v_cache.guards_intact());
}

// Writes the history and the step into a fresh cache, checks it, and runs paged_attention with
// every pool against the reference.
void check_step(const Step& s) {
  const Config& c = s.cfg;
  CacheBuffer k_cache(c.cache_dtype, s.cache_elements());
  CacheBuffer v_cache(c.cache_dtype, s.cache_elements());
  write_kv_cache(s.k_old.data(), s.v_old.data(), k_cache.data(), v_cache.data(), c.cache_dtype,
                 s.slots_old.data(), static_cast<int64_t>(s.slots_old.size()), c.num_kv_heads,
                 c.head_size, c.block_size, &pool2());
  write_kv_cache(s.k_new.data(), s.v_new.data(), k_cache.data(), v_cache.data(), c.cache_dtype,
                 s.slots_new.data(), static_cast<int64_t>(s.slots_new.size()), c.num_kv_heads,
                 c.head_size, c.block_size, &pool1());
  expect_cache_contents(s, k_cache, v_cache);

  const bool f16 = c.cache_dtype == DType::kF16;
  const std::vector<double> ref = ref_attention(s, f16);
  const int64_t n = s.num_tokens() * c.num_heads * c.head_size;
  std::vector<float> first;
  for (ThreadPool* pool : all_pools()) {
    GuardedBuffer out(n);
    paged_attention(s.q.data(), k_cache.data(), v_cache.data(), c.cache_dtype, out.data(),
                    s.query_start_loc.data(), s.seq_lens.data(), s.block_table.data(),
                    s.max_blocks_per_req, static_cast<int64_t>(s.reqs.size()), shape_of(c), pool);
    EXPECT_TRUE(out.guards_intact());
    EXPECT_TRUE(all_close(out.data(), ref, 2e-5, 1e-5));
    if (f16) {
      // And against the unrounded K/V: the error f16 storage costs (2^-11 relative) stays small.
      EXPECT_TRUE(all_close(out.data(), ref_attention(s, false), 1e-2 * c.q_stddev, 0.0));
    }
    if (first.empty()) first = out.values();
    EXPECT_TRUE(same_bits(first.data(), out.data(), n));
  }
}

struct HeadConfig {
  int64_t num_heads;
  int64_t num_kv_heads;
};
const HeadConfig kHeadConfigs[] = {{1, 1}, {4, 2}, {9, 3}, {8, 1}};
const int64_t kHeadSizes[] = {32, 64, 80, 128};
const int64_t kBlockSizes[] = {1, 5, 16};

void check_all_shapes(DType cache_dtype) {
  std::mt19937 rng(cache_dtype == DType::kF32 ? 21 : 22);
  for (const HeadConfig& hc : kHeadConfigs) {
    for (int64_t head_size : kHeadSizes) {
      for (int64_t block_size : kBlockSizes) {
        SCOPED_TRACE(testing::Message() << "heads " << hc.num_heads << "/" << hc.num_kv_heads
                                        << " d=" << head_size << " block " << block_size);
        Config cfg{hc.num_heads, hc.num_kv_heads, head_size, block_size, cache_dtype};
        check_step(make_step(cfg, kMixedBatch, rng));
      }
    }
  }
}

TEST(PagedAttention, F32CacheMixedBatchMatchesReference) {
  check_all_shapes(DType::kF32);
}

TEST(PagedAttention, F16CacheMixedBatchMatchesReference) {
  check_all_shapes(DType::kF16);
}

// Sliding windows shorter than, equal to and longer than the sequences; logit softcapping with
// queries large enough that the cap bites; both together.
TEST(PagedAttention, SlidingWindowAndSoftcap) {
  std::mt19937 rng(23);
  const Config shapes[] = {{4, 2, 64, 5}, {9, 3, 80, 16}, {8, 1, 128, 1}, {1, 1, 32, 16}};
  for (const Config& shape : shapes) {
    for (DType dtype : {DType::kF32, DType::kF16}) {
      for (int64_t window : {-1, 1, 4, 16, 1000}) {
        for (float softcap : {0.0f, 3.0f}) {
          if (window == -1 && softcap == 0.0f) continue;  // the plain case is covered above
          SCOPED_TRACE(testing::Message()
                       << "heads " << shape.num_heads << "/" << shape.num_kv_heads
                       << " d=" << shape.head_size << " block " << shape.block_size << " f16 "
                       << (dtype == DType::kF16) << " window " << window << " softcap " << softcap);
          Config cfg = shape;
          cfg.cache_dtype = dtype;
          cfg.sliding_window = window;
          cfg.logit_softcap = softcap;
          cfg.q_stddev = softcap > 0.0f ? 4.0f : 1.0f;
          check_step(make_step(cfg, kMixedBatch, rng));
        }
      }
    }
  }
}

TEST(PagedAttention, EmptyAndSingleTokenBatches) {
  std::mt19937 rng(24);
  const std::vector<std::vector<Request>> batches = {{},        {{1, 1}},   {{7, 1}},
                                                     {{40, 1}}, {{16, 16}}, {{17, 1}, {3, 3}}};
  for (const auto& reqs : batches) {
    for (DType dtype : {DType::kF32, DType::kF16}) {
      SCOPED_TRACE(testing::Message() << reqs.size() << " requests, first seq_len "
                                      << (reqs.empty() ? 0 : reqs[0].seq_len));
      check_step(make_step({9, 3, 80, 16, dtype}, reqs, rng));
      check_step(make_step({4, 2, 64, 5, dtype, 0.0f, 3}, reqs, rng));
    }
  }
}

// Running a sequence chunk by chunk (prefill in pieces, then decodes) through the same cache gives
// the same outputs as one prefill of the whole sequence: what chunked prefill relies on.
TEST(PagedAttention, ChunkedPrefillEqualsWholePrefill) {
  std::mt19937 rng(25);
  const Config cfg{8, 1, 64, 5};
  const int32_t seq_len = 23;
  Step whole = make_step(cfg, {{seq_len, seq_len}}, rng);
  const int64_t row = whole.kv_row();
  const int64_t q_row = cfg.num_heads * cfg.head_size;
  CacheBuffer k_cache(cfg.cache_dtype, whole.cache_elements());
  CacheBuffer v_cache(cfg.cache_dtype, whole.cache_elements());
  std::vector<float> whole_out(seq_len * q_row), chunked_out(seq_len * q_row);
  write_kv_cache(whole.k_new.data(), whole.v_new.data(), k_cache.data(), v_cache.data(),
                 cfg.cache_dtype, whole.slots_new.data(), seq_len, cfg.num_kv_heads, cfg.head_size,
                 cfg.block_size, nullptr);
  paged_attention(whole.q.data(), k_cache.data(), v_cache.data(), cfg.cache_dtype, whole_out.data(),
                  whole.query_start_loc.data(), whole.seq_lens.data(), whole.block_table.data(),
                  whole.max_blocks_per_req, 1, shape_of(cfg), &pool2());

  CacheBuffer k2(cfg.cache_dtype, whole.cache_elements());
  CacheBuffer v2(cfg.cache_dtype, whole.cache_elements());
  const int32_t chunks[] = {7, 9, 1, 1, 1, 1, 1, 1, 1};  // sums to 23
  int32_t done = 0;
  for (int32_t len : chunks) {
    const int32_t qsl[2] = {0, len};
    const int32_t seq = done + len;
    write_kv_cache(whole.k_new.data() + done * row, whole.v_new.data() + done * row, k2.data(),
                   v2.data(), cfg.cache_dtype, whole.slots_new.data() + done, len, cfg.num_kv_heads,
                   cfg.head_size, cfg.block_size, nullptr);
    paged_attention(whole.q.data() + done * q_row, k2.data(), v2.data(), cfg.cache_dtype,
                    chunked_out.data() + done * q_row, qsl, &seq, whole.block_table.data(),
                    whole.max_blocks_per_req, 1, shape_of(cfg), &pool1());
    done = seq;
  }
  ASSERT_EQ(done, seq_len);
  EXPECT_TRUE(all_close(chunked_out.data(), std::vector<double>(whole_out.begin(), whole_out.end()),
                        1e-6, 1e-6));
}

// Head sizes that are not multiples of the kernels' 16-wide unrolling exercise the tails.
TEST(PagedAttention, OddHeadSizes) {
  std::mt19937 rng(27);
  for (int64_t head_size : {8, 24, 72, 200}) {
    for (DType dtype : {DType::kF32, DType::kF16}) {
      SCOPED_TRACE(testing::Message() << "d=" << head_size << " f16 " << (dtype == DType::kF16));
      check_step(make_step({6, 2, head_size, 5, dtype}, kMixedBatch, rng));
    }
  }
}

TEST(PagedAttention, RejectsUnsupportedCacheDtype) {
  std::vector<float> kv(4, 1.0f), q(4, 1.0f), out(4);
  std::vector<uint16_t> cache(64);
  const int64_t slot = 0;
  const int32_t qsl[2] = {0, 1}, seq_len = 1, block = 0;
  EXPECT_THROW(write_kv_cache(kv.data(), kv.data(), cache.data(), cache.data(), DType::kBF16, &slot,
                              1, 1, 4, 16, nullptr),
               Error);
  AttentionShape shape;
  shape.num_heads = shape.num_kv_heads = 1;
  shape.head_size = 4;
  EXPECT_THROW(paged_attention(q.data(), cache.data(), cache.data(), DType::kBF16, out.data(), qsl,
                               &seq_len, &block, 1, 1, shape, nullptr),
               Error);
}

// The CpuBackend adapter: writes this step's K/V (tensors [T, kv_heads * head_size], padding
// tokens with slot -1 included) and attends, reading everything from the ForwardBatch.
TEST(CpuBackendAttention, MixedBatchMatchesReference) {
  std::mt19937 rng(26);
  const Config configs[] = {{9, 3, 80, 16, DType::kF32},
                            {4, 2, 64, 5, DType::kF16, 3.0f, 6, 4.0f},
                            {8, 1, 128, 1, DType::kF32, 0.0f, 10}};
  for (int threads : {1, 2}) {
    CpuBackend backend(threads, MatmulPath::kReference);
    for (const Config& cfg : configs) {
      SCOPED_TRACE(testing::Message() << "threads " << threads << " heads " << cfg.num_heads
                                      << " d=" << cfg.head_size);
      Step s = make_step(cfg, kMixedBatch, rng);
      CacheBuffer k_mem(cfg.cache_dtype, s.cache_elements());
      CacheBuffer v_mem(cfg.cache_dtype, s.cache_elements());
      write_kv_cache(s.k_old.data(), s.v_old.data(), k_mem.data(), v_mem.data(), cfg.cache_dtype,
                     s.slots_old.data(), static_cast<int64_t>(s.slots_old.size()), cfg.num_kv_heads,
                     cfg.head_size, cfg.block_size, nullptr);
      const std::vector<int64_t> cache_shape = {s.num_blocks, cfg.num_kv_heads, cfg.block_size,
                                                cfg.head_size};
      KVCacheLayer cache;
      cache.k = Tensor::view(k_mem.data(), cfg.cache_dtype, cache_shape);
      cache.v = Tensor::view(v_mem.data(), cfg.cache_dtype, cache_shape);
      cache.block_size = cfg.block_size;

      ForwardBatch batch;
      const int64_t num_padded = static_cast<int64_t>(s.slots_new.size());
      batch.input_ids.assign(num_padded, 0);
      batch.slot_mapping = s.slots_new;
      batch.query_start_loc = s.query_start_loc;
      batch.seq_lens = s.seq_lens;
      batch.block_table = s.block_table;
      batch.max_blocks_per_req = s.max_blocks_per_req;
      std::unique_ptr<StepMetadata> step = backend.prepare_step(batch);

      const int64_t q_row = cfg.num_heads * cfg.head_size;
      std::vector<float> q(s.q);
      q.resize(num_padded * q_row, 0.5f);  // the padding tokens' queries
      Tensor qt = Tensor::view(q.data(), DType::kF32, {num_padded, q_row});
      Tensor kt = Tensor::view(s.k_new.data(), DType::kF32, {num_padded, s.kv_row()});
      Tensor vt = Tensor::view(s.v_new.data(), DType::kF32, {num_padded, s.kv_row()});
      GuardedBuffer out(num_padded * q_row);
      Tensor ot = Tensor::view(out.data(), DType::kF32, {num_padded, q_row});
      AttentionParams params;
      params.num_heads = cfg.num_heads;
      params.num_kv_heads = cfg.num_kv_heads;
      params.head_size = cfg.head_size;
      params.scale = shape_of(cfg).scale;
      params.logit_softcap = cfg.logit_softcap;
      params.sliding_window = cfg.sliding_window;
      backend.attention(qt, kt, vt, cache, *step, params, ot);

      expect_cache_contents(s, k_mem, v_mem);
      EXPECT_TRUE(out.guards_intact());
      EXPECT_TRUE(
          all_close(out.data(), ref_attention(s, cfg.cache_dtype == DType::kF16), 2e-5, 1e-5));
    }
  }
}

}  // namespace
}  // namespace cvllm::cpu
