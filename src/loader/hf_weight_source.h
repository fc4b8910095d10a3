// Weights of a Hugging Face checkpoint (safetensors, sharded or not) under the GGUF-style names
// models ask for. The architecture supplies the name map (GGUF name -> HF name), so this file knows
// no model. Tensors are views into the memory-mapped shards in their stored dtype (F32/F16/BF16);
// a tensor whose data is not aligned to its element size is copied instead.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "loader/safetensors.h"
#include "loader/weight_source.h"

namespace cvllm {

// GGUF-style name ("blk.3.attn_q.weight") -> the checkpoint's name
// ("model.layers.3.self_attn.q_proj.weight"); nullopt for names the architecture does not have.
using HfWeightNameMap = std::function<std::optional<std::string>(const std::string& gguf_name)>;

class HfWeightSource : public WeightSource {
 public:
  HfWeightSource(std::shared_ptr<const SafetensorsCheckpoint> checkpoint, HfWeightNameMap name_map);
  std::string path() const override;
  std::optional<Tensor> find(const std::string& name) const override;
  std::string display_name(const std::string& name) const override;
  const SafetensorsCheckpoint& checkpoint() const { return *checkpoint_; }

 private:
  std::shared_ptr<const SafetensorsCheckpoint> checkpoint_;
  HfWeightNameMap name_map_;
};

}  // namespace cvllm
