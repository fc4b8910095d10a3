// CausalLM: the interface every generative model implements (vLLM's VllmModelForTextGeneration).
// forward() runs the flat batch of this step — prefill chunks and decode tokens of many requests
// together — and returns the final hidden states; compute_logits() projects selected rows onto the
// vocabulary.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layers/forward_context.h"
#include "models/model_config.h"

namespace cvllm {

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;
  // Returns [num_tokens, hidden_size] (after the final norm).
  virtual Tensor forward(ForwardContext& ctx) = 0;
  // hidden: [num_rows, hidden_size] -> [num_rows, vocab_size] f32
  virtual Tensor compute_logits(Backend& backend, const Tensor& hidden) = 0;
  // Shape of one layer's KV cache entry.
  virtual int64_t num_kv_heads() const { return config().num_key_value_heads; }
  virtual int64_t head_size() const { return config().head_dim; }
  virtual int64_t num_layers() const { return config().num_hidden_layers; }
};

}  // namespace cvllm
