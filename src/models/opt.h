// OPT (facebook/opt-125m ... 66b; transformers' OPTForCausalLM). Learned absolute positions
// (table rows = position + 2, fairseq's padding offset), LayerNorm with bias, multi-head
// attention with biased q/k/v/out projections and no RoPE, ReLU MLP (fc1 -> relu -> fc2).
// Pre-LN (do_layer_norm_before: 125m and most sizes, with a final LayerNorm) or post-LN (350m,
// no final LayerNorm); when word_embed_proj_dim != hidden_size (350m), project_in/project_out
// map between the embedding width and the decoder's. The LM head is tied to embed_tokens.
// Weights are asked for by their Hugging Face names; checkpoints saved from OPTModel (keys
// "decoder.*") load as well as those saved from OPTForCausalLM ("model.decoder.*").
#pragma once

#include <optional>
#include <vector>

#include "layers/linear.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"
#include "layers/layer_norm.h"

namespace cvllm {

class OPTForCausalLM : public CausalLM {
 public:
  OPTForCausalLM(const ModelConfig& config, const WeightSource& weights, Backend& backend);

  const ModelConfig& config() const override { return config_; }
  // Returns [num_tokens, word_embed_proj_dim] (after the final norm and project_out).
  Tensor forward(ForwardContext& ctx) override;
  Tensor compute_logits(Backend& backend, const Tensor& hidden) override;

  // Row of embed_positions for position 0.
  static constexpr int32_t kPositionOffset = 2;

 private:
  // Activations of one forward pass, [num_tokens, n] f32 each.
  struct Scratch {
    Tensor q, k, v, attn, ffn;
  };
  struct DecoderLayer {
    LayerNorm self_attn_layer_norm;
    Linear q_proj, k_proj, v_proj, out_proj;
    LayerNorm final_layer_norm;  // the MLP's norm
    Linear fc1, fc2;
  };
  // out = self_attn(x) of layer i (before the residual add).
  void attention_block(ForwardContext& ctx, size_t i, const Tensor& x, Scratch& s, Tensor& out);
  // out = fc2(relu(fc1(x))).
  void mlp_block(Backend& be, const DecoderLayer& layer, const Tensor& x, Scratch& s, Tensor& out);

  ModelConfig config_;
  Tensor embed_tokens_;     // [vocab_size, word_embed_proj_dim]
  Tensor embed_positions_;  // [max_position_embeddings + 2, hidden_size]
  std::optional<Linear> project_in_, project_out_;
  std::vector<DecoderLayer> layers_;
  std::optional<LayerNorm> final_layer_norm_;
  AttentionParams attn_;
  Linear lm_head_;  // shares embed_tokens_ unless untied
};

}  // namespace cvllm
