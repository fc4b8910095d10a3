#include "models/opt.h"

#include <cmath>

#include "util/error.h"

namespace cvllm {

OPTForCausalLM::OPTForCausalLM(const ModelConfig& config, const WeightSource& w, Backend& backend)
    : config_(config) {
  const int64_t h = config.hidden_size;
  const int64_t e = config.word_embed_proj_dim > 0 ? config.word_embed_proj_dim : h;
  const int64_t ffn = config.intermediate_size;
  // OPTForCausalLM saves "model.decoder.*"; the original facebook/opt-* files, saved from
  // OPTModel, say "decoder.*".
  const std::string root =
      w.contains("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
  auto weight = [&](const std::string& name, std::vector<int64_t> shape) {
    return backend.prepare_weight(w.get(root + name, shape));
  };
  auto linear = [&](const std::string& name, int64_t out, int64_t in, bool has_bias) {
    Linear l;
    l.weight = weight(name + ".weight", {out, in});
    if (has_bias) l.bias = backend.prepare_weight(w.get_f32(root + name + ".bias", {out}));
    return l;
  };
  auto layer_norm = [&](const std::string& name) {
    return LayerNorm::load(w, backend, root + name, h, config.layer_norm_eps,
                           config.layer_norm_affine);
  };

  embed_tokens_ = weight("embed_tokens.weight", {config.vocab_size, e});
  embed_positions_ =
      weight("embed_positions.weight", {config.max_position_embeddings + kPositionOffset, h});
  if (e != h) {
    project_in_ = Linear{weight("project_in.weight", {h, e}), std::nullopt};
    project_out_ = Linear{weight("project_out.weight", {e, h}), std::nullopt};
  }
  attn_.num_heads = config.num_attention_heads;
  attn_.num_kv_heads = config.num_attention_heads;
  attn_.head_size = config.head_dim;
  attn_.scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string p = cat("layers.", i, ".");
    DecoderLayer layer;
    layer.self_attn_layer_norm = layer_norm(p + "self_attn_layer_norm");
    layer.q_proj = linear(p + "self_attn.q_proj", h, h, config.qkv_bias);
    layer.k_proj = linear(p + "self_attn.k_proj", h, h, config.qkv_bias);
    layer.v_proj = linear(p + "self_attn.v_proj", h, h, config.qkv_bias);
    layer.out_proj = linear(p + "self_attn.out_proj", h, h, config.o_proj_bias);
    layer.final_layer_norm = layer_norm(p + "final_layer_norm");
    layer.fc1 = linear(p + "fc1", ffn, h, config.mlp_bias);
    layer.fc2 = linear(p + "fc2", h, ffn, config.mlp_bias);
    layers_.push_back(std::move(layer));
  }
  if (config.final_layer_norm) final_layer_norm_ = layer_norm("final_layer_norm");
  lm_head_.weight = config.tie_word_embeddings
                        ? embed_tokens_
                        : backend.prepare_weight(w.get("lm_head.weight", {config.vocab_size, e}));
}

void OPTForCausalLM::attention_block(ForwardContext& ctx, size_t i, const Tensor& x, Scratch& s,
                                     Tensor& out) {
  Backend& be = ctx.backend;
  const DecoderLayer& layer = layers_[i];
  layer.q_proj.forward(be, x, s.q);
  layer.k_proj.forward(be, x, s.k);
  layer.v_proj.forward(be, x, s.v);
  // No rotary embedding: positions entered once, through embed_positions.
  be.attention(s.q, s.k, s.v, ctx.kv_caches[i], ctx.step, attn_, s.attn);
  layer.out_proj.forward(be, s.attn, out);
}

void OPTForCausalLM::mlp_block(Backend& be, const DecoderLayer& layer, const Tensor& x, Scratch& s,
                               Tensor& out) {
  layer.fc1.forward(be, x, s.ffn);
  be.relu(s.ffn, s.ffn);
  layer.fc2.forward(be, s.ffn, out);
}

Tensor OPTForCausalLM::forward(ForwardContext& ctx) {
  Backend& be = ctx.backend;
  const int64_t t = ctx.num_tokens();
  const int64_t h = config_.hidden_size;
  const int64_t e = embed_tokens_.dim(1);
  Scratch s;
  s.q = be.alloc(DType::kF32, {t, h});
  s.k = be.alloc(DType::kF32, {t, h});
  s.v = be.alloc(DType::kF32, {t, h});
  s.attn = be.alloc(DType::kF32, {t, h});
  s.ffn = be.alloc(DType::kF32, {t, config_.intermediate_size});
  Tensor hidden = be.alloc(DType::kF32, {t, h});  // [num_tokens, hidden_size] residual stream
  Tensor normed = be.alloc(DType::kF32, {t, h});
  Tensor branch = be.alloc(DType::kF32, {t, h});  // attention / MLP output before the residual add

  // hidden = project_in(embed_tokens[ids]) + embed_positions[positions + 2]
  if (project_in_) {
    Tensor embeds = be.alloc(DType::kF32, {t, e});
    be.embedding(embed_tokens_, ctx.step, embeds);
    project_in_->forward(be, embeds, hidden);
  } else {
    be.embedding(embed_tokens_, ctx.step, hidden);
  }
  Tensor positions = be.alloc(DType::kF32, {t, h});
  be.position_embedding(embed_positions_, ctx.step, kPositionOffset, positions);
  be.add(positions, hidden);
  ctx.maybe_dump("embed_tokens", hidden);

  for (size_t i = 0; i < layers_.size(); ++i) {
    const DecoderLayer& layer = layers_[i];
    if (config_.do_layer_norm_before) {  // x + attn(ln(x)); x + mlp(ln(x))
      layer.self_attn_layer_norm.forward(be, hidden, normed);
      attention_block(ctx, i, normed, s, branch);
      be.add(branch, hidden);
      layer.final_layer_norm.forward(be, hidden, normed);
      mlp_block(be, layer, normed, s, branch);
      be.add(branch, hidden);
    } else {  // ln(x + attn(x)); ln(x + mlp(x))
      attention_block(ctx, i, hidden, s, branch);
      be.add(hidden, branch);
      layer.self_attn_layer_norm.forward(be, branch, hidden);
      mlp_block(be, layer, hidden, s, branch);
      be.add(hidden, branch);
      layer.final_layer_norm.forward(be, branch, hidden);
    }
    ctx.maybe_dump(cat("layers.", i), hidden);
  }
  Tensor* out = &hidden;
  if (final_layer_norm_) {
    final_layer_norm_->forward(be, hidden, normed);
    out = &normed;
  }
  ctx.maybe_dump("norm", *out);
  if (!project_out_) return *out;
  Tensor projected = be.alloc(DType::kF32, {t, e});
  project_out_->forward(be, *out, projected);
  return projected;
}

Tensor OPTForCausalLM::compute_logits(Backend& backend, const Tensor& hidden) {
  Tensor logits = backend.alloc(DType::kF32, {hidden.dim(0), config_.vocab_size});
  lm_head_.forward(backend, hidden, logits);
  return logits;
}

}  // namespace cvllm
