// The sampler against vLLM's formulas (vllm-behaviour.md §2.2), on synthetic logits: each logits
// processor exactly, the sampling distribution (temperature, min_p, top-k, top-p) against an
// independent implementation of vLLM's sort-and-cumsum masking, and the draws statistically.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "layers/sampler.h"

namespace cvllm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Fixture {
  SamplingParams params;
  std::vector<int32_t> prompt, output;
  SamplingState state;
  std::mt19937_64 generator{123};

  SamplingState& make() {
    state.params = &params;
    state.prompt_token_ids = prompt;
    state.output_token_ids = output;
    state.output_token_counts.clear();
    for (int32_t t : output) ++state.output_token_counts[t];
    state.generator = &generator;
    return state;
  }
};

TEST(SamplerProcessors, RepetitionPenaltyDividesPositiveMultipliesNegativeOncePerToken) {
  Fixture f;
  f.params.repetition_penalty = 2.0;
  f.prompt = {0, 1, 1};
  f.output = {1, 3};
  std::vector<float> logits = {4.0f, -2.0f, 1.0f, 6.0f, 5.0f};
  Sampler::apply_logits_processors(logits.data(), 5, f.make());
  EXPECT_FLOAT_EQ(logits[0], 2.0f);   // prompt token, positive: divided
  EXPECT_FLOAT_EQ(logits[1], -4.0f);  // seen three times, penalized once
  EXPECT_FLOAT_EQ(logits[2], 1.0f);   // unseen
  EXPECT_FLOAT_EQ(logits[3], 3.0f);   // output token
  EXPECT_FLOAT_EQ(logits[4], 5.0f);
}

TEST(SamplerProcessors, FrequencyAndPresenceCountOutputTokensOnly) {
  Fixture f;
  f.params.frequency_penalty = 0.5;
  f.params.presence_penalty = 0.25;
  f.prompt = {0, 0, 0};
  f.output = {2, 2, 2, 3};
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  Sampler::apply_logits_processors(logits.data(), 4, f.make());
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                 // prompt only: untouched
  EXPECT_FLOAT_EQ(logits[2], 1.0f - 1.5f - 0.25f);  // 3 occurrences
  EXPECT_FLOAT_EQ(logits[3], 1.0f - 0.5f - 0.25f);
}

TEST(SamplerProcessors, LogitBiasAllowedIdsAndMinTokens) {
  Fixture f;
  f.params.logit_bias = {{1, 3.0}, {2, -1.5}};
  f.params.allowed_token_ids = std::vector<int32_t>{1, 2, 4};
  f.params.min_tokens = 2;
  f.output = {1};
  SamplingState& s = f.make();
  s.min_tokens_stop_ids = {4};
  std::vector<float> logits = {0.5f, 0.5f, 0.5f, 0.5f, 9.0f};
  Sampler::apply_logits_processors(logits.data(), 5, s);
  EXPECT_EQ(logits[0], kNegInf);  // not allowed
  EXPECT_FLOAT_EQ(logits[1], 3.5f);
  EXPECT_FLOAT_EQ(logits[2], -1.0f);
  EXPECT_EQ(logits[3], kNegInf);
  EXPECT_EQ(logits[4], kNegInf);  // a stop token before min_tokens outputs

  f.output = {1, 1};  // min_tokens reached: stop tokens are allowed again
  SamplingState& s2 = f.make();
  s2.min_tokens_stop_ids = {4};
  std::vector<float> again = {0.5f, 0.5f, 0.5f, 0.5f, 9.0f};
  Sampler::apply_logits_processors(again.data(), 5, s2);
  EXPECT_FLOAT_EQ(again[4], 9.0f);
}

TEST(SamplerProcessors, BadWordsBanLastTokenAfterMatchingPrefix) {
  Fixture f;
  f.output = {7, 8};
  SamplingState& s = f.make();
  s.bad_words_token_ids = {{5}, {8, 6}, {7, 9}};
  std::vector<float> logits(10, 1.0f);
  Sampler::apply_logits_processors(logits.data(), 10, s);
  EXPECT_EQ(logits[5], kNegInf);  // one-token word: always banned
  EXPECT_EQ(logits[6], kNegInf);  // output ends with 8
  EXPECT_FLOAT_EQ(logits[9], 1.0f);  // output does not end with 7
}

// vLLM's masking, written independently: top-k keeps the k largest logits; top-p sorts ascending,
// takes the cumulative softmax and masks where it is <= 1 - p (the largest always kept); min_p
// drops p < min_p * p_max, computed before top-k/top-p.
std::map<int32_t, double> vllm_distribution(std::vector<double> logits, double temperature,
                                            int top_k, double top_p, double min_p) {
  const int n = static_cast<int>(logits.size());
  for (double& l : logits) l /= temperature;
  auto softmax = [&](const std::vector<double>& v) {
    double m = *std::max_element(v.begin(), v.end());
    std::vector<double> p(v.size());
    double sum = 0.0;
    for (size_t i = 0; i < v.size(); ++i) sum += p[i] = std::isinf(v[i]) ? 0.0 : std::exp(v[i] - m);
    for (double& x : p) x /= sum;
    return p;
  };
  if (min_p > 0) {
    std::vector<double> p = softmax(logits);
    double pmax = *std::max_element(p.begin(), p.end());
    for (int i = 0; i < n; ++i) {
      if (p[i] < min_p * pmax) logits[i] = -INFINITY;
    }
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] < logits[b]; });
  if (top_k > 0 && top_k < n) {
    for (int i = 0; i < n - top_k; ++i) logits[order[i]] = -INFINITY;
  }
  if (top_p < 1.0) {
    std::vector<double> p = softmax(logits);
    double cum = 0.0;
    for (int i = 0; i < n; ++i) {
      cum += p[order[i]];
      if (cum <= 1.0 - top_p && i < n - 1) logits[order[i]] = -INFINITY;
    }
  }
  std::vector<double> p = softmax(logits);
  std::map<int32_t, double> out;
  for (int i = 0; i < n; ++i) {
    if (p[i] > 0) out[i] = p[i];
  }
  return out;
}

TEST(SamplerDistribution, MatchesVllmMaskingOnRandomLogits) {
  std::mt19937 rng(5);
  std::normal_distribution<double> normal(0.0, 2.0);
  struct Case { double t; int k; double p; double min_p; };
  std::vector<Case> cases = {{1.0, 0, 1.0, 0.0}, {0.7, 0, 1.0, 0.0}, {1.0, 5, 1.0, 0.0},
                             {1.0, 0, 0.9, 0.0}, {1.3, 0, 0.5, 0.0}, {1.0, 0, 1.0, 0.1},
                             {0.8, 20, 0.8, 0.05}, {1.0, 1, 1.0, 0.0}, {2.0, 0, 0.01, 0.0}};
  for (int vocab : {7, 100, 3000}) {
    for (const Case& c : cases) {
      std::vector<double> raw(vocab);
      for (double& x : raw) x = normal(rng);
      std::vector<float> logits(raw.begin(), raw.end());
      SamplingParams p;
      p.temperature = c.t;
      p.top_k = c.k;
      p.top_p = c.p;
      p.min_p = c.min_p;
      Sampler::Candidates got = Sampler::sampling_candidates(logits.data(), vocab, p);
      std::map<int32_t, double> want = vllm_distribution(std::vector<double>(raw.begin(), raw.end()), c.t, c.k, c.p, c.min_p);
      ASSERT_EQ(got.ids.size(), want.size()) << "vocab " << vocab << " t " << c.t << " k " << c.k
                                             << " p " << c.p << " min_p " << c.min_p;
      for (size_t i = 0; i < got.ids.size(); ++i) {
        ASSERT_TRUE(want.count(got.ids[i]));
        EXPECT_NEAR(got.probs[i], want[got.ids[i]], 1e-5);
        if (i > 0 && (c.k > 0 || c.p < 1.0)) {
          EXPECT_GE(got.probs[i - 1], got.probs[i]);  // sorted when top-k/top-p is active
        }
      }
    }
  }
}

TEST(SamplerDraws, FrequenciesFollowTheDistribution) {
  Fixture f;
  f.params.temperature = 1.0;
  std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  Sampler sampler(4);
  std::vector<int> counts(4, 0);
  constexpr int kDraws = 40000;
  SamplingState& s = f.make();
  for (int i = 0; i < kDraws; ++i) {
    std::vector<float> logits = base;
    SamplingState* rows[1] = {&s};
    ++counts[sampler.sample(logits.data(), rows, nullptr)[0].token_id];
  }
  const double expected[4] = {0.5, 0.3, 0.15, 0.05};
  for (int t = 0; t < 4; ++t) {
    // Binomial std at p=0.5 is 0.0025; allow 4 sigma.
    EXPECT_NEAR(counts[t] / double(kDraws), expected[t], 0.01) << "token " << t;
  }
}

// Pearson's chi-square of seeded draws against the distribution the sampler says it draws from
// (itself checked against vLLM's masking above), for each sampling option. Seeds are fixed, so
// the test is deterministic; the bound is the 0.999 quantile for the degrees of freedom.
TEST(SamplerDraws, ChiSquareForEachOption) {
  std::vector<float> base = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -2.0f};
  struct Option { const char* name; double t; int k; double p; double min_p; };
  const Option options[] = {{"temperature 0.7", 0.7, 0, 1.0, 0.0}, {"temperature 1.5", 1.5, 0, 1.0, 0.0},
                            {"top_k 3", 1.0, 3, 1.0, 0.0},         {"top_p 0.8", 1.0, 0, 0.8, 0.0},
                            {"min_p 0.2", 1.0, 0, 1.0, 0.2},        {"all", 0.9, 5, 0.9, 0.05}};
  // 0.999 quantiles of chi-square for 1..7 degrees of freedom.
  const double kCritical[] = {0.0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
  for (const Option& o : options) {
    Fixture f;
    f.params.temperature = o.t;
    f.params.top_k = o.k;
    f.params.top_p = o.p;
    f.params.min_p = o.min_p;
    f.generator.seed(2024);
    std::vector<float> logits = base;
    Sampler::Candidates want = Sampler::sampling_candidates(logits.data(), 8, f.params);
    Sampler sampler(8);
    SamplingState& s = f.make();
    std::map<int32_t, int> counts;
    constexpr int kDraws = 30000;
    for (int i = 0; i < kDraws; ++i) {
      std::vector<float> l = base;
      SamplingState* rows[1] = {&s};
      ++counts[sampler.sample(l.data(), rows, nullptr)[0].token_id];
    }
    double chi2 = 0.0;
    for (size_t i = 0; i < want.ids.size(); ++i) {
      double expected = want.probs[i] * kDraws;
      double diff = counts[want.ids[i]] - expected;
      chi2 += diff * diff / expected;
      counts.erase(want.ids[i]);
    }
    EXPECT_TRUE(counts.empty()) << o.name << ": drew a token outside the allowed set";
    size_t dof = want.ids.size() - 1;
    if (dof > 0) {
      EXPECT_LT(chi2, kCritical[dof]) << o.name << " (" << dof << " degrees of freedom)";
    }
  }
}

// The draw without top-k/top-p skips the candidate list; for the same uniform value it must pick
// the token a walk through sampling_candidates' list picks.
TEST(SamplerDraws, FullVocabularyDrawEqualsTheCandidateWalk) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (double min_p : {0.0, 0.05}) {
    SamplingParams p;
    p.temperature = 0.8;
    p.min_p = min_p;
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> base(1000);
      for (float& x : base) x = normal(rng);
      double u = uniform(rng);
      std::vector<float> a = base, b = base;
      Sampler::Candidates c = Sampler::sampling_candidates(a.data(), 1000, p);
      int32_t want = c.ids.back();
      double cum = 0.0;
      for (size_t i = 0; i < c.ids.size(); ++i) {
        cum += c.probs[i];
        if (u < cum) {
          want = c.ids[i];
          break;
        }
      }
      EXPECT_EQ(Sampler::sample_full_vocabulary(b.data(), 1000, p, u), want)
          << "min_p " << min_p << ", trial " << trial << ", u " << u;
    }
  }
}

TEST(SamplerDraws, SeededGeneratorsReproduce) {
  auto draw = [](uint64_t seed) {
    Fixture f;
    f.params.temperature = 1.0;
    f.generator.seed(seed);
    Sampler sampler(50);
    std::vector<int32_t> tokens;
    SamplingState& s = f.make();
    for (int i = 0; i < 20; ++i) {
      std::vector<float> logits(50, 0.0f);
      SamplingState* rows[1] = {&s};
      tokens.push_back(sampler.sample(logits.data(), rows, nullptr)[0].token_id);
    }
    return tokens;
  };
  EXPECT_EQ(draw(1), draw(1));
  EXPECT_NE(draw(1), draw(2));
}

TEST(SamplerDraws, GreedyIgnoresTopKTopPAndTemperature) {
  Fixture f;
  f.params.temperature = 0.0;
  f.params.top_k = 1;
  f.params.top_p = 0.1;
  std::vector<float> logits = {0.1f, 3.0f, 2.9f};
  Sampler sampler(3);
  SamplingState* rows[1] = {&f.make()};
  EXPECT_EQ(sampler.sample(logits.data(), rows, nullptr)[0].token_id, 1);
}

TEST(SamplerLogprobs, RawLogSoftmaxTopKAndRank) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.0f};
  TokenLogprobs lp = Sampler::gather_logprobs(logits.data(), 4, /*token_id=*/2, /*num_logprobs=*/2);
  double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.0));
  EXPECT_NEAR(lp.sampled_logprob, 2.0 - lse, 1e-6);
  EXPECT_EQ(lp.sampled_rank, 2);
  ASSERT_EQ(lp.top_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_NEAR(lp.top_logprobs[0], 3.0 - lse, 1e-6);
  TokenLogprobs all = Sampler::gather_logprobs(logits.data(), 4, 3, -1);
  EXPECT_EQ(all.top_ids.size(), 4u);
  EXPECT_EQ(all.sampled_rank, 4);
}

TEST(SamplerLogprobs, ReportedLogprobsIgnoreProcessors) {
  Fixture f;
  f.params.temperature = 0.0;
  f.params.logprobs = 1;
  f.params.logit_bias = {{0, 100.0}};
  std::vector<float> logits = {0.0f, 5.0f};
  Sampler sampler(2);
  SamplingState* rows[1] = {&f.make()};
  SampleResult r = sampler.sample(logits.data(), rows, nullptr)[0];
  EXPECT_EQ(r.token_id, 0);  // the bias decided the token...
  ASSERT_TRUE(r.logprobs);
  EXPECT_NEAR(r.logprobs->sampled_logprob, -5.0 - std::log1p(std::exp(-5.0)), 1e-5);  // ...not the logprob
  EXPECT_EQ(r.logprobs->sampled_rank, 2);
}

TEST(SamplerDevice, WhichRowsTheDeviceMayDraw) {
  Fixture f;
  EXPECT_TRUE(Sampler::device_can_draw(f.make(), 0));
  f.params.logprobs = 5;
  EXPECT_FALSE(Sampler::device_can_draw(f.make(), 0)) << "a backend without device logprobs";
  EXPECT_TRUE(Sampler::device_can_draw(f.make(), 20));
  f.params.logprobs = 21;
  EXPECT_FALSE(Sampler::device_can_draw(f.make(), 20)) << "more than the device computes";
  f.params.logprobs = -1;
  EXPECT_FALSE(Sampler::device_can_draw(f.make(), 20)) << "the whole vocabulary";
  f.params.logprobs = 5;
  f.params.top_p = 0.9;
  EXPECT_FALSE(Sampler::device_can_draw(f.make(), 20)) << "the device may hand the row back";
  f.params.temperature = 0.0;
  EXPECT_TRUE(Sampler::device_can_draw(f.make(), 20)) << "greedy ignores top-p";
}

TEST(SamplerDevice, DeviceRowCarriesTheRequestsProcessorsAndDraw) {
  Fixture f;
  f.prompt = {5, 9, 9};
  f.output = {9, 4, 4};
  f.params.temperature = 0.7;
  f.params.min_p = 0.1;
  f.params.top_k = 12;
  f.params.top_p = 0.8;
  f.params.allowed_token_ids = std::vector<int32_t>{30, 4, 30, 9};
  f.params.logit_bias = {{4, 1.5}};
  f.params.repetition_penalty = 1.2;
  f.params.frequency_penalty = 0.5;
  f.params.min_tokens = 10;
  f.params.logprobs = 3;
  SamplingState& s = f.make();
  s.min_tokens_stop_ids = {2};
  s.bad_words_token_ids = {{4, 7}};  // the output ends with 4: bans 7
  Sampler::DeviceRowLists lists;
  DeviceSampleRow d = Sampler::device_row(s, 6, lists);
  EXPECT_EQ(d.row, 6);
  EXPECT_FALSE(d.greedy);
  EXPECT_FLOAT_EQ(d.temperature, 0.7f);
  EXPECT_FLOAT_EQ(d.min_p, 0.1f);
  EXPECT_EQ(d.top_k, 12);
  EXPECT_DOUBLE_EQ(d.top_p, 0.8);
  EXPECT_EQ(d.num_logprobs, 3);
  EXPECT_EQ(std::vector<int32_t>(d.allowed.begin(), d.allowed.end()), (std::vector<int32_t>{4, 9, 30}));
  EXPECT_EQ(std::vector<int32_t>(d.banned.begin(), d.banned.end()), Sampler::banned_tokens(s));
  EXPECT_NE(std::find(d.banned.begin(), d.banned.end(), 7), d.banned.end());
  EXPECT_NE(std::find(d.banned.begin(), d.banned.end(), 2), d.banned.end()) << "min_tokens";
  ASSERT_EQ(d.bias.size(), 1u);
  EXPECT_EQ(d.bias[0], (std::pair<int32_t, float>{4, 1.5f}));
  std::vector<int32_t> seen, counts;
  Sampler::seen_tokens(s, seen, counts);
  EXPECT_EQ(std::vector<int32_t>(d.seen.begin(), d.seen.end()), seen);
  EXPECT_EQ(std::vector<int32_t>(d.seen_output_counts.begin(), d.seen_output_counts.end()), counts);
  EXPECT_FLOAT_EQ(d.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(d.frequency_penalty, 0.5f);
  EXPECT_EQ(d.u, 0.0) << "the caller draws u from the request's generator";
}

}  // namespace
}  // namespace cvllm
