#include "models/gpt2.h"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "util/error.h"

namespace cvllm {

Tensor transpose_conv1d_weight(const Tensor& w) {
  CVLLM_CHECK(w.ndim() == 2, "Conv1D weight must be 2-D, got ", w.describe());
  CVLLM_CHECK(w.dtype() == DType::kF32 || w.dtype() == DType::kF16 || w.dtype() == DType::kBF16,
              "Conv1D weight must be f32, f16 or bf16, got ", w.describe());
  const int64_t in = w.dim(0), out = w.dim(1);
  const size_t elem = w.dtype() == DType::kF32 ? 4 : 2;
  Tensor t = Tensor::empty(w.dtype(), {out, in});
  const auto* src = static_cast<const uint8_t*>(w.data());
  auto* dst = static_cast<uint8_t*>(t.data());
  for (int64_t i = 0; i < in; ++i) {
    for (int64_t o = 0; o < out; ++o)
      std::memcpy(dst + (o * in + i) * elem, src + (i * out + o) * elem, elem);
  }
  return t;
}

namespace {

// llama.cpp's GGUF name of a GPT-2 module, from its Hugging Face name without the "transformer."
// root ("h.3.attn.c_attn" -> "blk.3.attn_qkv").
std::string gguf_module_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"wte", "token_embd"}, {"wpe", "position_embd"}, {"ln_f", "output_norm"}};
  for (const auto& [from, to] : kTop) {
    if (hf == from) return to;
  }
  static const std::pair<const char*, const char*> kBlock[] = {
      {"ln_1", "attn_norm"}, {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
      {"ln_2", "ffn_norm"},  {"mlp.c_fc", "ffn_up"},      {"mlp.c_proj", "ffn_down"}};
  size_t layer_end = hf.find('.', 2);  // "h.<layer>.<module>"
  CVLLM_CHECK(hf.rfind("h.", 0) == 0 && layer_end != std::string::npos, "not a GPT-2 module: ", hf);
  const std::string module = hf.substr(layer_end + 1);
  for (const auto& [from, to] : kBlock) {
    if (module == from) return cat("blk.", hf.substr(2, layer_end - 2), ".", to);
  }
  throw Error(cat("not a GPT-2 module: ", hf));
}

}  // namespace

GPT2LMHeadModel::GPT2LMHeadModel(const ModelConfig& config, const WeightSource& w, Backend& backend)
    : config_(config) {
  const int64_t h = config.hidden_size;
  const int64_t inner = config.intermediate_size;
  // Three layouts: GPT2LMHeadModel saves "transformer.*", the original gpt2 files (saved from
  // GPT2Model) have no root, and llama.cpp's GGUF files use their own names with every Conv1D
  // weight already transposed to [out, in] and the tied LM head written out as output.weight.
  const bool gguf = w.contains("token_embd.weight");
  const std::string root = w.contains("transformer.wte.weight") ? "transformer." : "";
  auto name = [&](const std::string& hf_module) {
    return gguf ? gguf_module_name(hf_module) : root + hf_module;
  };
  auto layer_norm = [&](const std::string& module) {
    return LayerNorm::load(w, backend, name(module), h, config.layer_norm_eps, true);
  };
  auto bias = [&](const std::string& module, int64_t size) {
    return w.get_f32(name(module) + ".bias", {size});
  };
  // A Conv1D module of in -> out features as [out, in] weight rows.
  auto conv1d_weight = [&](const std::string& module, int64_t in, int64_t out) {
    if (gguf) return w.get(name(module) + ".weight", {out, in});
    return transpose_conv1d_weight(w.get(name(module) + ".weight", {in, out}));
  };
  auto conv1d = [&](const std::string& module, int64_t in, int64_t out) {
    return Linear{backend.prepare_weight(conv1d_weight(module, in, out)),
                  backend.prepare_weight(bias(module, out))};
  };

  wte_ = backend.prepare_weight(w.get(name("wte") + ".weight", {config.vocab_size, h}));
  wpe_ =
      backend.prepare_weight(w.get(name("wpe") + ".weight", {config.max_position_embeddings, h}));
  attn_.num_heads = config.num_attention_heads;
  attn_.num_kv_heads = config.num_attention_heads;
  attn_.head_size = config.head_dim;
  attn_.scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));  // scale_attn_weights
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string p = cat("h.", i, ".");
    Block b;
    b.ln_1 = layer_norm(p + "ln_1");
    // c_attn as [3h, h], rows q | k | v.
    Tensor qkv = conv1d_weight(p + "attn.c_attn", h, 3 * h);
    Tensor qkv_bias = bias(p + "attn.c_attn", 3 * h);
    Linear* parts[] = {&b.q_proj, &b.k_proj, &b.v_proj};
    for (int64_t j = 0; j < 3; ++j) {
      parts[j]->weight = backend.prepare_weight(qkv.slice_rows(j * h, (j + 1) * h));
      parts[j]->bias = backend.prepare_weight(qkv_bias.slice_rows(j * h, (j + 1) * h));
    }
    b.c_proj = conv1d(p + "attn.c_proj", h, h);
    b.ln_2 = layer_norm(p + "ln_2");
    b.c_fc = conv1d(p + "mlp.c_fc", h, inner);
    b.mlp_c_proj = conv1d(p + "mlp.c_proj", inner, h);
    blocks_.push_back(std::move(b));
  }
  ln_f_ = layer_norm("ln_f");
  const std::string lm_head_name = gguf ? "output.weight" : "lm_head.weight";
  lm_head_.weight = config.tie_word_embeddings
                        ? wte_
                        : backend.prepare_weight(w.get(lm_head_name, {config.vocab_size, h}));
}

Tensor GPT2LMHeadModel::forward(ForwardContext& ctx) {
  Backend& be = ctx.backend;
  const int64_t t = ctx.num_tokens();
  const int64_t h = config_.hidden_size;
  Tensor hidden = be.alloc(DType::kF32, {t, h});  // [num_tokens, hidden_size] residual stream
  Tensor normed = be.alloc(DType::kF32, {t, h});
  Tensor branch = be.alloc(DType::kF32, {t, h});  // attention / MLP output before the residual add
  Tensor q = be.alloc(DType::kF32, {t, h});
  Tensor k = be.alloc(DType::kF32, {t, h});
  Tensor v = be.alloc(DType::kF32, {t, h});
  Tensor attn = be.alloc(DType::kF32, {t, h});
  Tensor ffn = be.alloc(DType::kF32, {t, config_.intermediate_size});

  // hidden = wte[ids] + wpe[positions]
  be.embedding(wte_, ctx.step, hidden);
  Tensor pos = be.alloc(DType::kF32, {t, h});
  be.position_embedding(wpe_, ctx.step, 0, pos);
  be.add(pos, hidden);
  ctx.maybe_dump("embed_tokens", hidden);

  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    b.ln_1.forward(be, hidden, normed);
    b.q_proj.forward(be, normed, q);
    b.k_proj.forward(be, normed, k);
    b.v_proj.forward(be, normed, v);
    be.attention(q, k, v, ctx.kv_caches[i], ctx.step, attn_, attn);  // no RoPE
    b.c_proj.forward(be, attn, branch);
    be.add(branch, hidden);
    b.ln_2.forward(be, hidden, normed);
    b.c_fc.forward(be, normed, ffn);
    be.gelu_tanh(ffn, ffn);
    b.mlp_c_proj.forward(be, ffn, branch);
    be.add(branch, hidden);
    ctx.maybe_dump(cat("layers.", i), hidden);
  }
  ln_f_.forward(be, hidden, normed);
  ctx.maybe_dump("norm", normed);
  return normed;
}

Tensor GPT2LMHeadModel::compute_logits(Backend& backend, const Tensor& hidden) {
  Tensor logits = backend.alloc(DType::kF32, {hidden.dim(0), config_.vocab_size});
  lm_head_.forward(backend, hidden, logits);
  return logits;
}

}  // namespace cvllm
