// WeightSource: named weights of a checkpoint as host tensor views, whatever the file format.
// Models ask for weights by their GGUF-style name and shape; a source that stores other names
// (Hugging Face safetensors) maps them. Shapes are outermost-first: a linear weight is [out, in].
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace cvllm {

class GgufFile;

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::string path() const = 0;
  virtual std::optional<Tensor> find(const std::string& name) const = 0;

  // The named weight; throws Error naming the file when it is missing or its shape differs.
  Tensor get(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  bool contains(const std::string& name) const { return find(name).has_value(); }
  // How errors name a weight: "'blk.0.attn_q.weight'", plus the file's own name where it differs.
  virtual std::string display_name(const std::string& name) const { return "'" + name + "'"; }
  // get(), converted to an owned f32 copy when stored as f16/bf16 (norm weights and biases,
  // which the kernels read as f32). Other dtypes throw Error naming the weight.
  Tensor get_f32(const std::string& name, const std::vector<int64_t>& expected_shape) const;
};

// Weights of a GGUF file, used in place from its memory map. GGUF lists dims innermost-first;
// they are reversed here.
class GgufWeightSource : public WeightSource {
 public:
  explicit GgufWeightSource(std::shared_ptr<const GgufFile> file);
  std::string path() const override;
  std::optional<Tensor> find(const std::string& name) const override;
  const GgufFile& file() const { return *file_; }

 private:
  std::shared_ptr<const GgufFile> file_;
};

}  // namespace cvllm
