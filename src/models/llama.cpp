#include "models/llama.h"

#include <cmath>
#include <cstring>

#include "util/error.h"

namespace cvllm {
namespace {

std::string blk(int64_t i, const char* name) { return cat("blk.", i, ".", name, ".weight"); }

Tensor copy_of(Backend& backend, const Tensor& src) {
  Tensor dst = backend.alloc(src.dtype(), src.shape());
  backend.add(src, dst);  // dst is zeroed, so this is a copy
  return dst;
}

}  // namespace

LlamaForCausalLM::LlamaForCausalLM(const ModelConfig& config, const WeightSource& w,
                                   Backend& backend, RopeStyle rope_style)
    : config_(config) {
  const int64_t h = config.hidden_size;
  const int64_t q_size = config.num_attention_heads * config.head_dim;
  const int64_t kv_size = config.num_key_value_heads * config.head_dim;
  const int64_t ffn = config.intermediate_size;
  const float eps = static_cast<float>(config.rms_norm_eps);
  auto weight = [&](const std::string& name, std::vector<int64_t> shape) {
    return backend.prepare_weight(w.get(name, shape));
  };

  embed_tokens_ = weight("token_embd.weight", {config.vocab_size, h});
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    DecoderLayer layer;
    layer.input_layernorm = {weight(blk(i, "attn_norm"), {h}), eps};
    layer.q_proj.weight = weight(blk(i, "attn_q"), {q_size, h});
    layer.k_proj.weight = weight(blk(i, "attn_k"), {kv_size, h});
    layer.v_proj.weight = weight(blk(i, "attn_v"), {kv_size, h});
    layer.o_proj.weight = weight(blk(i, "attn_output"), {h, q_size});
    layer.post_attention_layernorm = {weight(blk(i, "ffn_norm"), {h}), eps};
    layer.gate_proj.weight = weight(blk(i, "ffn_gate"), {ffn, h});
    layer.up_proj.weight = weight(blk(i, "ffn_up"), {ffn, h});
    layer.down_proj.weight = weight(blk(i, "ffn_down"), {h, ffn});
    layers_.push_back(std::move(layer));
  }
  norm_ = {weight("output_norm.weight", {h}), eps};
  lm_head_.weight = config.tie_word_embeddings ? embed_tokens_
                                               : weight("output.weight", {config.vocab_size, h});

  std::vector<float> freq_factors;
  if (std::optional<Tensor> rope_freqs = w.find("rope_freqs.weight")) {
    CVLLM_CHECK(rope_freqs->dtype() == DType::kF32, w.path(), ": rope_freqs.weight must be f32");
    const float* p = rope_freqs->data_as<float>();
    freq_factors.assign(p, p + rope_freqs->numel());
  }
  rotary_.emplace(config, rope_style, freq_factors);

  attn_params_.num_heads = config.num_attention_heads;
  attn_params_.num_kv_heads = config.num_key_value_heads;
  attn_params_.head_size = config.head_dim;
  attn_params_.scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
}

Tensor LlamaForCausalLM::forward(ForwardContext& ctx) {
  Backend& be = ctx.backend;
  const int64_t t = ctx.num_tokens();
  const int64_t h = config_.hidden_size;
  const int64_t q_size = config_.num_attention_heads * config_.head_dim;
  const int64_t kv_size = config_.num_key_value_heads * config_.head_dim;
  const int64_t ffn = config_.intermediate_size;

  // Activations for the whole pass, reused by every layer.
  Tensor hidden = be.alloc(DType::kF32, {t, h});    // [num_tokens, hidden_size] layer output
  Tensor residual = be.alloc(DType::kF32, {t, h});  // [num_tokens, hidden_size] residual stream
  Tensor normed = be.alloc(DType::kF32, {t, h});
  Tensor q = be.alloc(DType::kF32, {t, q_size});
  Tensor k = be.alloc(DType::kF32, {t, kv_size});
  Tensor v = be.alloc(DType::kF32, {t, kv_size});
  Tensor attn = be.alloc(DType::kF32, {t, q_size});
  Tensor gate = be.alloc(DType::kF32, {t, ffn});
  Tensor up = be.alloc(DType::kF32, {t, ffn});

  be.embedding(embed_tokens_, ctx.step, hidden);
  ctx.maybe_dump("embed_tokens", hidden);
  // residual starts at zero, so the first fused add-norm makes residual = embeddings.
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer& layer = layers_[i];
    layer.input_layernorm.forward_residual(be, hidden, residual, normed);
    const Tensor* qkv_w[] = {&layer.q_proj.weight, &layer.k_proj.weight, &layer.v_proj.weight};
    Tensor* qkv[] = {&q, &k, &v};
    be.linear_many(normed, qkv_w, qkv);
    rotary_->forward(be, q, k, ctx.step);
    be.attention(q, k, v, ctx.kv_caches[i], ctx.step, attn_params_, attn);
    layer.o_proj.forward(be, attn, hidden);
    layer.post_attention_layernorm.forward_residual(be, hidden, residual, normed);
    const Tensor* gate_up_w[] = {&layer.gate_proj.weight, &layer.up_proj.weight};
    Tensor* gate_up[] = {&gate, &up};
    be.linear_many(normed, gate_up_w, gate_up);
    be.silu_mul(gate, up, gate);
    layer.down_proj.forward(be, gate, hidden);
    if (ctx.dump) {  // the residual stream after this layer, as HF's hidden_states[i + 1]
      Tensor out = copy_of(be, residual);
      be.add(hidden, out);
      ctx.maybe_dump(cat("layers.", i), out);
    }
  }
  norm_.forward_residual(be, hidden, residual, normed);
  ctx.maybe_dump("norm", normed);
  return normed;
}

Tensor LlamaForCausalLM::compute_logits(Backend& backend, const Tensor& hidden) {
  Tensor logits = backend.alloc(DType::kF32, {hidden.dim(0), config_.vocab_size});
  lm_head_.forward(backend, hidden, logits);
  return logits;
}

}  // namespace cvllm
