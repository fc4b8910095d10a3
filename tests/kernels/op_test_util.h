// Shared helpers for the backend-ops style kernel tests (test_ops.cpp, test_attention.cpp):
// random inputs, output buffers fenced by sentinel floats, and element-wise comparison against a
// double-precision reference that reports the first few mismatches with their index.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace cvllm::test {

// A bit pattern no kernel produces by accident (a quiet NaN with a payload).
constexpr uint32_t kSentinelBits = 0x7FC0DEADu;
constexpr int64_t kNumGuards = 23;

inline float sentinel() {
  float f;
  std::memcpy(&f, &kSentinelBits, 4);
  return f;
}

inline bool is_sentinel(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits == kSentinelBits;
}

// n floats with kNumGuards sentinel floats on each side; a kernel that writes outside [0, n)
// changes a guard. data() stays valid (non-null) for n == 0.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(int64_t n) : n_(n), storage_(n + 2 * kNumGuards, sentinel()) {}
  explicit GuardedBuffer(const std::vector<float>& init)
      : GuardedBuffer(static_cast<int64_t>(init.size())) {
    std::copy(init.begin(), init.end(), data());
  }
  float* data() { return storage_.data() + kNumGuards; }
  const float* data() const { return storage_.data() + kNumGuards; }
  int64_t size() const { return n_; }
  std::vector<float> values() const { return std::vector<float>(data(), data() + n_); }
  bool guards_intact() const {
    for (int64_t i = 0; i < kNumGuards; ++i) {
      if (!is_sentinel(storage_[i]) || !is_sentinel(storage_[kNumGuards + n_ + i])) return false;
    }
    return true;
  }

 private:
  int64_t n_;
  std::vector<float> storage_;
};

inline std::vector<float> random_normal(int64_t n, std::mt19937& rng, float stddev = 1.0f,
                                        float mean = 0.0f) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> random_uniform(int64_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// |got - ref| <= atol + rtol * |ref| element-wise; prints up to 5 offenders.
inline ::testing::AssertionResult all_close(const float* got, const std::vector<double>& ref,
                                            double atol, double rtol) {
  int bad = 0;
  std::string report;
  double worst = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double diff = std::fabs(static_cast<double>(got[i]) - ref[i]);
    bool ok = diff <= atol + rtol * std::fabs(ref[i]);  // false for NaN
    if (!ok) {
      if (bad < 5) {
        report += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                  std::to_string(ref[i]);
      }
      ++bad;
      if (!(diff <= worst)) worst = diff;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << ref.size() << " elements differ (worst |diff| " << worst
         << "):" << report;
}

// Bit-for-bit equality (NaN payloads included).
inline ::testing::AssertionResult same_bits(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(a + i, b + i, 4) != 0) {
      return ::testing::AssertionFailure()
             << "element " << i << " differs: " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace cvllm::test
