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
            return model_.forward(ctx);
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
  for (int32_t id : batch.input_ids) {  // out-of-range ids: the eager pass reports them
    if (id < 0 || id >= model_.config().vocab_size) return nullptr;
  }
  auto it = graphs_.lower_bound(static_cast<int>(n));
  if (it == graphs_.end()) return nullptr;
  pad_decode_batch(batch, it->first, graph_width_);
  return it->second.get();
}

void ModelRunner::add_request(const NewRequestData& data) {
  auto state = std::make_unique<RequestState>();
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
  uint64_t seed = p.seed && *p.seed != -1 ? static_cast<uint64_t>(*p.seed) : generator_();
  state->generator = std::make_unique<std::mt19937_64>(seed);
  SamplingState& s = state->sampling;
  s.params = state->params.get();
  s.generator = state->generator.get();
  s.bad_words_token_ids = p.bad_words_token_ids;
  s.min_tokens_stop_ids = p.all_stop_token_ids;
  for (int32_t t : data.output_token_ids) ++s.output_token_counts[t];
  requests_[data.request_id] = std::move(state);
}

void ModelRunner::update_states(const SchedulerOutput& scheduled) {
  for (const std::string& id : scheduled.finished_req_ids) requests_.erase(id);
  for (const std::string& id : scheduled.preempted_req_ids) requests_.erase(id);
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

ForwardBatch ModelRunner::build_batch(const SchedulerOutput& scheduled,
                                      std::vector<RequestState*>& order,
                                      std::vector<int>& num_scheduled,
                                      std::vector<int>& sample_rows,
                                      std::vector<std::vector<int>>& prompt_logprob_rows) {
  for (const NewRequestData& d : scheduled.scheduled_new_reqs) order.push_back(requests_.at(d.request_id).get());
  for (const CachedRequestData& d : scheduled.scheduled_cached_reqs) order.push_back(requests_.at(d.request_id).get());

  ForwardBatch batch;
  size_t max_blocks = 0;
  for (RequestState* r : order) max_blocks = std::max(max_blocks, r->block_ids.size());
  batch.max_blocks_per_req = static_cast<int64_t>(max_blocks);
  batch.block_table.assign(order.size() * max_blocks, 0);  // padding points at the null block
  batch.query_start_loc.push_back(0);
  const int bs = config_.block_size;
  for (size_t i = 0; i < order.size(); ++i) {
    RequestState& r = *order[i];
    int n = scheduled.num_scheduled_tokens.at(r.request_id);
    num_scheduled.push_back(n);
    int start = r.num_computed_tokens;
    CVLLM_CHECK(start + n <= static_cast<int>(r.token_ids.size()), "request ", r.request_id,
                " scheduled past its known tokens");
    CVLLM_CHECK(static_cast<size_t>((start + n + bs - 1) / bs) <= r.block_ids.size(),
                "request ", r.request_id, " lacks KV blocks for its scheduled tokens");
    for (int j = 0; j < n; ++j) {
      int pos = start + j;
      batch.input_ids.push_back(r.token_ids[pos]);
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
    prompt_logprob_rows.push_back(std::move(prompt_rows));
    if (start + n == static_cast<int>(r.token_ids.size())) {
      sample_rows.push_back(static_cast<int>(batch.logits_indices.size()));
      batch.logits_indices.push_back(first_row + n - 1);
    } else {
      sample_rows.push_back(-1);
    }
  }
  return batch;
}

ModelRunnerOutput ModelRunner::execute(const SchedulerOutput& scheduled) {
  update_states(scheduled);
  ModelRunnerOutput out;
  if (scheduled.empty()) return out;

  std::vector<RequestState*> order;
  std::vector<int> num_scheduled, sample_rows;
  std::vector<std::vector<int>> prompt_logprob_rows;
  ForwardBatch batch = build_batch(scheduled, order, num_scheduled, sample_rows, prompt_logprob_rows);

  if (!scheduled.blocks_to_copy.empty()) backend_.copy_blocks(kv_caches_, scheduled.blocks_to_copy);
  std::unique_ptr<StepMetadata> step;
  Tensor hidden;
  if (CapturedForward* graph = graph_for(batch)) {  // pads batch to the recorded shape
    hidden = backend_.replay_forward(*graph, batch);
    ++num_graph_steps_;
  } else {
    step = backend_.prepare_step(batch);
    ForwardContext ctx{backend_, *step, kv_caches_, dump};
    hidden = model_.forward(ctx);
  }
  const int64_t vocab = model_.config().vocab_size;
  const int64_t num_logits = static_cast<int64_t>(batch.logits_indices.size());
  Tensor logits;
  if (num_logits > 0) {
    // Decode steps sample every token in order: the first rows as they are (no gather, no upload
    // of row ids).
    bool prefix = num_logits <= hidden.dim(0);
    for (int64_t i = 0; prefix && i < num_logits; ++i) prefix = batch.logits_indices[i] == i;
    Tensor selected;
    if (prefix) {
      selected = hidden.slice_rows(0, num_logits);
    } else {
      selected = backend_.alloc(DType::kF32, {num_logits, hidden.dim(1)});
      backend_.gather_rows(hidden, batch.logits_indices, selected);
    }
    logits = model_.compute_logits(backend_, selected);
  }

  // Rows drawn on the device when the backend can (Sampler::device_can_draw): only their token ids
  // and requested logprobs come back. Every other logits row is copied to the host, and so is
  // a device row the device gave back undrawn (-1), which then uses the uniform number already
  // taken from its generator.
  std::vector<SamplingState*> states(order.size(), nullptr);
  std::vector<DeviceSampleRow> device_rows;
  std::vector<size_t> device_row_req;  // index into order of each device row
  // The device rows' processor inputs (DeviceSampleRow holds spans of them).
  std::vector<Sampler::DeviceRowLists> lists(order.size());
  std::vector<bool> on_device(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    if (sample_rows[i] < 0) continue;
    RequestState& r = *order[i];
    r.sampling.prompt_token_ids = std::span<const int32_t>(r.token_ids.data(), r.num_prompt_tokens);
    r.sampling.output_token_ids = std::span<const int32_t>(
        r.token_ids.data() + r.num_prompt_tokens, r.token_ids.size() - r.num_prompt_tokens);
    states[i] = &r.sampling;
    if (!backend_.samples_on_device() ||
        !Sampler::device_can_draw(r.sampling, backend_.max_device_logprobs())) {
      continue;
    }
    DeviceSampleRow row = Sampler::device_row(r.sampling, sample_rows[i], lists[i]);
    if (!row.greedy) row.u = Sampler::uniform_draw(*r.generator);  // as the host draw would
    device_rows.push_back(row);
    device_row_req.push_back(i);
    on_device[i] = true;
  }
  std::vector<DeviceSample> device_samples;
  if (!device_rows.empty()) device_samples = backend_.sample_on_device(logits, device_rows);
  for (size_t d = 0; d < device_row_req.size(); ++d) {
    if (device_samples[d].token_id >= 0) continue;
    on_device[device_row_req[d]] = false;
    states[device_row_req[d]]->preset_uniform = device_rows[d].u;
    states[device_row_req[d]]->logits_processed = true;  // the device applied them in place
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
      for (int row : prompt_logprob_rows[i]) need_on_host(row);
    }
    if (sample_rows[i] >= 0 && !on_device[i]) need_on_host(sample_rows[i]);
  }
  std::vector<float> host_logits;
  if (num_logits > 0 && static_cast<int64_t>(host_rows.size()) == num_logits) {
    host_logits = backend_.to_host(logits);  // host_rows is 0, 1, ... in order
  } else if (!host_rows.empty()) {
    host_logits = backend_.rows_to_host(logits, host_rows);
  }
  auto host_row = [&](int row) { return host_logits.data() + host_pos[row] * vocab; };

  // Prompt logprobs read the raw logits (their rows are never sampled rows, which the sampler
  // modifies in place). Row j predicts prompt token num_computed_tokens + j + 1.
  for (size_t i = 0; i < order.size(); ++i) {
    RequestState& r = *order[i];
    if (!r.params->prompt_logprobs) continue;
    const std::vector<int>& rows = prompt_logprob_rows[i];
    std::vector<int32_t> targets;
    for (size_t j = 0; j < rows.size(); ++j) {
      targets.push_back(r.token_ids[r.num_computed_tokens + static_cast<int>(j) + 1]);
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
    if (sample_rows[i] < 0 || on_device[i]) continue;
    host_states.push_back(states[i]);
    const float* row = host_row(sample_rows[i]);
    sample_logits.insert(sample_logits.end(), row, row + vocab);
  }
  std::vector<SampleResult> host_samples =
      sampler_.sample(sample_logits.data(), host_states, backend_.host_pool());
  std::vector<SampleResult> samples(order.size());
  for (size_t d = 0; d < device_row_req.size(); ++d) {
    if (device_samples[d].token_id < 0) continue;
    samples[device_row_req[d]].token_id = device_samples[d].token_id;
    samples[device_row_req[d]].logprobs = std::move(device_samples[d].logprobs);
  }
  for (size_t i = 0, h = 0; i < order.size(); ++i) {
    if (sample_rows[i] >= 0 && !on_device[i]) samples[i] = std::move(host_samples[h++]);
  }

  for (size_t i = 0; i < order.size(); ++i) {
    RequestState& r = *order[i];
    r.num_computed_tokens += num_scheduled[i];
    out.req_ids.push_back(r.request_id);
    std::vector<int32_t> sampled;
    std::vector<TokenLogprobs> lps;
    if (sample_rows[i] >= 0) {
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
  return out;
}

}  // namespace cvllm
