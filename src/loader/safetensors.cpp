#include "loader/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/mapped_file.h"

namespace cvllm {
namespace {

using nlohmann::json;

struct SafetensorsDType {
  std::string_view name;
  DType dtype;
};

constexpr SafetensorsDType kSupportedDTypes[] = {
    {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}};


uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

DType parse_dtype(const std::string& file, const std::string& tensor, const json& value) {
  if (!value.is_string()) throw Error(cat(file, ": tensor '", tensor, "': dtype is not a string"));
  const std::string& name = value.get_ref<const std::string&>();
  for (const SafetensorsDType& d : kSupportedDTypes) {
    if (d.name == name) return d.dtype;
  }
  throw Error(cat(file, ": tensor '", tensor, "' has dtype '", name,
                  "', which is not supported (supported: F32, F16, BF16)"));
}

std::vector<int64_t> parse_shape(const std::string& file, const std::string& tensor,
                                 const json& value, int64_t* num_elements) {
  if (!value.is_array()) throw Error(cat(file, ": tensor '", tensor, "': shape is not an array"));
  if (value.size() > kSafetensorsMaxDims) {
    throw Error(cat(file, ": tensor '", tensor, "' has ", value.size(), " dimensions (at most ",
                    kSafetensorsMaxDims, " are supported)"));
  }
  std::vector<int64_t> shape;
  int64_t n = 1;
  for (const json& d : value) {
    if (!d.is_number_unsigned()) {
      throw Error(
          cat(file, ": tensor '", tensor, "': shape entries must be non-negative integers"));
    }
    uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (dim != 0 && static_cast<uint64_t>(n) >
                         static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim)) {
      throw Error(cat(file, ": tensor '", tensor, "': element count overflows"));
    }
    n *= static_cast<int64_t>(dim);
    shape.push_back(static_cast<int64_t>(dim));
  }
  *num_elements = n;
  return shape;
}

void parse_offsets(const std::string& file, const std::string& tensor, const json& value,
                   SafetensorsTensorInfo& info) {
  if (!value.is_array() || value.size() != 2 || !value[0].is_number_unsigned() ||
      !value[1].is_number_unsigned()) {
    throw Error(
        cat(file, ": tensor '", tensor, "': data_offsets must be two non-negative integers"));
  }
  info.begin = value[0].get<uint64_t>();
  info.end = value[1].get<uint64_t>();
  if (info.end < info.begin) {
    throw Error(cat(file, ": tensor '", tensor, "': data_offsets [", info.begin, ", ", info.end,
                    "] end before they begin"));
  }
}

SafetensorsTensorInfo parse_entry(const std::string& file, const std::string& name, const json& e) {
  if (!e.is_object()) throw Error(cat(file, ": tensor '", name, "': entry is not an object"));
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) throw Error(cat(file, ": tensor '", name, "': missing '", key, "'"));
  }
  for (const auto& item : e.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      throw Error(cat(file, ": tensor '", name, "': unknown key '", item.key(), "'"));
    }
  }
  SafetensorsTensorInfo info;
  info.name = name;
  info.dtype = parse_dtype(file, name, e["dtype"]);
  int64_t num_elements = 0;
  info.shape = parse_shape(file, name, e["shape"], &num_elements);
  parse_offsets(file, name, e["data_offsets"], info);
  uint64_t elem_size = static_cast<uint64_t>(traits(info.dtype).type_size);
  uint64_t expected = static_cast<uint64_t>(num_elements);
  if (expected > std::numeric_limits<uint64_t>::max() / elem_size) {
    throw Error(cat(file, ": tensor '", name, "': byte size overflows"));
  }
  expected *= elem_size;
  if (info.end - info.begin != expected) {
    throw Error(cat(file, ": tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
                    ") hold ", info.end - info.begin, " bytes, but its shape and dtype need ",
                    expected));
  }
  return info;
}

void parse_metadata(const std::string& file, const json& value,
                    std::map<std::string, std::string>& out) {
  if (!value.is_object()) throw Error(cat(file, ": __metadata__ is not an object"));
  for (const auto& item : value.items()) {
    if (!item.value().is_string()) {
      throw Error(cat(file, ": __metadata__ value of '", item.key(), "' is not a string"));
    }
    out[item.key()] = item.value().get<std::string>();
  }
}

}  // namespace

int64_t SafetensorsTensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void SafetensorsFile::parse_all() {
  if (size_ < 8)
    throw Error(cat(name_, ": file of ", size_, " bytes is too short for a safetensors header"));
  uint64_t header_len = read_u64_le(data_);
  if (header_len > kSafetensorsMaxHeaderBytes) {
    throw Error(cat(name_, ": header length ", header_len, " exceeds the limit of ",
                    kSafetensorsMaxHeaderBytes, " bytes"));
  }
  if (header_len > size_ - 8) {
    throw Error(cat(name_, ": header length ", header_len, " runs past the end of the file (",
                    size_, " bytes)"));
  }
  data_offset_ = 8 + static_cast<size_t>(header_len);
  std::string_view text(reinterpret_cast<const char*>(data_ + 8), header_len);
  json header = parse_checkpoint_json(name_, text, "header");
  if (!header.is_object()) throw Error(cat(name_, ": header is not a JSON object"));

  const uint64_t data_size = size_ - data_offset_;
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      parse_metadata(name_, item.value(), metadata_);
      continue;
    }
    SafetensorsTensorInfo info = parse_entry(name_, item.key(), item.value());
    if (info.end > data_size) {
      throw Error(cat(name_, ": tensor '", info.name, "': data_offsets [", info.begin, ", ",
                      info.end, ") run past the data section (", data_size, " bytes)"));
    }
    tensors_.push_back(std::move(info));
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < tensors_.size(); ++i) {
    const SafetensorsTensorInfo& prev = tensors_[i - 1];
    if (tensors_[i].begin < prev.end) {
      throw Error(cat(name_, ": tensors '", prev.name, "' and '", tensors_[i].name,
                      "' overlap in the data section"));
    }
  }
  for (size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
}

const uint8_t* SafetensorsFile::tensor_data(const SafetensorsTensorInfo& info) const {
  return data_ + data_offset_ + info.begin;
}

}  // namespace cvllm
