#include "engine/llm_engine.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <utility>

#include "engine/engine_core.h"
#include "engine/output_processor.h"
#include "kernels/cpu/cpu_backend.h"
#ifdef CVLLM_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif
#include "loader/gguf.h"
#include "loader/hf_files.h"
#include "loader/hf_weight_source.h"
#include "loader/model_resolver.h"
#include "loader/safetensors.h"
#include "loader/weight_source.h"
#include "models/registry.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/system.h"

namespace cvllm {
namespace {

cpu::MatmulPath parse_kernel_path(const std::string& name) {
  if (name == "fast") return cpu::MatmulPath::kFast;
  if (name == "reference") return cpu::MatmulPath::kReference;
  throw ValueError(cat("cpu_kernels must be 'fast' or 'reference', got '", name, "'"));
}

// The backend for args.device: "auto" takes CUDA when this build has it and a GPU is present.
std::unique_ptr<Backend> create_backend(const EngineArgs& args) {
  if (args.device != "auto" && args.device != "cpu" && args.device != "cuda") {
    throw ValueError(cat("device must be 'auto', 'cpu' or 'cuda', got '", args.device, "'"));
  }
#ifdef CVLLM_HAVE_CUDA
  const bool gpu = cuda::cuda_device_available();
  if (args.device == "cuda" && !gpu) throw ValueError("device 'cuda' requested but no CUDA GPU is available");
  if (args.device == "cuda" || (args.device == "auto" && gpu)) {
    if (args.gpu_memory_utilization <= 0.0 || args.gpu_memory_utilization > 1.0) {
      throw ValueError(cat("gpu_memory_utilization must be in (0, 1], got ", args.gpu_memory_utilization));
    }
    LOG_INFO("Using device cuda (device=", args.device, ")");
    return std::make_unique<cuda::CudaBackend>(0, args.num_threads);
  }
#else
  if (args.device == "cuda") throw ValueError("device 'cuda' requested but cvllm was built without CUDA");
#endif
  LOG_INFO("Using device cpu (device=", args.device, ")");
  return std::make_unique<cpu::CpuBackend>(args.num_threads, parse_kernel_path(args.cpu_kernels));
}

// The decode batch sizes recorded as CUDA graphs (none with enforce_eager).
std::vector<int> cuda_graph_batch_sizes(const EngineArgs& args) {
  if (args.enforce_eager) return {};
  return default_graph_batch_sizes(args.max_num_seqs);
}

// CUDA KV-cache budget (vLLM's rule): gpu_memory_utilization of the GPU's memory, minus what is
// in use now (weights, loaded before this is called) and the activations' peak, measured by a
// forward pass of max_num_batched_tokens dummy tokens over max_num_seqs prompts with their logits
// (ModelRunner::profile_forward). On top of the peak: what the pass made the device use outside
// our allocator (cuBLASLt, the CUDA context), decode attention's split-KV partials for
// max_num_seqs tokens at max_model_len (a prefill-shaped pass has none), a quarter of slack for the
// allocator's size classes (decode steps allocate other sizes than prefill), the recorded decode
// steps' own memory, and 512 MiB for the context's own growth. Returns 0 on the CPU (no device
// budget).
int64_t device_kv_budget_bytes(Backend& backend, CausalLM& model, const EngineArgs& args,
                               const ModelConfig& c, int max_model_len, DType kv_dtype) {
#ifdef CVLLM_HAVE_CUDA
  if (auto* gpu = dynamic_cast<cuda::CudaBackend*>(&backend)) {
    gpu->synchronize();
    const cuda::CudaBackend::MemoryInfo before = gpu->memory_info();
    gpu->reset_peak_memory();
    const int64_t tokens = std::min<int64_t>(args.max_num_batched_tokens,
                                             int64_t{args.max_num_seqs} * max_model_len);
    const double start = monotonic_seconds();
    ModelRunner::profile_forward(model, backend, tokens, args.max_num_seqs, args.block_size, kv_dtype);
    const cuda::CudaBackend::MemoryInfo after = gpu->memory_info();
    const int64_t peak = after.peak_in_use_bytes - before.in_use_bytes;
    auto outside_allocator = [](const cuda::CudaBackend::MemoryInfo& m) {
      return m.total_bytes - m.free_bytes - m.cached_bytes - m.in_use_bytes;
    };
    const int64_t growth = std::max<int64_t>(outside_allocator(after) - outside_allocator(before), 0);
    const int64_t decode_partials = std::min<int64_t>(tokens, args.max_num_seqs) *
                                    cuda::kMaxDecodePieces * c.num_attention_heads *
                                    (c.head_dim + 2) * 4;
    // Recorded decode steps keep their own temporaries (the largest batch's, shared by all:
    // three times the profiled pass's activations per token at the largest recorded batch), their
    // outputs (logits), and per batch size a step buffer whose block table spans max_model_len.
    // For the Llama-3-8B shape (max_model_len 1,024), before the logits were recorded too: 366
    // MiB estimated before the 5/4 below, 307 measured.
    const std::vector<int> graph_sizes = cuda_graph_batch_sizes(args);
    int64_t graphs = 0;
    if (!graph_sizes.empty()) {
      int64_t rows = 0;  // over every recorded size
      for (int n : graph_sizes) rows += n;
      const int64_t table_width = (max_model_len + args.block_size - 1) / args.block_size;
      graphs = peak / std::max<int64_t>(tokens, 1) * graph_sizes.back() * 3 + decode_partials +
               rows * (c.hidden_size * 4 + table_width * 4 + 64) +
               int64_t{graph_sizes.back()} * c.vocab_size * 4;  // the largest one's logits
    }
    // Async scheduling: a step's logits stay until it is collected, after the next one launched.
    const int64_t pending_logits =
        args.async_scheduling ? int64_t{args.max_num_seqs} * c.vocab_size * 4 : 0;
    const int64_t activations = (peak + decode_partials + graphs + pending_logits) * 5 / 4 +
                                growth + (int64_t{512} << 20);
    const int64_t in_use = before.total_bytes - before.free_bytes - before.cached_bytes;
    const int64_t budget = static_cast<int64_t>(args.gpu_memory_utilization *
                                                static_cast<double>(before.total_bytes)) -
                           in_use - activations;
    LOG_INFO("GPU memory: ", before.total_bytes >> 20, " MiB total, ", in_use >> 20,
             " MiB in use after loading; a forward pass of ", tokens, " tokens peaked at ",
             peak >> 20, " MiB of activations (", (monotonic_seconds() - start) * 1e3,
             " ms), so ", activations >> 20, " MiB are kept for them; KV cache budget ",
             std::max<int64_t>(budget, 0) >> 20, " MiB (gpu_memory_utilization ",
             args.gpu_memory_utilization, ")");
    return std::max<int64_t>(budget, 1);
  }
#endif
  (void)backend;
  (void)model;
  (void)args;
  (void)c;
  (void)max_model_len;
  (void)kv_dtype;
  return 0;
}

// KV blocks from the memory budget: an explicit byte count, or a fraction of available memory,
// never more than max_num_seqs full-length sequences can use.
int plan_num_kv_blocks(const EngineArgs& args, int64_t block_bytes, int max_model_len) {
  int64_t blocks_per_seq = (max_model_len + args.block_size - 1) / args.block_size;
  int64_t useful = blocks_per_seq * args.max_num_seqs + 1;
  int64_t budget = args.kv_cache_memory_bytes;
  if (budget <= 0) {
    int64_t avail = available_memory_bytes();
    if (avail <= 0) avail = int64_t{4} << 30;
    budget = static_cast<int64_t>(static_cast<double>(avail) * args.cpu_kv_cache_fraction);
  }
  int64_t blocks = std::min<int64_t>(budget / block_bytes, useful);
  if (blocks < blocks_per_seq + 1) {
    throw ValueError(cat("To serve at least one request with the model's max seq len (",
                         max_model_len, "), ", (blocks_per_seq + 1) * block_bytes,
                         " bytes of KV cache are needed, which is larger than the available KV "
                         "cache memory (", budget, " bytes). Try increasing "
                         "`kv_cache_memory_bytes` or decreasing `max_model_len`."));
  }
  return static_cast<int>(std::min<int64_t>(blocks, 1 << 30));
}

// The CPU backend computes in float32 whatever the dtype; weights stay in their stored type.
void check_dtype(const std::string& dtype) {
  static const char* const kAccepted[] = {"auto",     "float32", "float",
                                          "bfloat16", "float16", "half"};
  for (const char* d : kAccepted) {
    if (dtype == d) {
      if (dtype != "auto" && dtype != "float32" && dtype != "float") {
        LOG_INFO("dtype=", dtype, ": weights are used in their checkpoint dtype and activations "
                 "are computed in float32 on the CPU backend");
      }
      return;
    }
  }
  throw ValueError(cat("dtype '", dtype, "' is not supported (supported: auto, float32, "
                       "bfloat16, float16; the CPU backend computes in float32)"));
}

// End-of-turn ids that also end generation, besides the primary EOS (vLLM adds generation
// config's eos_token_id list to every request's stop ids).
void add_extra_eos(std::vector<int32_t>& extra, int32_t id, std::optional<int32_t> eos,
                   int64_t vocab) {
  if (id < 0 || id >= vocab || (eos && id == *eos)) return;
  if (std::find(extra.begin(), extra.end(), id) == extra.end()) extra.push_back(id);
}

}  // namespace

void LLMEngine::load_gguf(const EngineArgs& args, const std::string& path) {
  gguf_ = GgufFile::open(path);
  model_config_ = model_config_from_gguf(*gguf_);
  if (!args.skip_tokenizer_init) {
    std::string tok_path = args.tokenizer.empty() ? path : args.tokenizer;
    tokenizer_ = load_tokenizer(tok_path, gguf_);
    eos_token_id_ = tokenizer_->eos_token_id();
  } else {
    if (auto eos = gguf_->get_int("tokenizer.ggml.eos_token_id")) eos_token_id_ = static_cast<int32_t>(*eos);
  }
  // End-of-turn tokens also end generation (vLLM takes them from generation_config's eos list).
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (std::optional<int64_t> id = gguf_->get_int(key); id && *id <= INT32_MAX) {
      add_extra_eos(extra_eos_token_ids_, static_cast<int32_t>(*id), eos_token_id_,
                    model_config_.vocab_size);
    }
  }
  chat_template_ = gguf_->get_string("tokenizer.chat_template");
  generation_defaults_ = generation_defaults_from_gguf(*gguf_);
  weights_ = std::make_unique<GgufWeightSource>(gguf_);
  checkpoint_format_ = CheckpointFormat::kGguf;
}

void LLMEngine::load_hf(const EngineArgs& args, const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(std::filesystem::path(dir) / "config.json", ec)) {
    throw ValueError(
        cat(dir, " is a directory without config.json: not a Hugging Face checkpoint"));
  }
  model_config_ = model_config_from_hf(dir);
  // safetensors when present, else pytorch_model.bin (as transformers picks them).
  weights_ = open_hf_weights(dir, hf_weight_name_map(model_config_.architecture));
  checkpoint_format_ = CheckpointFormat::kHuggingFace;
  if (!args.skip_tokenizer_init) {
    if (args.tokenizer.empty() && !has_hf_tokenizer_files(dir)) {
      throw ValueError(cat(dir, " has no tokenizer.json (nor vocab.json + merges.txt): pass a "
                           "tokenizer (--tokenizer) or skip_tokenizer_init "
                           "(--skip-tokenizer-init) with token-id prompts"));
    }
    tokenizer_ = load_tokenizer(args.tokenizer.empty() ? dir : args.tokenizer, nullptr);
    eos_token_id_ = tokenizer_->eos_token_id();
  }
  HfGenerationConfig gen = read_hf_generation_config(dir);
  for (int32_t id : gen.eos_token_ids) {
    if (!eos_token_id_ && args.skip_tokenizer_init) {
      eos_token_id_ = id;  // no tokenizer: the model's first EOS is the primary one
      continue;
    }
    add_extra_eos(extra_eos_token_ids_, id, eos_token_id_, model_config_.vocab_size);
  }
  chat_template_ = read_hf_chat_template(dir);
  generation_defaults_ = gen.defaults;
}

// A tokenizer from a GGUF file (`gguf` when it is the model file itself) or a Hugging Face
// directory with tokenizer.json or vocab.json + merges.txt; `path` resolves like a model name
// (hub ids included).
std::unique_ptr<Tokenizer> LLMEngine::load_tokenizer(const std::string& path,
                                                     const std::shared_ptr<GgufFile>& gguf) {
  ResolvedModel where = resolve_model(path);
  if (where.format == ModelFormat::kHuggingFaceDir) return load_hf_tokenizer(where.path);
  std::shared_ptr<GgufFile> file =
      gguf && where.path == gguf->path() ? gguf : GgufFile::open(where.path);
  return Tokenizer::from_gguf(*file);
}

LLMEngine::LLMEngine(const EngineArgs& args) : args_(args) {
  double start = monotonic_seconds();
  if (args.block_size <= 0 || args.block_size > 1024) {
    throw ValueError(cat("block_size must be in [1, 1024], got ", args.block_size));
  }
  if (args.max_num_seqs <= 0) throw ValueError("max_num_seqs must be positive");
  if (args.max_num_batched_tokens <= 0) throw ValueError("max_num_batched_tokens must be positive");
  if (args.max_logprobs < -1) throw ValueError("max_logprobs must be >= -1");
  check_dtype(args.dtype);
  ResolvedModel resolved = resolve_model(args.model, args.revision);
  model_path_ = resolved.path;
  if (resolved.format == ModelFormat::kGguf) {
    load_gguf(args, resolved.path);
  } else {
    load_hf(args, resolved.path);
  }
  if (args.generation_config == "vllm") {
    generation_defaults_ = {};
  } else if (args.generation_config != "auto") {
    throw ValueError(cat("generation_config must be 'auto' or 'vllm', got '", args.generation_config, "'"));
  } else if (!generation_defaults_.empty()) {
    LOG_WARNING("Default sampling parameters have been overridden by the model's generation "
                "config (", generation_defaults_.describe(), "). If this is not intended, pass "
                "--generation-config vllm.");
  }

  int derived_len = static_cast<int>(model_config_.max_position_embeddings);
  max_model_len_ = args.max_model_len.value_or(derived_len);
  if (max_model_len_ <= 0) throw ValueError(cat("max_model_len must be positive, got ", max_model_len_));
  if (max_model_len_ > derived_len) {
    throw ValueError(cat("User-specified max_model_len (", max_model_len_,
                         ") is greater than the derived max_model_len (max_position_embeddings=",
                         derived_len, " in model's config). This may lead to incorrect model "
                         "outputs or CUDA errors."));
  }

  backend_ = create_backend(args);
  model_ = create_model(model_config_, *weights_, *backend_, checkpoint_format_);

  // The CUDA KV cache is bf16 (as vLLM's for bf16 models); the CPU one f32.
  const bool on_gpu = backend_->device() == Device::kCuda;
  DType kv_dtype = on_gpu ? DType::kBF16 : DType::kF32;
  int64_t block_bytes = ModelRunner::kv_block_bytes(*model_, args.block_size, kv_dtype);
  EngineArgs kv_args = args;
  if (on_gpu && kv_args.kv_cache_memory_bytes <= 0) {
    kv_args.kv_cache_memory_bytes =
        device_kv_budget_bytes(*backend_, *model_, args, model_config_, max_model_len_, kv_dtype);
  }
  int num_blocks = plan_num_kv_blocks(kv_args, block_bytes, max_model_len_);

  SchedulerConfig sched;
  sched.max_num_seqs = args.max_num_seqs;
  sched.max_num_batched_tokens = args.max_num_batched_tokens;
  sched.max_model_len = max_model_len_;
  sched.enable_chunked_prefill = args.enable_chunked_prefill;
  sched.async_scheduling = args.async_scheduling;
  if (args.scheduling_policy == "priority") {
    sched.policy = SchedulingPolicy::kPriority;
  } else if (args.scheduling_policy != "fcfs") {
    throw ValueError(cat("scheduling_policy must be 'fcfs' or 'priority', got '", args.scheduling_policy, "'"));
  }
  if (!args.enable_chunked_prefill && args.max_num_batched_tokens < max_model_len_) {
    throw ValueError(cat("max_num_batched_tokens (", args.max_num_batched_tokens,
                         ") is smaller than max_model_len (", max_model_len_,
                         "). This effectively limits the maximum sequence length to "
                         "max_num_batched_tokens and makes vLLM reject longer sequences. Please "
                         "increase max_num_batched_tokens or decrease max_model_len."));
  }
  RunnerConfig runner;
  runner.block_size = args.block_size;
  runner.num_kv_blocks = num_blocks;
  runner.max_model_len = max_model_len_;
  runner.kv_cache_dtype = kv_dtype;
  runner.seed = args.seed;
  runner.eos_token_id = eos_token_id_;
  if (on_gpu) runner.graph_batch_sizes = cuda_graph_batch_sizes(args);
  auto scheduler = std::make_unique<Scheduler>(sched, num_blocks, args.block_size,
                                               args.enable_prefix_caching);
  auto model_runner = std::make_unique<ModelRunner>(*model_, *backend_, runner);
  core_ = std::make_unique<EngineCore>(std::move(scheduler), std::move(model_runner));
#ifdef CVLLM_HAVE_CUDA
  auto* gpu = dynamic_cast<cuda::CudaBackend*>(backend_.get());
  if (gpu != nullptr && core_->runner().num_graphs() > 0) {
    LOG_INFO("CUDA graphs of ", core_->runner().num_graphs(), " decode batch sizes hold ",
             gpu->memory_info().graph_pool_bytes >> 20, " MiB of device memory");
  }
#endif
  output_processor_ = std::make_unique<OutputProcessor>(tokenizer_.get());

  LOG_INFO("Loaded ", model_config_.describe(), " from ", model_path_, " in ",
           monotonic_seconds() - start, " s on ", backend_->name());
  int64_t kv_tokens = static_cast<int64_t>(num_blocks - 1) * args.block_size;
  LOG_INFO("KV cache: ", num_blocks, " blocks of ", args.block_size, " tokens (", kv_tokens,
           " tokens, ", static_cast<double>(num_blocks) * block_bytes / (1 << 20),
           " MiB); maximum concurrency for ", max_model_len_, " tokens per request: ",
           static_cast<double>(kv_tokens) / max_model_len_, "x");
}

LLMEngine::~LLMEngine() = default;

std::vector<int32_t> LLMEngine::tokenize_prompt(const Prompt& prompt, const SamplingParams& params) const {
  std::vector<int32_t> ids;
  if (prompt.is_tokens()) {
    ids = prompt.token_ids();
  } else {
    if (!tokenizer_) throw ValueError("text prompts need a tokenizer (skip_tokenizer_init is set)");
    ids = tokenizer_->encode(*prompt.text(), /*add_special_tokens=*/true);
  }
  // Token prompts, and a tokenizer whose vocabulary is larger than the model's, can name ids the
  // model has no row for.
  for (int32_t id : ids) {
    if (id < 0 || id >= model_config_.vocab_size) {
      throw ValueError(cat("Token id ", id, " is out of vocabulary"));
    }
  }
  if (params.truncate_prompt_tokens) {
    int k = *params.truncate_prompt_tokens == -1 ? max_model_len_ : *params.truncate_prompt_tokens;
    if (static_cast<int>(ids.size()) > k) ids.erase(ids.begin(), ids.end() - k);
  }
  if (ids.empty()) throw ValueError("The decoder prompt cannot be empty");
  if (static_cast<int>(ids.size()) > max_model_len_) {
    throw ValueError(cat("The decoder prompt (length ", ids.size(),
                         ") is longer than the maximum model length of ", max_model_len_,
                         ". Make sure that `max_model_len` is no smaller than the number of text "
                         "tokens."));
  }
  return ids;
}

std::shared_ptr<SamplingParams> LLMEngine::resolve_params(const SamplingParams& in, int prompt_len) const {
  in.validate();
  auto p = std::make_shared<SamplingParams>(in);
  const int64_t vocab = model_config_.vocab_size;
  int max_logprobs = args_.max_logprobs == -1 ? static_cast<int>(vocab) : args_.max_logprobs;
  auto check_logprobs = [&](const std::optional<int>& n, const char* what) {
    if (n && *n != -1 && *n > max_logprobs) {
      throw ValueError(cat("Requested ", what, " logprobs of ", *n,
                           ", which is greater than max allowed: ", max_logprobs));
    }
  };
  check_logprobs(p->logprobs, "sample");
  check_logprobs(p->prompt_logprobs, "prompt");
  auto check_id = [&](int32_t id, const char* field) {
    if (id < 0 || id >= vocab) {
      throw ValueError(cat("token_id(s) ", id, " in ", field, " out of vocabulary (size ", vocab, ")"));
    }
  };
  for (int32_t id : p->stop_token_ids) check_id(id, "stop_token_ids");
  if (p->allowed_token_ids) {
    for (int32_t id : *p->allowed_token_ids) check_id(id, "allowed_token_ids");
  }
  for (auto& [id, bias] : p->logit_bias) {
    check_id(id, "logit_bias");
    bias = std::clamp(bias, -100.0, 100.0);
  }
  if (!p->stop.empty() && !tokenizer_) throw ValueError("stop strings need a tokenizer");
  // Stop ids are deduplicated, and the model's extra end-of-turn ids join them (unless ignore_eos).
  if (!p->ignore_eos) {
    for (int32_t id : extra_eos_token_ids_) p->stop_token_ids.push_back(id);
  }
  std::sort(p->stop_token_ids.begin(), p->stop_token_ids.end());
  p->stop_token_ids.erase(std::unique(p->stop_token_ids.begin(), p->stop_token_ids.end()),
                          p->stop_token_ids.end());
  p->all_stop_token_ids = p->stop_token_ids;
  if (eos_token_id_ && !p->ignore_eos) p->all_stop_token_ids.push_back(*eos_token_id_);
  p->bad_words_token_ids.clear();
  if (!p->bad_words.empty()) {
    if (!tokenizer_) throw ValueError("bad_words need a tokenizer");
    for (const std::string& word : p->bad_words) {
      // vLLM bans each word as written and with a leading space, when the latter tokenizes to a
      // different first token but the same length.
      size_t first = word.find_first_not_of(" \t\n");
      std::string stripped = first == std::string::npos ? "" : word.substr(first);
      std::vector<int32_t> plain = tokenizer_->encode(stripped, false);
      std::vector<int32_t> spaced = tokenizer_->encode(" " + stripped, false);
      if (!plain.empty()) p->bad_words_token_ids.push_back(plain);
      if (!spaced.empty() && (plain.empty() || (spaced[0] != plain[0] && spaced.size() == plain.size()))) {
        p->bad_words_token_ids.push_back(spaced);
      }
    }
  }
  (void)prompt_len;
  return p;
}

PreparedRequest LLMEngine::prepare_request(const std::string& request_id, const Prompt& prompt,
                                           const SamplingParams& params, int priority) const {
  PreparedRequest req;
  req.request_id = request_id;
  req.prompt_text = prompt.text();
  req.prompt_token_ids = tokenize_prompt(prompt, params);
  req.params = resolve_params(params, static_cast<int>(req.prompt_token_ids.size()));
  req.priority = priority;
  req.cache_salt = prompt.cache_salt;
  int prompt_len = static_cast<int>(req.prompt_token_ids.size());
  req.max_tokens = std::max(req.params->max_tokens.value_or(max_model_len_ - prompt_len), 1);
  return req;
}

void LLMEngine::add_prepared(PreparedRequest req) {
  const SamplingParams& resolved = *req.params;
  std::vector<std::string> child_ids;
  std::vector<std::shared_ptr<Request>> children;
  double now = monotonic_seconds();
  for (int i = 0; i < resolved.n; ++i) {
    std::string child_id = resolved.n == 1 ? req.request_id : cat(i, "_", req.request_id);
    std::shared_ptr<const SamplingParams> child_params = req.params;
    if (resolved.n > 1) {
      // Children sample independently; a seeded request gives child i the seed seed + i.
      auto copy = std::make_shared<SamplingParams>(resolved);
      copy->n = 1;
      if (copy->seed && *copy->seed != -1) *copy->seed += i;
      child_params = copy;
    }
    auto request = std::make_shared<Request>(child_id, req.prompt_token_ids, child_params,
                                             eos_token_id_, now, req.priority, req.cache_salt);
    request->max_tokens = req.max_tokens;
    child_ids.push_back(child_id);
    children.push_back(std::move(request));
  }
  output_processor_->add_request(req.request_id, req.prompt_text, req.prompt_token_ids, req.params,
                                 child_ids);
  for (auto& child : children) core_->add_request(std::move(child));
}

void LLMEngine::add_request(const std::string& request_id, const Prompt& prompt,
                            const SamplingParams& params, int priority) {
  add_prepared(prepare_request(request_id, prompt, params, priority));
}

void LLMEngine::add_beam_search_request(const std::string& request_id, const Prompt& prompt,
                                        const BeamSearchParams& params, int priority) {
  params.validate();
  // Each beam is a greedy-by-default request whose top-2W logprobs the coordinator ranks; EOS and
  // the step count are the coordinator's business, so the request itself ignores EOS.
  SamplingParams sp;
  sp.temperature = params.temperature;
  sp.max_tokens = params.max_tokens;
  sp.ignore_eos = true;
  sp.detokenize = false;
  sp.output_kind = RequestOutputKind::kFinalOnly;
  PreparedRequest prepared = prepare_request(request_id, prompt, sp, priority);
  prepared.params->logprobs = 2 * params.beam_width;  // not bound by max_logprobs, as in vLLM
  std::string first_beam = cat(request_id, "-beam-0");
  auto request = std::make_shared<Request>(first_beam, prepared.prompt_token_ids, prepared.params,
                                           eos_token_id_, monotonic_seconds(), priority,
                                           prepared.cache_salt);
  request->max_tokens = params.max_tokens;
  request->tokens_from_engine = true;
  beams_.add_group(request_id, prepared.prompt_text, prepared.prompt_token_ids, params, eos_token_id_, first_beam);
  core_->add_request(std::move(request));
}

std::vector<BeamSearchResult> LLMEngine::take_finished_beam_searches() {
  return std::exchange(finished_beams_, {});
}

void LLMEngine::abort_request(const std::vector<std::string>& request_ids) {
  for (const std::string& id : request_ids) {
    if (beams_.abort_group(id, core_->scheduler())) continue;
    core_->abort_requests(output_processor_->unfinished_children(id));
  }
  output_processor_->abort_requests(request_ids);
}

std::vector<RequestOutput> LLMEngine::step() {
  std::vector<EngineCoreOutput> core_outputs = core_->step();
  if (!beams_.empty()) {
    for (BeamSearchResult& r : beams_.process(core_outputs, core_->scheduler())) {
      finished_beams_.push_back(std::move(r));
    }
  }
  OutputProcessor::Result result = output_processor_->process_outputs(core_outputs);
  if (!result.reqs_to_abort.empty()) {
    core_->abort_requests(result.reqs_to_abort, RequestStatus::kFinishedStopped);
  }
  return std::move(result.request_outputs);
}

bool LLMEngine::has_unfinished_requests() const { return core_->has_unfinished_requests(); }

SchedulerStats LLMEngine::scheduler_stats() const { return core_->scheduler().stats(); }

}  // namespace cvllm
