#include "models/llama.h"

#include <cmath>
#include <cstring>

#include "util/error.h"

namespace cvllm {
namespace {

std::string blk(int64_t i, const char* name, const char* kind = "weight") {
  return cat("blk.", i, ".", name, ".", kind);
}

Tensor copy_of(Backend& backend, const Tensor& src) {
  Tensor dst = backend.alloc(src.dtype(), src.shape());
  backend.add(src, dst);  // dst is zeroed, so this is a copy
  return dst;
}

// GGUF block tensor name -> Hugging Face module path within "model.layers.N.".
struct BlockName {
  const char* gguf;
  const char* hf;
};
constexpr BlockName kBlockNames[] = {
    {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"}, {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

}  // namespace

std::optional<std::string> llama_hf_weight_name(const std::string& gguf_name) {
  if (gguf_name == "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf_name == "output_norm.weight") return "model.norm.weight";
  if (gguf_name == "output.weight") return "lm_head.weight";
  // "blk.<layer>.<module>.<weight|bias>"
  if (gguf_name.rfind("blk.", 0) != 0) return std::nullopt;
  size_t layer_end = gguf_name.find('.', 4);
  size_t kind_start = gguf_name.rfind('.');
  if (layer_end == std::string::npos || layer_end == 4 || kind_start <= layer_end)
    return std::nullopt;
  std::string layer = gguf_name.substr(4, layer_end - 4);
  if (layer.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  std::string module = gguf_name.substr(layer_end + 1, kind_start - layer_end - 1);
  std::string kind = gguf_name.substr(kind_start + 1);
  if (kind != "weight" && kind != "bias") return std::nullopt;
  for (const BlockName& b : kBlockNames) {
    if (module == b.gguf) return cat("model.layers.", layer, ".", b.hf, ".", kind);
  }
  return std::nullopt;
}

std::optional<std::string> phi3_hf_weight_name(const std::string& gguf_name) {
  std::optional<std::string> name = llama_hf_weight_name(gguf_name);
  if (name) {  // ffn_up is the fused gate_up_proj in Phi-3
    const std::string up = ".mlp.up_proj.";
    size_t at = name->find(up);
    if (at != std::string::npos) name->replace(at, up.size(), ".mlp.gate_up_proj.");
    return name;
  }
  const std::string suffix = ".attn_qkv.weight";
  if (gguf_name.size() > suffix.size() &&
      gguf_name.compare(gguf_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    // Borrow the layer parsing: blk.N.attn_q.weight -> model.layers.N.self_attn.q_proj.weight
    std::string as_q = gguf_name.substr(0, gguf_name.size() - suffix.size()) + ".attn_q.weight";
    if (std::optional<std::string> q = llama_hf_weight_name(as_q)) {
      q->replace(q->rfind("q_proj"), 6, "qkv_proj");
      return q;
    }
  }
  return std::nullopt;
}

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
  // Norm weights and biases are read as f32 by every backend, whatever the checkpoint stores.
  auto weight_f32 = [&](const std::string& name, std::vector<int64_t> shape) {
    return backend.prepare_weight(w.get_f32(name, shape));
  };
  auto linear = [&](int64_t i, const char* name, int64_t out, int64_t in, bool has_bias) {
    Linear l;
    l.weight = weight(blk(i, name), {out, in});
    if (has_bias) l.bias = weight_f32(blk(i, name, "bias"), {out});
    return l;
  };

  embed_tokens_ = weight("token_embd.weight", {config.vocab_size, h});
  AttentionParams attn;
  attn.num_heads = config.num_attention_heads;
  attn.num_kv_heads = config.num_key_value_heads;
  attn.head_size = config.head_dim;
  attn.scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    DecoderLayer layer;
    layer.input_layernorm = {weight_f32(blk(i, "attn_norm"), {h}), eps};
    if (config.fused_qkv) {  // Phi-3: rows q | k | v of one matrix, no biases
      CVLLM_CHECK(!config.qkv_bias, w.path(), ": q/k/v biases with a fused qkv_proj");
      Tensor qkv = w.get(blk(i, "attn_qkv"), {q_size + 2 * kv_size, h});
      layer.q_proj.weight = backend.prepare_weight(qkv.slice_rows(0, q_size));
      layer.k_proj.weight = backend.prepare_weight(qkv.slice_rows(q_size, q_size + kv_size));
      layer.v_proj.weight =
          backend.prepare_weight(qkv.slice_rows(q_size + kv_size, q_size + 2 * kv_size));
    } else {
      layer.q_proj = linear(i, "attn_q", q_size, h, config.qkv_bias);
      layer.k_proj = linear(i, "attn_k", kv_size, h, config.qkv_bias);
      layer.v_proj = linear(i, "attn_v", kv_size, h, config.qkv_bias);
    }
    layer.o_proj = linear(i, "attn_output", h, q_size, config.o_proj_bias);
    if (config.qk_norm) {
      layer.q_norm = RMSNorm{weight_f32(blk(i, "attn_q_norm"), {config.head_dim}), eps};
      layer.k_norm = RMSNorm{weight_f32(blk(i, "attn_k_norm"), {config.head_dim}), eps};
    }
    layer.attn = attn;
    layer.attn.sliding_window = config.layer_uses_sliding_window(i) ? config.sliding_window : -1;
    layer.post_attention_layernorm = {weight_f32(blk(i, "ffn_norm"), {h}), eps};
    if (config.fused_gate_up) {  // Phi-3: rows gate | up of one matrix
      Tensor gate_up = w.get(blk(i, "ffn_up"), {2 * ffn, h});
      layer.gate_proj.weight = backend.prepare_weight(gate_up.slice_rows(0, ffn));
      layer.up_proj.weight = backend.prepare_weight(gate_up.slice_rows(ffn, 2 * ffn));
    } else {
      layer.gate_proj.weight = weight(blk(i, "ffn_gate"), {ffn, h});
      layer.up_proj.weight = weight(blk(i, "ffn_up"), {ffn, h});
    }
    layer.down_proj.weight = weight(blk(i, "ffn_down"), {h, ffn});
    layers_.push_back(std::move(layer));
  }
  norm_ = {weight_f32("output_norm.weight", {h}), eps};
  lm_head_.weight =
      config.tie_word_embeddings ? embed_tokens_ : weight("output.weight", {config.vocab_size, h});

  std::vector<float> freq_factors;
  if (std::optional<Tensor> rope_freqs = w.find("rope_freqs.weight")) {
    CVLLM_CHECK(rope_freqs->dtype() == DType::kF32, w.path(), ": rope_freqs.weight must be f32");
    const float* p = rope_freqs->data_as<float>();
    freq_factors.assign(p, p + rope_freqs->numel());
  }
  rotary_.emplace(config, rope_style, freq_factors);
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
  Tensor q = be.alloc(DType::kF32, {t, q_size});  // [num_tokens, num_heads * head_dim]
  Tensor k = be.alloc(DType::kF32, {t, kv_size});
  Tensor v = be.alloc(DType::kF32, {t, kv_size});
  Tensor attn = be.alloc(DType::kF32, {t, q_size});
  Tensor gate = be.alloc(DType::kF32, {t, ffn});
  Tensor up = be.alloc(DType::kF32, {t, ffn});
  // Qwen3's per-head q/k norm writes here, then q and k point at these (out of place, so a
  // backend's norm kernel need not support aliasing).
  Tensor q_normed, k_normed;
  if (config_.qk_norm) {
    q_normed = be.alloc(DType::kF32, {t, q_size});
    k_normed = be.alloc(DType::kF32, {t, kv_size});
  }

  be.embedding(embed_tokens_, ctx.step, hidden);
  ctx.maybe_dump("embed_tokens", hidden);
  // residual starts at zero, so the first fused add-norm makes residual = embeddings.
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer& layer = layers_[i];
    layer.input_layernorm.forward_residual(be, hidden, residual, normed);
    if (config_.qkv_bias) {
      layer.q_proj.forward(be, normed, q);
      layer.k_proj.forward(be, normed, k);
      layer.v_proj.forward(be, normed, v);
    } else {
      const Tensor* qkv_w[] = {&layer.q_proj.weight, &layer.k_proj.weight, &layer.v_proj.weight};
      Tensor* qkv[] = {&q, &k, &v};
      be.linear_many(normed, qkv_w, qkv);
    }
    Tensor* q_in = &q;
    Tensor* k_in = &k;
    if (layer.q_norm) {  // RMSNorm over each head's head_dim values
      const int64_t d = config_.head_dim;
      Tensor q_heads = q_normed.reshape({t * config_.num_attention_heads, d});
      Tensor k_heads = k_normed.reshape({t * config_.num_key_value_heads, d});
      layer.q_norm->forward(be, q.reshape({t * config_.num_attention_heads, d}), q_heads);
      layer.k_norm->forward(be, k.reshape({t * config_.num_key_value_heads, d}), k_heads);
      q_in = &q_normed;
      k_in = &k_normed;
    }
    be.rope_attention(*q_in, *k_in, v, ctx.kv_caches[i], ctx.step, rotary_->params(), layer.attn,
                      attn);
    layer.o_proj.forward(be, attn, hidden);
    layer.post_attention_layernorm.forward_residual(be, hidden, residual, normed);
    be.gated_linear(normed, layer.gate_proj.weight, layer.up_proj.weight, GatedActivation::kSilu,
                    gate, up, gate);
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
