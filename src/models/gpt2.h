// GPT-2 (openai-community/gpt2 and sizes up; transformers' GPT2LMHeadModel). Learned absolute
// positions (wpe, no offset), pre-LN blocks of LayerNorm -> multi-head attention with biases ->
// residual, LayerNorm -> c_fc -> gelu_new (tanh form) -> c_proj -> residual, final ln_f, LM head
// tied to wte. Weights are asked for by their Hugging Face names; files saved from GPT2Model (keys
// "h.0...", as the original gpt2 repository has) load as well as "transformer.h.0...", and GGUF
// files by llama.cpp's names (token_embd, position_embd, blk.N.attn_qkv, ...; already [out, in]).
// Conv1D weights are stored [in, out]; they are transposed once at load into [out, in] (a copy in
// the stored dtype, so the weights take the same memory as on disk), and the fused c_attn is
// split into q, k and v rows.
#pragma once

#include <vector>

#include "layers/linear.h"
#include "loader/weight_source.h"
#include "models/causal_lm.h"
#include "layers/layer_norm.h"

namespace cvllm {

// w: [in, out] (f32, f16 or bf16) -> an owned host copy [out, in] of the same dtype.
Tensor transpose_conv1d_weight(const Tensor& w);

class GPT2LMHeadModel : public CausalLM {
 public:
  GPT2LMHeadModel(const ModelConfig& config, const WeightSource& weights, Backend& backend);

  const ModelConfig& config() const override { return config_; }
  // Returns [num_tokens, hidden_size] (after ln_f).
  Tensor forward(ForwardContext& ctx) override;
  Tensor compute_logits(Backend& backend, const Tensor& hidden) override;

 private:
  struct Block {
    LayerNorm ln_1;
    Linear q_proj, k_proj, v_proj;  // rows of c_attn
    Linear c_proj;                  // attention output
    LayerNorm ln_2;
    Linear c_fc, mlp_c_proj;
  };

  ModelConfig config_;
  Tensor wte_;  // [vocab_size, hidden_size]
  Tensor wpe_;  // [max_position_embeddings, hidden_size]
  std::vector<Block> blocks_;
  LayerNorm ln_f_;
  AttentionParams attn_;
  Linear lm_head_;  // shares wte_ unless untied
};

}  // namespace cvllm
