// Gemma 3 text decoder (transformers' Gemma3ForCausalLM; llama.cpp's "gemma3" GGUF files). What it
// adds to the Llama decoder, each checked against transformers' modeling_gemma3.py:
// - embeddings multiplied by sqrt(hidden_size), rounded to the embedding table's dtype first
//   (transformers casts the normalizer to the weights' dtype: 25.25, not 25.298, for a bf16
//   640-wide model);
// - RMSNorm scaling by (1 + weight): Hugging Face stores `weight`, llama.cpp's converter stores
//   `1 + weight`, so the offset depends on the source;
// - "sandwich" norms: input, post-attention, pre-feedforward and post-feedforward per layer;
// - per-head RMSNorm of q and k before RoPE; GELU (tanh form) gated MLP;
// - attention scale query_pre_attn_scalar^-1/2 (not head_dim's);
// - sliding-window ("local") and full ("global") layers, each kind with its own RoPE: base
//   rope_local_base_freq unscaled on local layers, rope_theta with rope_scaling on global ones;
// - optional final logit soft-capping: logits = cap * tanh(logits / cap).
// attn_logit_softcapping is read but not applied: transformers' Gemma3Attention never passes it
// to the attention function (Gemma 2 did), and no released Gemma 3 sets it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layers/linear.h"
#include "layers/rotary_embedding.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"

namespace cvllm {

// GGUF-style weight name -> Gemma3ForCausalLM's Hugging Face name. Differs from the Llama map in
// the sandwich norms: "blk.N.post_attention_norm" -> "model.layers.N.post_attention_layernorm",
// "blk.N.ffn_norm" -> "...pre_feedforward_layernorm", "blk.N.post_ffw_norm" ->
// "...post_feedforward_layernorm". nullopt for names Gemma 3 does not have. Names that are already
// Gemma3ForConditionalGeneration's ("language_model.*", "model.language_model.*") pass through:
// the model asks with them when the checkpoint is one (see the constructor).
std::optional<std::string> gemma3_hf_weight_name(const std::string& gguf_name);

class Gemma3ForCausalLM : public CausalLM {
 public:
  // norm_weight_offset: 1 for Hugging Face checkpoints (they store weight - 1), 0 for GGUF files
  // (the converter adds the 1). RoPE is rotate-half for both (llama.cpp does not permute Gemma's
  // Q/K rows). `weights` may also be a Gemma3ForConditionalGeneration checkpoint (Gemma 3
  // 4B/12B/27B): its decoder is found under either prefix transformers uses, and the vision
  // tower is left unread.
  Gemma3ForCausalLM(const ModelConfig& config, const WeightSource& weights, Backend& backend,
                    float norm_weight_offset);

  const ModelConfig& config() const override { return config_; }
  Tensor forward(ForwardContext& ctx) override;
  Tensor compute_logits(Backend& backend, const Tensor& hidden) override;

  // The factor embeddings are multiplied by, as the model computes it (tests).
  float embed_scale() const { return embed_scale_; }

 private:
  struct DecoderLayer {
    RMSNorm input_layernorm;
    Linear q_proj, k_proj, v_proj, o_proj;
    RMSNorm q_norm, k_norm;  // [head_dim] weights
    AttentionParams attn;    // sliding window on local layers only
    bool is_local = false;   // which RoPE the layer uses
    RMSNorm post_attention_layernorm;
    RMSNorm pre_feedforward_layernorm;
    Linear gate_proj, up_proj, down_proj;
    RMSNorm post_feedforward_layernorm;
  };

  ModelConfig config_;
  Tensor embed_tokens_;  // [vocab_size, hidden_size]
  float embed_scale_ = 1.0f;  // sqrt(hidden_size) in the embedding table's dtype
  std::vector<DecoderLayer> layers_;
  RMSNorm norm_;
  Linear lm_head_;  // shares embed_tokens_ when tied
  std::optional<RotaryEmbedding> rotary_global_;
  std::optional<RotaryEmbedding> rotary_local_;
};

}  // namespace cvllm
