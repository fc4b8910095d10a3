#include "layers/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels/cpu/vec_math.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cvllm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// max and sum of exp(v - max) over a row, vectorized (the vocabulary is tens of thousands wide).
CVLLM_VECTOR_CLONES
float row_max(const float* v, int64_t n) {
  cpu::v16f m = cpu::splat(kNegInf);
  int64_t i = 0;
  for (; i + cpu::kLanes <= n; i += cpu::kLanes) {
    cpu::v16f x = cpu::load16(v + i);
    m = x > m ? x : m;
  }
  float out = cpu::reduce_max(m);
  for (; i < n; ++i) out = std::max(out, v[i]);
  return out;
}

// out[i] = exp(v[i] - max) (out may alias v); returns their sum.
CVLLM_VECTOR_CLONES
double exp_shifted(const float* v, float max, float* out, int64_t n) {
  cpu::v16f acc{};
  int64_t i = 0;
  for (; i + cpu::kLanes <= n; i += cpu::kLanes) {
    cpu::v16f e = cpu::exp_nonpositive(cpu::load16(v + i) - max);
    cpu::store16(out + i, e);
    acc += e;
  }
  double sum = cpu::reduce_sum(acc);
  for (; i < n; ++i) sum += out[i] = cpu::exp_nonpositive(v[i] - max);
  return sum;
}

void log_softmax(const float* logits, float* out, int64_t n) {
  float max_v = row_max(logits, n);
  double sum = exp_shifted(logits, max_v, out, n);
  float log_sum = static_cast<float>(std::log(sum)) + max_v;
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - log_sum;
}

int32_t argmax(const float* v, int64_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

void apply_allowed_token_ids(float* logits, int64_t n, const std::vector<int32_t>& allowed) {
  std::vector<float> kept(allowed.size());
  for (size_t i = 0; i < allowed.size(); ++i) kept[i] = logits[allowed[i]];
  std::fill(logits, logits + n, kNegInf);
  for (size_t i = 0; i < allowed.size(); ++i) logits[allowed[i]] = kept[i];
}

// Repetition penalty on every token seen in the prompt or the output (once each), then frequency
// and presence penalties on output tokens by their counts.
void apply_penalties(float* logits, const SamplingState& s) {
  const SamplingParams& p = *s.params;
  std::vector<int32_t> seen, output_counts;
  Sampler::seen_tokens(s, seen, output_counts);
  const float r = static_cast<float>(p.repetition_penalty);
  const float frequency = static_cast<float>(p.frequency_penalty);
  const float presence = static_cast<float>(p.presence_penalty);
  for (size_t j = 0; j < seen.size(); ++j) {
    float& v = logits[seen[j]];
    if (p.repetition_penalty != 1.0) v = v > 0 ? v / r : v * r;
    if (output_counts[j] > 0) {
      v -= frequency * output_counts[j];
      v -= presence * 1.0f;
    }
  }
}

// Softmax in place; masked (-inf) entries become 0.
void softmax_inplace(float* v, int64_t n) {
  float max_v = row_max(v, n);
  double sum = exp_shifted(v, max_v, v, n);
  float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) v[i] *= inv;
}

// Indices of the entries with the largest probability, sorted descending, enough to cover
// `mass` of probability (or all non-zero ones) and at least `min_count`.
std::vector<int32_t> top_candidates(const float* probs, int64_t n, int64_t max_count) {
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto by_prob = [&](int32_t a, int32_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); };
  if (max_count < n) {
    std::nth_element(idx.begin(), idx.begin() + max_count, idx.end(), by_prob);
    idx.resize(max_count);
  }
  std::sort(idx.begin(), idx.end(), by_prob);
  return idx;
}

}  // namespace

TokenLogprobs Sampler::gather_logprobs(const float* logits, int64_t n, int32_t token_id,
                                       int num_logprobs) {
  std::vector<float> lp(n);
  log_softmax(logits, lp.data(), n);
  TokenLogprobs out;
  out.sampled_token_id = token_id;
  out.sampled_logprob = lp[token_id];
  int rank = 1;
  for (int64_t i = 0; i < n; ++i) rank += lp[i] > lp[token_id] ? 1 : 0;
  out.sampled_rank = rank;
  int64_t k = num_logprobs < 0 ? n : std::min<int64_t>(num_logprobs, n);
  if (k > 0) {
    std::vector<int32_t> idx = top_candidates(lp.data(), n, k);
    for (int32_t i : idx) {
      out.top_ids.push_back(i);
      out.top_logprobs.push_back(lp[i]);
    }
  }
  return out;
}

void Sampler::apply_logits_processors(float* logits, int64_t n, const SamplingState& s) {
  const SamplingParams& p = *s.params;
  if (p.allowed_token_ids) apply_allowed_token_ids(logits, n, *p.allowed_token_ids);
  for (int32_t t : banned_tokens(s)) logits[t] = kNegInf;  // bad words, then min_tokens
  for (const auto& [t, bias] : p.logit_bias) logits[t] += static_cast<float>(bias);
  apply_penalties(logits, s);
}

Sampler::Candidates Sampler::sampling_candidates(float* logits, int64_t n, const SamplingParams& p) {
  // vLLM clamps tiny temperatures up to 0.01 to avoid overflow.
  float temperature = static_cast<float>(std::max(p.temperature, 0.01));
  for (int64_t i = 0; i < n; ++i) logits[i] /= temperature;
  softmax_inplace(logits, n);  // logits now hold probabilities
  float* probs = logits;
  if (p.min_p > 0.0) {
    float threshold = static_cast<float>(p.min_p) * *std::max_element(probs, probs + n);
    for (int64_t i = 0; i < n; ++i) {
      if (probs[i] < threshold) probs[i] = 0.0f;
    }
  }
  int64_t k = p.top_k > 0 ? std::min<int64_t>(p.top_k, n) : n;
  bool use_top_p = p.top_p < 1.0;
  double total = 0.0;  // mass left after min_p: top-k/top-p renormalize over it
  for (int64_t i = 0; i < n; ++i) total += probs[i];
  // Candidates in descending probability. With top-k they are exactly the k most likely tokens.
  // Without, widen a partial sort until it covers the top-p mass (fully sorting a large vocabulary
  // is the slow path).
  std::vector<int32_t> cand;
  double mass = 0.0;  // what top-p is measured against: the top-k set's mass, else everything
  if (k < n) {
    cand = top_candidates(probs, n, k);
    for (int32_t i : cand) mass += probs[i];
  } else if (!use_top_p) {
    // Neither top-k nor top-p: every token with probability left is a candidate, in vocabulary
    // order (the draw needs no sorting).
    for (int64_t i = 0; i < n; ++i) {
      if (probs[i] > 0.0f) cand.push_back(static_cast<int32_t>(i));
    }
    mass = total;
  } else {
    mass = total;
    for (int64_t count = std::min<int64_t>(n, 1024);; count = std::min<int64_t>(n, count * 8)) {
      cand = top_candidates(probs, n, count);
      double covered = 0.0;
      for (int32_t i : cand) covered += probs[i];
      if (count == n || covered >= p.top_p * total) break;
    }
  }
  // Top-p over the renormalized top-k set: keep the smallest prefix whose mass reaches top_p,
  // always keeping the most likely token (vLLM masks where the ascending cumsum <= 1 - top_p).
  size_t keep = cand.size();
  if (use_top_p) {
    double target = p.top_p * mass;
    double cum = 0.0;
    for (size_t i = 0; i < cand.size(); ++i) {
      cum += probs[cand[i]];
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  while (keep > 1 && probs[cand[keep - 1]] == 0.0f) --keep;  // min_p-masked tokens never sample
  Candidates out;
  double kept_mass = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_mass += probs[cand[i]];
  for (size_t i = 0; i < keep; ++i) {
    out.ids.push_back(cand[i]);
    out.probs.push_back(probs[cand[i]] / kept_mass);
  }
  return out;
}

bool Sampler::device_can_draw(const SamplingState& s, int max_logprobs) {
  const SamplingParams& p = *s.params;
  if (!p.logprobs) return true;
  return *p.logprobs >= 0 && *p.logprobs <= max_logprobs && device_always_draws(p);
}

bool Sampler::device_always_draws(const SamplingParams& p) {
  return p.is_greedy() || (p.top_k <= 0 && p.top_p >= 1.0);
}

bool Sampler::next_draw_ignores_last_token(const SamplingState& s) {
  const SamplingParams& p = *s.params;
  if (p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0) {
    return false;
  }
  for (const auto& word : s.bad_words_token_ids) {
    if (word.size() > 1) return false;
  }
  return static_cast<int>(s.output_token_ids.size()) >= p.min_tokens;
}

DeviceSampleRow Sampler::device_row(const SamplingState& s, int32_t row, DeviceRowLists& lists) {
  const SamplingParams& p = *s.params;
  if (p.allowed_token_ids) {
    lists.allowed = *p.allowed_token_ids;
    std::sort(lists.allowed.begin(), lists.allowed.end());
    lists.allowed.erase(std::unique(lists.allowed.begin(), lists.allowed.end()), lists.allowed.end());
  }
  lists.banned = banned_tokens(s);
  for (const auto& [t, b] : p.logit_bias) lists.bias.emplace_back(t, static_cast<float>(b));
  seen_tokens(s, lists.seen, lists.seen_output_counts);
  DeviceSampleRow d;
  d.row = row;
  d.allowed = lists.allowed;
  d.banned = lists.banned;
  d.bias = lists.bias;
  d.seen = lists.seen;
  d.seen_output_counts = lists.seen_output_counts;
  d.repetition_penalty = static_cast<float>(p.repetition_penalty);
  d.frequency_penalty = static_cast<float>(p.frequency_penalty);
  d.presence_penalty = static_cast<float>(p.presence_penalty);
  d.greedy = p.is_greedy();
  d.temperature = static_cast<float>(p.temperature);
  d.min_p = static_cast<float>(p.min_p);
  d.top_k = p.top_k;
  d.top_p = p.top_p;
  d.num_logprobs = p.logprobs ? *p.logprobs : -1;
  return d;
}

std::vector<int32_t> Sampler::banned_tokens(const SamplingState& s) {
  std::vector<int32_t> out;
  for (const auto& word : s.bad_words_token_ids) {
    if (word.empty()) continue;
    const size_t prefix = word.size() - 1;
    if (prefix > s.output_token_ids.size()) continue;
    if (std::equal(word.begin(), word.end() - 1, s.output_token_ids.end() - prefix))
      out.push_back(word.back());
  }
  if (static_cast<int>(s.output_token_ids.size()) < s.params->min_tokens) {
    out.insert(out.end(), s.min_tokens_stop_ids.begin(), s.min_tokens_stop_ids.end());
  }
  return out;
}

void Sampler::seen_tokens(const SamplingState& s, std::vector<int32_t>& seen,
                          std::vector<int32_t>& output_counts) {
  const SamplingParams& p = *s.params;
  seen.clear();
  output_counts.clear();
  if (p.repetition_penalty == 1.0 && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0) return;
  // Frequency and presence penalties look at output tokens only; the repetition penalty at both.
  if (p.repetition_penalty != 1.0) seen.assign(s.prompt_token_ids.begin(), s.prompt_token_ids.end());
  for (const auto& [t, c] : s.output_token_counts) seen.push_back(t);
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  output_counts.reserve(seen.size());
  for (int32_t t : seen) {
    auto it = s.output_token_counts.find(t);
    output_counts.push_back(it == s.output_token_counts.end() ? 0 : it->second);
  }
}

double Sampler::take_uniform(SamplingState& s) {
  if (s.preset_uniform) {
    const double u = *s.preset_uniform;
    s.preset_uniform.reset();
    return u;
  }
  return uniform_draw(*s.generator);
}

double Sampler::uniform_draw(std::mt19937_64& generator) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}

int32_t Sampler::sample_full_vocabulary(float* logits, int64_t n, const SamplingParams& p, double u) {
  float temperature = static_cast<float>(std::max(p.temperature, 0.01));  // as sampling_candidates
  for (int64_t i = 0; i < n; ++i) logits[i] /= temperature;
  softmax_inplace(logits, n);
  float* probs = logits;
  if (p.min_p > 0.0) {
    float threshold = static_cast<float>(p.min_p) * *std::max_element(probs, probs + n);
    for (int64_t i = 0; i < n; ++i) {
      if (probs[i] < threshold) probs[i] = 0.0f;
    }
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += probs[i];
  const double target = u * total;
  double cum = 0.0;
  int32_t last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (probs[i] <= 0.0f) continue;
    cum += probs[i];
    last = static_cast<int32_t>(i);
    if (target < cum) return last;
  }
  return last;  // rounding left the draw past the end: the last token with probability
}

SampleResult Sampler::sample_row(float* logits, SamplingState& s) const {
  const SamplingParams& p = *s.params;
  const int64_t n = vocab_size_;
  std::vector<float> raw_logits;
  if (p.logprobs) raw_logits.assign(logits, logits + n);  // logprobs are of the raw distribution

  if (!s.logits_processed) apply_logits_processors(logits, n, s);
  s.logits_processed = false;
  int32_t token;
  if (p.is_greedy()) {
    token = argmax(logits, n);
  } else if ((p.top_k <= 0 || p.top_k >= n) && p.top_p >= 1.0) {
    // Neither top-k nor top-p: draw straight from the (min_p-filtered) distribution in vocabulary
    // order — the same draw as through the candidate list, without building it.
    token = sample_full_vocabulary(logits, n, p, take_uniform(s));
  } else {
    Candidates c = sampling_candidates(logits, n, p);
    // One uniform draw through the cumulative distribution (multinomial sampling).
    double u = take_uniform(s);
    token = c.ids.back();
    double cum = 0.0;
    for (size_t i = 0; i < c.ids.size(); ++i) {
      cum += c.probs[i];
      if (u < cum) {
        token = c.ids[i];
        break;
      }
    }
  }

  SampleResult result;
  result.token_id = token;
  if (p.logprobs) result.logprobs = gather_logprobs(raw_logits.data(), n, token, *p.logprobs);
  return result;
}

std::vector<SampleResult> Sampler::sample(float* logits, std::span<SamplingState* const> rows,
                                          ThreadPool* pool) const {
  std::vector<SampleResult> results(rows.size());
  auto run = [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      results[r] = sample_row(logits + r * vocab_size_, *rows[r]);
    }
  };
  // Every row has its own generator (the runner seeds unseeded requests from the engine seed), so
  // rows are independent and can be drawn in parallel.
  if (pool == nullptr || rows.size() < 2) {
    run(0, static_cast<int64_t>(rows.size()), 0);
  } else {
    pool->parallel_for(static_cast<int64_t>(rows.size()), run);
  }
  return results;
}

}  // namespace cvllm
