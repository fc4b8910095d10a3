#include "runner/model_runner.h"

#include <algorithm>

#include "util/error.h"
#include "util/logging.h"
#include "util/system.h"

namespace cvllm {

void pad_decode_batch(ForwardBatch& b, int64_t num_reqs, int64_t width) {
  const int64_t n = b.num_reqs();
  CVLLM_CHECK(b.num_tokens() == n && n <= num_reqs && b.max_blocks_per_req <= width &&
                  static_cast<int64_t>(b.block_table.size()) == n * b.max_blocks_per_req,
              "pad_decode_batch: ", b.num_tokens(), " tokens of ", n, " requests x ",
              b.max_blocks_per_req, " blocks do not fit ", num_reqs, " x ", width);
  std::vector<int32_t> table(static_cast<size_t>(num_reqs * width), 0);  // 0: the null block
  for (int64_t r = 0; r < n; ++r) {
    std::copy_n(b.block_table.begin() + r * b.max_blocks_per_req, b.max_blocks_per_req,
                table.begin() + r * width);
  }
  b.block_table = std::move(table);
  b.max_blocks_per_req = width;
  for (int64_t r = n; r < num_reqs; ++r) {
    b.input_ids.push_back(0);
    b.positions.push_back(0);
    b.slot_mapping.push_back(-1);
    b.query_start_loc.push_back(static_cast<int32_t>(r + 1));
    b.seq_lens.push_back(1);
  }
}

std::vector<int> default_graph_batch_sizes(int max_num_seqs) {
  const int limit = std::clamp(max_num_seqs, 1, 512);
  std::vector<int> sizes;
  for (int n : {1, 2, 4}) {
    sizes.push_back(n);
    if (n >= limit) return sizes;
  }
  for (int n = 8;; n += 8) {  // ends with the first size that holds `limit` requests
    sizes.push_back(n);
    if (n >= limit) return sizes;
  }
}

int64_t ModelRunner::kv_block_bytes(const CausalLM& model, int block_size, DType kv_cache_dtype) {
  int64_t per_token = model.num_kv_heads() * model.head_size() * traits(kv_cache_dtype).type_size;
  return 2 * model.num_layers() * block_size * per_token;
}

void ModelRunner::profile_forward(CausalLM& model, Backend& backend, int64_t num_tokens,
                                  int64_t num_seqs, int block_size, DType kv_cache_dtype) {
  num_seqs = std::clamp<int64_t>(num_seqs, 1, std::max<int64_t>(num_tokens, 1));
  ForwardBatch batch;
  batch.query_start_loc.push_back(0);
  int64_t longest = 0;
  for (int64_t r = 0; r < num_seqs; ++r) {
    const int64_t len = num_tokens / num_seqs + (r < num_tokens % num_seqs ? 1 : 0);
    for (int64_t i = 0; i < len; ++i) {
      batch.input_ids.push_back(0);
      batch.positions.push_back(static_cast<int32_t>(i));
      batch.slot_mapping.push_back(-1);  // nothing is written to the cache
    }
    batch.query_start_loc.push_back(static_cast<int32_t>(batch.input_ids.size()));
    batch.seq_lens.push_back(static_cast<int32_t>(len));
    if (len > 0) batch.logits_indices.push_back(static_cast<int32_t>(batch.input_ids.size() - 1));
    longest = std::max(longest, len);
  }
  // Every block-table entry names the one block of a one-block cache: attention reads keys
  // there (zeros), wherever the positions fall.
  batch.max_blocks_per_req = std::max<int64_t>((longest + block_size - 1) / block_size, 1);
  batch.block_table.assign(static_cast<size_t>(num_seqs * batch.max_blocks_per_req), 0);
  std::vector<KVCacheLayer> caches;
  for (int64_t i = 0; i < model.num_layers(); ++i) {
    KVCacheLayer layer;
    std::vector<int64_t> shape = {1, model.num_kv_heads(), block_size, model.head_size()};
    layer.k = backend.alloc(kv_cache_dtype, shape);
    layer.v = backend.alloc(kv_cache_dtype, shape);
    layer.block_size = block_size;
    caches.push_back(std::move(layer));
  }
  std::unique_ptr<StepMetadata> step = backend.prepare_step(batch);
  ForwardContext ctx{backend, *step, caches, nullptr};
  Tensor hidden = model.forward(ctx);
  if (!batch.logits_indices.empty()) {
    Tensor selected =
        backend.alloc(DType::kF32, {static_cast<int64_t>(batch.logits_indices.size()), hidden.dim(1)});
    backend.gather_rows(hidden, batch.logits_indices, selected);
    Tensor logits = model.compute_logits(backend, selected);
  }
  backend.synchronize();
}

ModelRunner::ModelRunner(CausalLM& model, Backend& backend, const RunnerConfig& config)
    : model_(model),
      backend_(backend),
      config_(config),
      sampler_(model.config().vocab_size),
      generator_(static_cast<uint64_t>(config.seed)) {
  CVLLM_CHECK(config.num_kv_blocks >= 2, "need at least 2 KV blocks");
  for (int64_t i = 0; i < model.num_layers(); ++i) {
    KVCacheLayer layer;
    // The backend decides the layout inside (the CPU one transposes K within each block).
    std::vector<int64_t> shape = {config.num_kv_blocks, model.num_kv_heads(), config.block_size,
                                  model.head_size()};
    layer.k = backend.alloc(config.kv_cache_dtype, shape);
    layer.v = backend.alloc(config.kv_cache_dtype, shape);
    layer.block_size = config.block_size;
    kv_caches_.push_back(std::move(layer));
  }
  capture_graphs();
}

void ModelRunner::capture_graphs() {
  if (config_.graph_batch_sizes.empty()) return;
  graph_width_ = (config_.max_model_len + config_.block_size - 1) / config_.block_size;
  std::vector<int> sizes = config_.graph_batch_sizes;
  // Largest first: the smaller passes' temporaries then reuse the larger ones' memory.
  std::sort(sizes.rbegin(), sizes.rend());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  const double start = monotonic_seconds();
  try {
    for (int n : sizes) {
      CVLLM_CHECK(n > 0, "graph batch sizes must be positive, got ", n);
      ForwardBatch placeholder;
      placeholder.query_start_loc = {0};
      pad_decode_batch(placeholder, n, graph_width_);
      std::unique_ptr<CapturedForward> captured =
          backend_.capture_forward(placeholder, [this](const StepMetadata& step) {
            ForwardContext ctx{backend_, step, kv_caches_, nullptr};
            // The logits too: the projection then follows the last layer inside the recording.
            return model_.compute_logits(backend_, model_.forward(ctx));
          });
      if (!captured) {  // this backend does not record
        graphs_.clear();
        return;
      }
      graphs_.emplace(n, std::move(captured));
    }
  } catch (const Error& e) {
    graphs_.clear();
    LOG_WARNING("Decode steps run eagerly: their forward pass could not be recorded as a CUDA "
                "graph (", e.what(), ")");
    return;
  }
  LOG_INFO("Recorded the decode step as CUDA graphs for ", graphs_.size(), " batch sizes (",
           sizes.back(), " to ", sizes.front(), " requests) in ", monotonic_seconds() - start, " s");
}

CapturedForward* ModelRunner::graph_for(ForwardBatch& batch) {
  if (graphs_.empty() || dump) return nullptr;
  const int64_t n = batch.num_reqs();
  if (n == 0 || batch.num_tokens() != n || batch.max_blocks_per_req > graph_width_) return nullptr;
  // The recorded pass gives the logits of every row: each request must sample its token.
  if (static_cast<int64_t>(batch.logits_indices.size()) != n) return nullptr;
  for (int64_t i = 0; i < n; ++i) {
    if (batch.logits_indices[i] != i) return nullptr;
  }
  for (int32_t id : batch.input_ids) {  // out-of-range ids: the eager pass reports them
    if (id < 0 || id >= model_.config().vocab_size) return nullptr;
  }
  auto it = graphs_.lower_bound(static_cast<int>(n));
  if (it == graphs_.end()) return nullptr;
  pad_decode_batch(batch, it->first, graph_width_);
  return it->second.get();
}

void ModelRunner::add_request(const NewRequestData& data) {
  auto state = std::make_shared<RequestState>();
  state->request_id = data.request_id;
  state->token_ids = data.prompt_token_ids;
  state->token_ids.insert(state->token_ids.end(), data.output_token_ids.begin(),
                          data.output_token_ids.end());
  state->num_prompt_tokens = static_cast<int>(data.prompt_token_ids.size());
  state->block_ids = data.block_ids;
  state->num_computed_tokens = data.num_computed_tokens;
  state->params = data.sampling_params;
  state->tokens_from_engine = data.tokens_from_engine;
  const SamplingParams& p = *state->params;
  if (auto parked = parked_generators_.find(data.request_id); parked != parked_generators_.end()) {
    state->generator = std::move(parked->second);  // resumed after preemption: draws go on
    parked_generators_.erase(parked);
  } else {
    uint64_t seed = p.seed && *p.seed != -1 ? static_cast<uint64_t>(*p.seed) : generator_();
    state->generator = std::make_unique<std::mt19937_64>(seed);
  }
  SamplingState& s = state->sampling;
  s.params = state->params.get();
  s.generator = state->generator.get();
  s.bad_words_token_ids = p.bad_words_token_ids;
  s.min_tokens_stop_ids = p.all_stop_token_ids;
  for (int32_t t : data.output_token_ids) ++s.output_token_counts[t];
  requests_[data.request_id] = std::move(state);
}

void ModelRunner::update_states(const SchedulerOutput& scheduled) {
  for (const std::string& id : scheduled.finished_req_ids) {
    requests_.erase(id);
    parked_generators_.erase(id);
  }
  for (const std::string& id : scheduled.preempted_req_ids) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    parked_generators_[id] = std::move(it->second->generator);
    requests_.erase(it);
  }
  for (const NewRequestData& data : scheduled.scheduled_new_reqs) add_request(data);
  for (const CachedRequestData& data : scheduled.scheduled_cached_reqs) {
    auto it = requests_.find(data.request_id);
    CVLLM_CHECK(it != requests_.end(), "runner has no state for request ", data.request_id);
    RequestState& state = *it->second;
    state.block_ids.insert(state.block_ids.end(), data.new_block_ids.begin(), data.new_block_ids.end());
    state.num_computed_tokens = data.num_computed_tokens;
    for (int32_t t : data.new_token_ids) {  // chosen by the engine (beam search)
      state.token_ids.push_back(t);
      ++state.sampling.output_token_counts[t];
    }
  }
}

ForwardBatch ModelRunner::build_batch(const SchedulerOutput& scheduled, PendingStep& step,
                                      const PendingStep* previous) {
  for (const NewRequestData& d : scheduled.scheduled_new_reqs) step.order.push_back(requests_.at(d.request_id));
  for (const CachedRequestData& d : scheduled.scheduled_cached_reqs) step.order.push_back(requests_.at(d.request_id));

  ForwardBatch batch;
  size_t max_blocks = 0;
  for (const auto& r : step.order) max_blocks = std::max(max_blocks, r->block_ids.size());
  batch.max_blocks_per_req = static_cast<int64_t>(max_blocks);
  batch.block_table.assign(step.order.size() * max_blocks, 0);  // padding points at the null block
  batch.query_start_loc.push_back(0);
  const int bs = config_.block_size;
  for (size_t i = 0; i < step.order.size(); ++i) {
    RequestState& r = *step.order[i];
    step.has_engine_tokens = step.has_engine_tokens || r.tokens_from_engine;
    int n = scheduled.num_scheduled_tokens.at(r.request_id);
    int start = r.num_computed_tokens;
    step.first_position.push_back(start);
    std::optional<int32_t> in_flight_draw;  // the token after token_ids, drawn by `previous`
    if (previous != nullptr) {
      auto it = previous->draw_of.find(&r);
      if (it != previous->draw_of.end()) in_flight_draw = it->second;
    }
    const int num_tokens = static_cast<int>(r.token_ids.size()) + (in_flight_draw ? 1 : 0);
    CVLLM_CHECK(start + n <= num_tokens, "request ", r.request_id, " scheduled past its known tokens");
    CVLLM_CHECK(static_cast<size_t>((start + n + bs - 1) / bs) <= r.block_ids.size(),
                "request ", r.request_id, " lacks KV blocks for its scheduled tokens");
    for (int j = 0; j < n; ++j) {
      int pos = start + j;
      if (pos < static_cast<int>(r.token_ids.size())) {
        batch.input_ids.push_back(r.token_ids[pos]);
      } else {  // the token in flight: the device writes it in
        batch.fed_rows.push_back(static_cast<int32_t>(batch.input_ids.size()));
        batch.fed_draws.push_back(*in_flight_draw);
        batch.fed_from = previous->draws.get();
        batch.input_ids.push_back(0);
        ++num_fed_tokens_;
      }
      batch.positions.push_back(pos);
      batch.slot_mapping.push_back(static_cast<int64_t>(r.block_ids[pos / bs]) * bs + pos % bs);
    }
    batch.query_start_loc.push_back(static_cast<int32_t>(batch.input_ids.size()));
    batch.seq_lens.push_back(start + n);
    std::copy(r.block_ids.begin(), r.block_ids.end(), batch.block_table.begin() + i * max_blocks);

    // Rows whose logits we need: prompt positions (for prompt logprobs) predicting the next prompt
    // token, then the last token when this step catches the request up (it samples).
    int32_t first_row = batch.query_start_loc[i];
    std::vector<int> prompt_rows;
    if (r.params->prompt_logprobs) {
      int end = std::min(start + n, r.num_prompt_tokens - 1);
      for (int pos = start; pos < end; ++pos) {
        prompt_rows.push_back(static_cast<int>(batch.logits_indices.size()));
        batch.logits_indices.push_back(first_row + (pos - start));
      }
    }
    step.prompt_logprob_rows.push_back(std::move(prompt_rows));
    if (start + n == num_tokens) {
      step.sample_rows.push_back(static_cast<int>(batch.logits_indices.size()));
      batch.logits_indices.push_back(first_row + n - 1);
    } else {
      step.sample_rows.push_back(-1);
    }
    r.num_computed_tokens = start + n;
  }
  return batch;
}

namespace {

// The request's sampling state over its tokens now (token_ids may have grown since the last call).
void point_at_tokens(SamplingState& s, const std::vector<int32_t>& token_ids, int num_prompt) {
  s.prompt_token_ids = std::span<const int32_t>(token_ids.data(), num_prompt);
  s.output_token_ids =
      std::span<const int32_t>(token_ids.data() + num_prompt, token_ids.size() - num_prompt);
}

}  // namespace

bool ModelRunner::can_feed_next(const PendingStep& step) const {
  if (step.has_engine_tokens) return false;
  size_t num_draws = 0;
  for (size_t i = 0; i < step.order.size(); ++i) {
    if (!step.prompt_logprob_rows[i].empty()) return false;  // prompt logprobs: read on the host
    if (step.sample_rows[i] < 0) continue;
    const RequestState& r = *step.order[i];
    if (!step.draw_of.count(&r) || !Sampler::device_always_draws(*r.params) ||
        !Sampler::next_draw_ignores_last_token(r.sampling)) {
      return false;
    }
    ++num_draws;
  }
  return num_draws == step.device_rows.size();
}

void ModelRunner::launch(const SchedulerOutput& scheduled) {
  CVLLM_CHECK(in_flight_.size() < 2, "launch: two steps are in flight already");
  update_states(scheduled);
  // The step in flight, whose tokens this one may read on the device before the host has them
  // (a deque keeps references to its elements valid across emplace_back).
  const PendingStep* previous =
      !in_flight_.empty() && !in_flight_.back().output ? &in_flight_.back() : nullptr;
  PendingStep& step = in_flight_.emplace_back();
  if (scheduled.empty()) {
    step.output.emplace();
    return;
  }
  try {
    ForwardBatch batch = build_batch(scheduled, step, previous);
    if (!scheduled.blocks_to_copy.empty()) backend_.copy_blocks(kv_caches_, scheduled.blocks_to_copy);
    step.logits_indices = batch.logits_indices;
    const int64_t num_logits = static_cast<int64_t>(batch.logits_indices.size());
    if (CapturedForward* graph = graph_for(batch)) {  // pads batch to the recorded shape
      step.logits = backend_.replay_forward(*graph, batch).slice_rows(0, num_logits);
      ++num_graph_steps_;
    } else {
      std::unique_ptr<StepMetadata> metadata = backend_.prepare_step(batch);
      ForwardContext ctx{backend_, *metadata, kv_caches_, dump};
      Tensor hidden = model_.forward(ctx);
      if (num_logits > 0) {
        // Decode steps sample every token in order: the first rows as they are (no gather, no
        // upload of row ids).
        bool prefix = num_logits <= hidden.dim(0);
        for (int64_t i = 0; prefix && i < num_logits; ++i) prefix = batch.logits_indices[i] == i;
        Tensor selected;
        if (prefix) {
          selected = hidden.slice_rows(0, num_logits);
        } else {
          selected = backend_.alloc(DType::kF32, {num_logits, hidden.dim(1)});
          backend_.gather_rows(hidden, batch.logits_indices, selected);
        }
        step.logits = model_.compute_logits(backend_, selected);
      }
    }

    // Rows drawn on the device when the backend can (Sampler::device_can_draw): only their token
    // ids and requested logprobs come back.
    std::vector<Sampler::DeviceRowLists> lists(step.order.size());
    for (size_t i = 0; i < step.order.size(); ++i) {
      if (step.sample_rows[i] < 0) continue;
      RequestState& r = *step.order[i];
      point_at_tokens(r.sampling, r.token_ids, r.num_prompt_tokens);
      if (!backend_.samples_on_device() ||
          !Sampler::device_can_draw(r.sampling, backend_.max_device_logprobs())) {
        continue;
      }
      DeviceSampleRow row = Sampler::device_row(r.sampling, step.sample_rows[i], lists[i]);
      if (!row.greedy) row.u = Sampler::uniform_draw(*r.generator);  // as the host draw would
      step.draw_of[&r] = static_cast<int32_t>(step.device_rows.size());
      step.device_rows.push_back(row);
      step.device_row_req.push_back(i);
    }
    if (!step.device_rows.empty()) {
      step.draws = backend_.begin_sample_on_device(step.logits, step.device_rows);
    }
    // The rows' spans point into `lists`, which is gone after this (the draws copied them).
    for (DeviceSampleRow& row : step.device_rows) {
      row.allowed = row.banned = row.seen = row.seen_output_counts = {};
      row.bias = {};
    }
    if (!can_feed_next(step)) finish(step);  // the host needs its tokens before the next step
  } catch (...) {
    in_flight_.pop_back();
    throw;
  }
}

ModelRunnerOutput ModelRunner::collect() {
  CVLLM_CHECK(!in_flight_.empty(), "collect: no step in flight");
  PendingStep step = std::move(in_flight_.front());
  in_flight_.pop_front();
  if (!step.output) finish(step);
  return std::move(*step.output);
}

bool ModelRunner::can_launch_ahead() const {
  // A step finished at launch has its output ready: launching another first would only hold
  // that output back by a step (on the CPU, every step that samples).
  return in_flight_.size() == 1 && !in_flight_.front().output &&
         !in_flight_.front().has_engine_tokens;
}

void ModelRunner::finish(PendingStep& step) {
  ModelRunnerOutput out;
  const std::vector<std::shared_ptr<RequestState>>& order = step.order;
  const int64_t vocab = model_.config().vocab_size;
  const int64_t num_logits = static_cast<int64_t>(step.logits_indices.size());
  const Tensor& logits = step.logits;

  // A device row given back undrawn (-1) is drawn on the host from its logits row, already
  // processed, with the uniform number already taken from its generator.
  std::vector<SamplingState*> states(order.size(), nullptr);
  std::vector<bool> on_device(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    if (step.sample_rows[i] < 0) continue;
    RequestState& r = *order[i];
    point_at_tokens(r.sampling, r.token_ids, r.num_prompt_tokens);
    states[i] = &r.sampling;
  }
  for (size_t i : step.device_row_req) on_device[i] = true;
  std::vector<DeviceSample> device_samples;
  if (step.draws) device_samples = backend_.finish_sample_on_device(*step.draws);
  step.draws.reset();
  for (size_t d = 0; d < step.device_row_req.size(); ++d) {
    if (device_samples[d].token_id >= 0) continue;
    const size_t i = step.device_row_req[d];
    on_device[i] = false;
    states[i]->preset_uniform = step.device_rows[d].u;
    states[i]->logits_processed = true;  // the device applied them in place
  }
  std::vector<int32_t> host_rows;               // logits rows the host needs, in copy order
  std::vector<int64_t> host_pos(num_logits, -1);  // logits row -> row of host_logits
  auto need_on_host = [&](int row) {
    if (host_pos[row] < 0) {
      host_pos[row] = static_cast<int64_t>(host_rows.size());
      host_rows.push_back(row);
    }
  };
  // Prompt logprobs come from the device when it computes that many per row: then only their
  // values come back, not the rows (a whole prompt's worth of [vocab] rows otherwise).
  auto prompt_on_device = [&](const RequestState& r) {
    const std::optional<int>& k = r.params->prompt_logprobs;
    return k && *k >= 0 && *k <= backend_.max_device_logprobs();
  };
  for (size_t i = 0; i < order.size(); ++i) {
    if (!prompt_on_device(*order[i])) {
      for (int row : step.prompt_logprob_rows[i]) need_on_host(row);
    }
    if (step.sample_rows[i] >= 0 && !on_device[i]) need_on_host(step.sample_rows[i]);
  }
  std::vector<float> host_logits;
  if (num_logits > 0 && static_cast<int64_t>(host_rows.size()) == num_logits) {
    host_logits = backend_.to_host(logits);  // host_rows is 0, 1, ... in order
  } else if (!host_rows.empty()) {
    host_logits = backend_.rows_to_host(logits, host_rows);
  }
  auto host_row = [&](int row) { return host_logits.data() + host_pos[row] * vocab; };

  // Prompt logprobs read the raw logits (their rows are never sampled rows, which the sampler
  // modifies in place).
  for (size_t i = 0; i < order.size(); ++i) {
    RequestState& r = *order[i];
    if (!r.params->prompt_logprobs) continue;  // Row j predicts prompt token first + j + 1.
    const std::vector<int>& rows = step.prompt_logprob_rows[i];
    std::vector<int32_t> targets;
    for (size_t j = 0; j < rows.size(); ++j) {
      targets.push_back(r.token_ids[step.first_position[i] + static_cast<int>(j) + 1]);
    }
    std::vector<TokenLogprobs> entries;
    if (prompt_on_device(r)) {
      entries = backend_.logprobs_on_device(logits, std::vector<int32_t>(rows.begin(), rows.end()),
                                            targets, *r.params->prompt_logprobs);
    } else {
      for (size_t j = 0; j < rows.size(); ++j) {
        entries.push_back(Sampler::gather_logprobs(host_row(rows[j]), vocab, targets[j],
                                                   *r.params->prompt_logprobs));
      }
    }
    out.prompt_logprobs[r.request_id] = std::move(entries);
  }

  // Host-sampled rows are interleaved with prompt rows: copy them together.
  std::vector<SamplingState*> host_states;
  std::vector<float> sample_logits;
  for (size_t i = 0; i < order.size(); ++i) {
    if (step.sample_rows[i] < 0 || on_device[i]) continue;
    host_states.push_back(states[i]);
    const float* row = host_row(step.sample_rows[i]);
    sample_logits.insert(sample_logits.end(), row, row + vocab);
  }
  std::vector<SampleResult> host_samples =
      sampler_.sample(sample_logits.data(), host_states, backend_.host_pool());
  std::vector<SampleResult> samples(order.size());
  for (size_t d = 0; d < step.device_row_req.size(); ++d) {
    if (device_samples[d].token_id < 0) continue;
    samples[step.device_row_req[d]].token_id = device_samples[d].token_id;
    samples[step.device_row_req[d]].logprobs = std::move(device_samples[d].logprobs);
  }
  for (size_t i = 0, h = 0; i < order.size(); ++i) {
    if (step.sample_rows[i] >= 0 && !on_device[i]) samples[i] = std::move(host_samples[h++]);
  }

  for (size_t i = 0; i < order.size(); ++i) {
    RequestState& r = *order[i];
    out.req_ids.push_back(r.request_id);
    std::vector<int32_t> sampled;
    std::vector<TokenLogprobs> lps;
    if (step.sample_rows[i] >= 0) {
      SampleResult& res = samples[i];
      sampled.push_back(res.token_id);
      if (!r.tokens_from_engine) {
        r.token_ids.push_back(res.token_id);
        ++r.sampling.output_token_counts[res.token_id];
      }
      if (res.logprobs) lps.push_back(std::move(*res.logprobs));
    }
    out.sampled_token_ids.push_back(std::move(sampled));
    out.logprobs.push_back(std::move(lps));
  }
  step.output = std::move(out);
  step.logits = Tensor();
}

}  // namespace cvllm
