// Llama architecture (Llama 2/3, SmolLM2, TinyLlama, Mistral-style GQA): pre-norm decoder layers of
// RMSNorm -> attention with RoPE -> residual, RMSNorm -> SiLU-gated MLP -> residual.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "layers/linear.h"
#include "layers/rotary_embedding.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"

namespace cvllm {

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
    RMSNorm post_attention_layernorm;
    Linear gate_proj, up_proj, down_proj;
  };

  ModelConfig config_;
  Tensor embed_tokens_;  // [vocab_size, hidden_size]
  std::vector<DecoderLayer> layers_;
  RMSNorm norm_;
  Linear lm_head_;  // shares embed_tokens_ when tied
  std::optional<RotaryEmbedding> rotary_;
  AttentionParams attn_params_;
};

}  // namespace cvllm
