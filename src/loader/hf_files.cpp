#include "loader/hf_files.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loader/safetensors.h"
#include "loader/torch_checkpoint.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::optional<std::string> read_if_exists(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(cat(p.string(), ": cannot open"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json parse_object(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(cat(path, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object()) throw Error(cat(path, ": not a JSON object"));
  return j;
}

std::optional<double> number_field(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number()) throw Error(cat(path, ": field '", key, "' is not a number"));
  return j[key].get<double>();
}

std::optional<int64_t> int_field(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number_integer()) throw Error(cat(path, ": field '", key, "' is not an integer"));
  return j[key].get<int64_t>();
}

}  // namespace

HfGenerationConfig parse_hf_generation_config(const std::string& text, const std::string& path) {
  json j = parse_object(text, path);
  HfGenerationConfig g;
  GenerationDefaults& d = g.defaults;
  // transformers' GenerationConfig defaults; equal values are not in its diff dict.
  if (auto v = number_field(j, "temperature", path); v && *v != 1.0) d.temperature = *v;
  if (auto v = int_field(j, "top_k", path); v && *v != 50) d.top_k = static_cast<int>(*v);
  if (auto v = number_field(j, "top_p", path); v && *v != 1.0) d.top_p = *v;
  if (auto v = number_field(j, "min_p", path)) d.min_p = *v;
  if (auto v = number_field(j, "repetition_penalty", path); v && *v != 1.0)
    d.repetition_penalty = *v;
  if (auto v = int_field(j, "max_new_tokens", path)) {
    if (*v <= 0 || *v > (int64_t{1} << 30))
      throw Error(cat(path, ": max_new_tokens = ", *v, " is out of range"));
    d.max_tokens = static_cast<int>(*v);
  }
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    json list = e.is_array() ? e : json::array({e});
    for (const json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        throw Error(cat(path, ": eos_token_id must be a token id or a list of them"));
      }
      g.eos_token_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  return g;
}

HfGenerationConfig read_hf_generation_config(const std::string& dir) {
  fs::path p = fs::path(dir) / "generation_config.json";
  std::optional<std::string> text = read_if_exists(p);
  return text ? parse_hf_generation_config(*text, p.string()) : HfGenerationConfig{};
}

std::optional<std::string> read_hf_chat_template(const std::string& dir) {
  if (std::optional<std::string> t = read_if_exists(fs::path(dir) / "chat_template.jinja"))
    return t;
  fs::path p = fs::path(dir) / "tokenizer_config.json";
  std::optional<std::string> text = read_if_exists(p);
  if (!text) return std::nullopt;
  json j = parse_object(*text, p.string());
  if (!j.contains("chat_template") || j["chat_template"].is_null()) return std::nullopt;
  const json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const json& entry : t) {
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" &&
          entry.contains("template") && entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return std::nullopt;
  }
  throw Error(cat(p.string(), ": chat_template is neither a string nor a list of templates"));
}

std::unique_ptr<WeightSource> open_hf_weights(const std::string& dir, HfWeightNameMap name_map) {
  std::error_code ec;
  auto has = [&](const char* name) { return fs::is_regular_file(fs::path(dir) / name, ec); };
  if (has("model.safetensors.index.json") || has("model.safetensors")) {
    auto checkpoint =
        std::make_shared<const SafetensorsCheckpoint>(SafetensorsCheckpoint::open_dir(dir));
    return std::make_unique<HfWeightSource>(std::move(checkpoint), std::move(name_map));
  }
  if (has("pytorch_model.bin.index.json") || has("pytorch_model.bin")) {
    auto checkpoint = std::make_shared<const TorchCheckpoint>(TorchCheckpoint::open_dir(dir));
    return std::make_unique<TorchWeightSource>(std::move(checkpoint), std::move(name_map));
  }
  throw Error(cat(dir, ": no weights in the directory (looked for model.safetensors, "
                       "model.safetensors.index.json, pytorch_model.bin and "
                       "pytorch_model.bin.index.json)"));
}

}  // namespace cvllm
