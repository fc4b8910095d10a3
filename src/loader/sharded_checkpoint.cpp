#include "loader/sharded_checkpoint.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace cvllm {
namespace {

// JSON nesting depth outside strings.
int max_json_depth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

nlohmann::json parse_checkpoint_json(const std::string& file, std::string_view text,
                                     const char* what) {
  if (max_json_depth(text) > kMaxCheckpointJsonDepth) {
    throw Error(cat(file, ": ", what, " nests deeper than ", kMaxCheckpointJsonDepth, " levels"));
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(file, ": ", what, " is not valid JSON: ", e.what()));
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat(path, ": cannot open"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::pair<std::string, std::string>> read_weight_map(const std::string& index_json,
                                                                 const std::string& index_name) {
  nlohmann::json index = parse_checkpoint_json(index_name, index_json, "index");
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw Error(cat(index_name, ": index has no \"weight_map\" object"));
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : index["weight_map"].items()) {
    if (!item.value().is_string()) {
      throw Error(cat(index_name, ": weight_map entry '", item.key(), "' is not a file name"));
    }
    const std::string& shard = item.value().get_ref<const std::string&>();
    // Shards live next to the index: no directories, so the index cannot point elsewhere.
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos) {
      throw Error(cat(index_name, ": weight_map entry '", item.key(), "' names shard '", shard,
                      "', which is not a plain file name"));
    }
    out.emplace_back(item.key(), shard);
  }
  return out;
}

}  // namespace cvllm
