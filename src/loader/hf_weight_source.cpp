#include "loader/hf_weight_source.h"

#include <cstdint>
#include <cstring>

#include "util/error.h"

namespace cvllm {

HfWeightSource::HfWeightSource(std::shared_ptr<const SafetensorsCheckpoint> checkpoint,
                               HfWeightNameMap name_map)
    : checkpoint_(std::move(checkpoint)), name_map_(std::move(name_map)) {}

std::string HfWeightSource::path() const {
  return checkpoint_->path();
}

std::optional<Tensor> HfWeightSource::find(const std::string& name) const {
  std::optional<std::string> hf_name = name_map_(name);
  if (!hf_name) return std::nullopt;
  auto [info, file] = checkpoint_->find(*hf_name);
  if (info == nullptr) return std::nullopt;
  const uint8_t* data = file->tensor_data(*info);
  const auto elem_size = static_cast<uintptr_t>(traits(info->dtype).type_size);
  if (reinterpret_cast<uintptr_t>(data) % elem_size == 0) {
    return Tensor::view(static_cast<const void*>(data), info->dtype, info->shape);
  }
  // Kernels read whole elements: a misaligned tensor (allowed by the format, rare) gets a copy.
  Tensor copy = Tensor::empty(info->dtype, info->shape);
  std::memcpy(copy.data(), data, info->end - info->begin);
  return copy;
}

std::string HfWeightSource::display_name(const std::string& name) const {
  std::optional<std::string> hf_name = name_map_(name);
  return hf_name ? cat("'", *hf_name, "' (", name, ")")
                 : cat("'", name, "' (no Hugging Face name)");
}

}  // namespace cvllm
