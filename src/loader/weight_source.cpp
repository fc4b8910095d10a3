#include "loader/weight_source.h"

#include "loader/gguf.h"
#include "tensor/half.h"
#include "util/error.h"

namespace cvllm {

Tensor WeightSource::get(const std::string& name,
                         const std::vector<int64_t>& expected_shape) const {
  std::optional<Tensor> t = find(name);
  if (!t) throw Error(cat(path(), ": missing tensor ", display_name(name)));
  if (t->shape() != expected_shape) {
    Tensor expected = Tensor::view(static_cast<const void*>(nullptr), t->dtype(), expected_shape);
    throw Error(cat(path(), ": tensor ", display_name(name), " has shape ", t->describe(),
                    ", expected ", expected.describe()));
  }
  return *t;
}

Tensor WeightSource::get_f32(const std::string& name,
                             const std::vector<int64_t>& expected_shape) const {
  Tensor t = get(name, expected_shape);
  if (t.dtype() == DType::kF32) return t;
  if (t.dtype() != DType::kF16 && t.dtype() != DType::kBF16) {
    throw Error(cat(path(), ": tensor ", display_name(name), " must be f32, f16 or bf16, got ",
                    t.describe()));
  }
  Tensor out = Tensor::empty(DType::kF32, t.shape());
  const uint16_t* src = t.data_as<const uint16_t>();
  float* dst = out.data_as<float>();
  const bool is_f16 = t.dtype() == DType::kF16;
  for (int64_t i = 0; i < t.numel(); ++i)
    dst[i] = is_f16 ? f16_to_f32(src[i]) : bf16_to_f32(src[i]);
  return out;
}

GgufWeightSource::GgufWeightSource(std::shared_ptr<const GgufFile> file) : file_(std::move(file)) {}

std::string GgufWeightSource::path() const {
  return file_->path();
}

std::optional<Tensor> GgufWeightSource::find(const std::string& name) const {
  const GgufTensorInfo* info = file_->find_tensor(name);
  if (info == nullptr) return std::nullopt;
  std::vector<int64_t> shape(info->shape.rbegin(), info->shape.rend());
  return Tensor::view(static_cast<const void*>(file_->tensor_data(*info)), info->dtype, shape);
}

}  // namespace cvllm
