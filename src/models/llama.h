// Llama architecture (Llama 2/3, SmolLM2, TinyLlama) and the decoders that differ from it only by
// options in ModelConfig: Mistral (sliding window), Qwen2 (q/k/v bias, optional sliding window on
// some layers), Qwen3 (per-head RMSNorm of q and k before RoPE), Phi-3 (fused qkv and gate_up
// projections, split by rows at load; partial rotary). Pre-norm decoder layers of
// RMSNorm -> attention with RoPE -> residual, RMSNorm -> SiLU-gated MLP -> residual.
// Weights are asked for by GGUF name; llama_hf_weight_name maps them to Hugging Face names.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "layers/linear.h"
#include "layers/rotary_embedding.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"

namespace cvllm {

// GGUF-style weight name -> the Hugging Face name of the Llama family (LlamaForCausalLM and the
// Mistral/Qwen2/Qwen3 classes, which use the same names): "blk.N.attn_q.weight" ->
// "model.layers.N.self_attn.q_proj.weight", "token_embd.weight" -> "model.embed_tokens.weight".
// nullopt for names the family does not have (e.g. "rope_freqs.weight").
std::optional<std::string> llama_hf_weight_name(const std::string& gguf_name);
// Phi3ForCausalLM: the Llama names, plus its fused projections under llama.cpp's names for them:
// "blk.N.attn_qkv.weight" -> "model.layers.N.self_attn.qkv_proj.weight" ([q + 2 kv, hidden]),
// "blk.N.ffn_up.weight" -> "model.layers.N.mlp.gate_up_proj.weight" ([2 ffn, hidden], gate rows
// first).
std::optional<std::string> phi3_hf_weight_name(const std::string& gguf_name);

class LlamaForCausalLM : public CausalLM {
 public:
  // rope_style: kInterleaved for GGUF checkpoints (Q/K rows were permuted by the converter),
  // kNeox for Hugging Face checkpoints.
  LlamaForCausalLM(const ModelConfig& config, const WeightSource& weights, Backend& backend,
                   RopeStyle rope_style);

  const ModelConfig& config() const override { return config_; }
  Tensor forward(ForwardContext& ctx) override;
  Tensor compute_logits(Backend& backend, const Tensor& hidden) override;

 private:
  struct DecoderLayer {
    RMSNorm input_layernorm;
    Linear q_proj, k_proj, v_proj, o_proj;
    std::optional<RMSNorm> q_norm, k_norm;  // [head_dim] weights, Qwen3
    AttentionParams attn;                   // per layer: the sliding window may differ
    RMSNorm post_attention_layernorm;
    Linear gate_proj, up_proj, down_proj;
  };

  ModelConfig config_;
  Tensor embed_tokens_;  // [vocab_size, hidden_size]
  std::vector<DecoderLayer> layers_;
  RMSNorm norm_;
  Linear lm_head_;  // shares embed_tokens_ when tied
  std::optional<RotaryEmbedding> rotary_;
};

}  // namespace cvllm
