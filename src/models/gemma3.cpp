#include "models/gemma3.h"

#include <cmath>

#include "models/llama.h"
#include "tensor/half.h"
#include "util/error.h"
#include "util/logging.h"

namespace cvllm {
namespace {

std::string blk(int64_t i, const char* name) {
  return cat("blk.", i, ".", name, ".weight");
}

Tensor copy_of(Backend& backend, const Tensor& src) {
  Tensor dst = backend.alloc(src.dtype(), src.shape());
  backend.add(src, dst);  // dst is zeroed, so this is a copy
  return dst;
}

// sqrt(hidden_size) as transformers' Gemma3TextScaledWordEmbedding applies it: a float32 scalar
// cast to the embedding weights' dtype before the multiply.
float embedding_normalizer(int64_t hidden_size, DType table_dtype) {
  float scale = std::sqrt(static_cast<float>(hidden_size));
  if (table_dtype == DType::kBF16) return bf16_to_f32(f32_to_bf16(scale));
  if (table_dtype == DType::kF16) return f16_to_f32(f32_to_f16(scale));
  return scale;  // f32, and GGUF block types (dequantized to f32, as transformers loads them)
}

// The model's config with one RoPE variant: local layers rotate with rope_local_base_freq and no
// scaling; global layers keep rope_theta and rope_scaling.
ModelConfig local_rope_config(const ModelConfig& config) {
  ModelConfig local = config;
  local.rope_theta = config.rope_local_base_freq;
  local.rope_scaling = RopeScaling{};
  return local;
}

// Gemma3ForConditionalGeneration checkpoints hold the decoder under a prefix: the name map gives
// Gemma3ForCausalLM's names, and this adapter moves them to where the checkpoint has them.
// - "language_model.model.*", "language_model.lm_head.weight": the hub's checkpoints, and what
//   transformers 5 still writes (save_pretrained renames its modules back);
// - "model.language_model.*", "lm_head.weight": transformers 5's module names, which re-saved
//   checkpoints may carry (vLLM loads both).
// The embedding table tells which; a GGUF file or Gemma3ForCausalLM checkpoint passes through.
// Vision tower and projector weights are never asked for.
class Gemma3TextWeights : public WeightSource {
 public:
  explicit Gemma3TextWeights(const WeightSource& inner) : inner_(inner) {
    if (inner.contains("token_embd.weight")) return;
    for (const char* prefix : {"language_model.", "model.language_model."}) {
      prefix_ = prefix;
      if (inner.contains(located("token_embd.weight"))) return;
    }
    prefix_.clear();  // none: the missing-weight error names Gemma3ForCausalLM's names
  }
  std::string path() const override { return inner_.path(); }
  std::optional<Tensor> find(const std::string& name) const override {
    return inner_.find(located(name));
  }
  std::string display_name(const std::string& name) const override {
    if (prefix_.empty()) return inner_.display_name(name);
    return cat("'", located(name), "' (", name, ")");
  }

 private:
  // The name to ask `inner_` for: the Hugging Face name with the prefix applied (the name map
  // passes such names through), or `name` as it is.
  std::string located(const std::string& name) const {
    if (prefix_.empty()) return name;
    std::optional<std::string> hf = gemma3_hf_weight_name(name);
    if (!hf) return name;
    if (prefix_ == "language_model.") return prefix_ + *hf;
    if (hf->rfind("model.", 0) == 0) return "model.language_model." + hf->substr(6);
    return name;  // lm_head.weight keeps its name under transformers 5's modules
  }

  const WeightSource& inner_;
  std::string prefix_;  // "" (as asked), "language_model." or "model.language_model."
};

}  // namespace

std::optional<std::string> gemma3_hf_weight_name(const std::string& gguf_name) {
  // Gemma3ForConditionalGeneration's decoder names (Gemma3TextWeights asks with them) are final.
  for (const char* prefix : {"language_model.", "model.language_model."}) {
    if (gguf_name.rfind(prefix, 0) == 0) return gguf_name;
  }
  // The three norms whose GGUF names mean something else in the Llama map.
  struct Norm {
    const char* gguf;
    const char* hf;
  };
  constexpr Norm kNorms[] = {{".post_attention_norm.weight", ".post_attention_layernorm.weight"},
                             {".ffn_norm.weight", ".pre_feedforward_layernorm.weight"},
                             {".post_ffw_norm.weight", ".post_feedforward_layernorm.weight"}};
  for (const Norm& n : kNorms) {
    const std::string suffix = n.gguf;
    if (gguf_name.size() <= suffix.size() ||
        gguf_name.compare(gguf_name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    // Borrow the Llama map's layer parsing through a name it knows.
    std::string stem = gguf_name.substr(0, gguf_name.size() - suffix.size());
    std::optional<std::string> as_attn_norm = llama_hf_weight_name(stem + ".attn_norm.weight");
    if (!as_attn_norm) return std::nullopt;
    const std::string llama_suffix = ".input_layernorm.weight";
    return as_attn_norm->substr(0, as_attn_norm->size() - llama_suffix.size()) + n.hf;
  }
  if (gguf_name.size() > 5 && gguf_name.compare(gguf_name.size() - 5, 5, ".bias") == 0)
    return std::nullopt;  // Gemma 3 has no biases
  return llama_hf_weight_name(gguf_name);
}

Gemma3ForCausalLM::Gemma3ForCausalLM(const ModelConfig& config, const WeightSource& source,
                                     Backend& backend, float norm_weight_offset)
    : config_(config) {
  const Gemma3TextWeights w(source);
  const int64_t h = config.hidden_size;
  const int64_t d = config.head_dim;
  const int64_t q_size = config.num_attention_heads * d;
  const int64_t kv_size = config.num_key_value_heads * d;
  const int64_t ffn = config.intermediate_size;
  const float eps = static_cast<float>(config.rms_norm_eps);
  CVLLM_CHECK(config.rope_local_base_freq > 0.0, w.path(), ": gemma3 needs rope_local_base_freq");
  auto weight = [&](const std::string& name, std::vector<int64_t> shape) {
    return backend.prepare_weight(w.get(name, shape));
  };
  auto norm = [&](const std::string& name, int64_t size) {
    return RMSNorm{backend.prepare_weight(w.get_f32(name, {size})), eps, norm_weight_offset};
  };
  auto linear = [&](int64_t i, const char* name, int64_t out, int64_t in) {
    Linear l;
    l.weight = weight(blk(i, name), {out, in});
    return l;
  };

  Tensor table = w.get("token_embd.weight", {config.vocab_size, h});
  embed_scale_ = embedding_normalizer(h, table.dtype());
  embed_tokens_ = backend.prepare_weight(table);

  if (config.attn_logit_softcapping > 0.0) {
    LOG_WARNING(w.path(), ": attn_logit_softcapping is ignored, as transformers' Gemma 3 does");
  }
  AttentionParams attn;
  attn.num_heads = config.num_attention_heads;
  attn.num_kv_heads = config.num_key_value_heads;
  attn.head_size = d;
  const double scalar =
      config.query_pre_attn_scalar > 0.0 ? config.query_pre_attn_scalar : static_cast<double>(d);
  attn.scale = static_cast<float>(1.0 / std::sqrt(scalar));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    DecoderLayer layer;
    layer.input_layernorm = norm(blk(i, "attn_norm"), h);
    layer.q_proj = linear(i, "attn_q", q_size, h);
    layer.k_proj = linear(i, "attn_k", kv_size, h);
    layer.v_proj = linear(i, "attn_v", kv_size, h);
    layer.o_proj = linear(i, "attn_output", h, q_size);
    layer.q_norm = norm(blk(i, "attn_q_norm"), d);
    layer.k_norm = norm(blk(i, "attn_k_norm"), d);
    layer.is_local = config.layer_uses_sliding_window(i);
    layer.attn = attn;
    layer.attn.sliding_window = layer.is_local ? config.sliding_window : -1;
    layer.post_attention_layernorm = norm(blk(i, "post_attention_norm"), h);
    layer.pre_feedforward_layernorm = norm(blk(i, "ffn_norm"), h);
    layer.gate_proj = linear(i, "ffn_gate", ffn, h);
    layer.up_proj = linear(i, "ffn_up", ffn, h);
    layer.down_proj = linear(i, "ffn_down", h, ffn);
    layer.post_feedforward_layernorm = norm(blk(i, "post_ffw_norm"), h);
    layers_.push_back(std::move(layer));
  }
  norm_ = norm("output_norm.weight", h);
  lm_head_.weight =
      config.tie_word_embeddings ? embed_tokens_ : weight("output.weight", {config.vocab_size, h});
  rotary_global_.emplace(config, RopeStyle::kNeox);
  rotary_local_.emplace(local_rope_config(config), RopeStyle::kNeox);
}

Tensor Gemma3ForCausalLM::forward(ForwardContext& ctx) {
  Backend& be = ctx.backend;
  const int64_t t = ctx.num_tokens();
  const int64_t h = config_.hidden_size;
  const int64_t d = config_.head_dim;
  const int64_t num_heads = config_.num_attention_heads;
  const int64_t num_kv_heads = config_.num_key_value_heads;
  const int64_t ffn = config_.intermediate_size;

  // Activations for the whole pass, reused by every layer.
  Tensor hidden = be.alloc(DType::kF32, {t, h});    // [num_tokens, hidden_size] sublayer output
  Tensor branch = be.alloc(DType::kF32, {t, h});    // the same after its post-norm
  Tensor residual = be.alloc(DType::kF32, {t, h});  // [num_tokens, hidden_size] residual stream
  Tensor normed = be.alloc(DType::kF32, {t, h});
  Tensor q = be.alloc(DType::kF32, {t, num_heads * d});  // [num_tokens, num_heads * head_dim]
  Tensor k = be.alloc(DType::kF32, {t, num_kv_heads * d});
  Tensor v = be.alloc(DType::kF32, {t, num_kv_heads * d});
  Tensor q_normed = be.alloc(DType::kF32, {t, num_heads * d});
  Tensor k_normed = be.alloc(DType::kF32, {t, num_kv_heads * d});
  Tensor attn = be.alloc(DType::kF32, {t, num_heads * d});
  Tensor gate = be.alloc(DType::kF32, {t, ffn});
  Tensor up = be.alloc(DType::kF32, {t, ffn});

  be.embedding(embed_tokens_, ctx.step, branch);
  be.scale(branch, embed_scale_);
  ctx.maybe_dump("embed_tokens", branch);
  // `branch` holds what the next fused add-norm adds to the residual stream (zero at first, so
  // the first add makes residual = scaled embeddings).
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer& layer = layers_[i];
    layer.input_layernorm.forward_residual(be, branch, residual, normed);
    const Tensor* qkv_w[] = {&layer.q_proj.weight, &layer.k_proj.weight, &layer.v_proj.weight};
    Tensor* qkv[] = {&q, &k, &v};
    be.linear_many(normed, qkv_w, qkv);
    Tensor q_heads = q_normed.reshape({t * num_heads, d});
    Tensor k_heads = k_normed.reshape({t * num_kv_heads, d});
    layer.q_norm.forward(be, q.reshape({t * num_heads, d}), q_heads);
    layer.k_norm.forward(be, k.reshape({t * num_kv_heads, d}), k_heads);
    const RotaryEmbedding& rotary = layer.is_local ? *rotary_local_ : *rotary_global_;
    be.rope_attention(q_normed, k_normed, v, ctx.kv_caches[i], ctx.step, rotary.params(),
                      layer.attn, attn);
    layer.o_proj.forward(be, attn, hidden);
    layer.post_attention_layernorm.forward(be, hidden, branch);
    layer.pre_feedforward_layernorm.forward_residual(be, branch, residual, normed);
    be.gated_linear(normed, layer.gate_proj.weight, layer.up_proj.weight,
                    GatedActivation::kGeluTanh, gate, up, gate);
    layer.down_proj.forward(be, gate, hidden);
    layer.post_feedforward_layernorm.forward(be, hidden, branch);
    if (ctx.dump) {  // the residual stream after this layer, as HF's hidden_states[i + 1]
      Tensor out = copy_of(be, residual);
      be.add(branch, out);
      ctx.maybe_dump(cat("layers.", i), out);
    }
  }
  norm_.forward_residual(be, branch, residual, normed);
  ctx.maybe_dump("norm", normed);
  return normed;
}

Tensor Gemma3ForCausalLM::compute_logits(Backend& backend, const Tensor& hidden) {
  Tensor logits = backend.alloc(DType::kF32, {hidden.dim(0), config_.vocab_size});
  lm_head_.forward(backend, hidden, logits);
  if (config_.final_logit_softcapping > 0.0) {
    backend.softcap(logits, static_cast<float>(config_.final_logit_softcapping));
  }
  return logits;
}

}  // namespace cvllm
