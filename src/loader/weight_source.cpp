#include "loader/weight_source.h"

#include "loader/gguf.h"
#include "util/error.h"

namespace cvllm {

Tensor WeightSource::get(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  std::optional<Tensor> t = find(name);
  if (!t) throw Error(cat(path(), ": missing tensor '", name, "'"));
  if (t->shape() != expected_shape) {
    Tensor expected = Tensor::view(static_cast<const void*>(nullptr), t->dtype(), expected_shape);
    throw Error(cat(path(), ": tensor '", name, "' has shape ", t->describe(), ", expected ",
                    expected.describe()));
  }
  return *t;
}

GgufWeightSource::GgufWeightSource(std::shared_ptr<const GgufFile> file) : file_(std::move(file)) {}

std::string GgufWeightSource::path() const { return file_->path(); }

std::optional<Tensor> GgufWeightSource::find(const std::string& name) const {
  const GgufTensorInfo* info = file_->find_tensor(name);
  if (info == nullptr) return std::nullopt;
  std::vector<int64_t> shape(info->shape.rbegin(), info->shape.rend());
  return Tensor::view(static_cast<const void*>(file_->tensor_data(*info)), info->dtype, shape);
}

}  // namespace cvllm
