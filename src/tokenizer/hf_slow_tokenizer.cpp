#include "tokenizer/hf_slow_tokenizer.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"

namespace cvllm {
namespace {

using json = nlohmann::json;

json parse_object(std::string_view text, const std::string& name) {
  if (text.empty()) return json::object();
  json value;
  try {
    value = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(cat(name, ": malformed JSON: ", e.what()));
  }
  if (!value.is_object()) throw Error(cat(name, ": the top level must be a JSON object"));
  return value;
}

// merges.txt: an optional "#version..." first line, then one "left right" pair per line.
json parse_merges(std::string_view text, const std::string& name) {
  json merges = json::array();
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with("#version")) continue;
    const size_t space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      throw Error(cat(name, ": line ", line_no, " is not a merge of two tokens (\"left right\")"));
    }
    merges.push_back(
        json::array({std::string(line.substr(0, space)), std::string(line.substr(space + 1))}));
  }
  return merges;
}

bool flag(const json& token, const char* key, bool fallback, const std::string& where) {
  auto it = token.find(key);
  if (it == token.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(cat(where, ": '", key, "' must be true or false"));
  return it->get<bool>();
}

json added_entry(int64_t id, const std::string& content, const json& flags, bool special,
                 const std::string& where) {
  return {{"id", id},
          {"content", content},
          {"single_word", flag(flags, "single_word", false, where)},
          {"lstrip", flag(flags, "lstrip", false, where)},
          {"rstrip", flag(flags, "rstrip", false, where)},
          {"normalized", flag(flags, "normalized", !special, where)},
          {"special", special}};
}

// added_tokens_decoder: {"<id>": {"content", "lstrip", "rstrip", "normalized", "single_word",
// "special"}} -> id -> entry.
void add_decoder_tokens(const json& config, const std::string& name, std::map<int64_t, json>& out) {
  auto it = config.find("added_tokens_decoder");
  if (it == config.end() || it->is_null()) return;
  if (!it->is_object()) throw Error(cat(name, ": added_tokens_decoder must be an object"));
  for (const auto& item : it->items()) {
    const std::string where = cat(name, ": added_tokens_decoder[\"", item.key(), "\"]");
    int64_t id = -1;
    if (!item.key().empty() && item.key().size() <= 9 &&
        item.key().find_first_not_of("0123456789") == std::string::npos) {
      id = std::stoll(item.key());
    }
    const json& token = item.value();
    if (id < 0 || !token.is_object() || !token.contains("content") ||
        !token["content"].is_string()) {
      throw Error(cat(where, " needs a decimal id and an object with a string \"content\""));
    }
    out[id] = added_entry(id, token["content"].get<std::string>(), token,
                          flag(token, "special", false, where), where);
  }
}

// The special tokens named by the config (special_tokens_map.json already merged in): a string
// or an AddedToken-like {"content", ...} object each.
void add_special_tokens(const json& config, const json& vocab, const std::string& name,
                        std::map<int64_t, json>& out) {
  std::set<std::string> present;
  for (const auto& [id, entry] : out) present.insert(entry["content"].get<std::string>());
  int64_t next_id = static_cast<int64_t>(vocab.size());
  for (const auto& [id, entry] : out) next_id = std::max(next_id, id + 1);
  auto add = [&](const json& value, const std::string& key) {
    if (value.is_null()) return;
    const std::string where = cat(name, ": ", key);
    json flags = value.is_object() ? value : json::object();
    if (!(value.is_string() ||
          (value.is_object() && value.contains("content") && value["content"].is_string()))) {
      throw Error(cat(where, " must be a string or {\"content\": ...}"));
    }
    const std::string content =
        value.is_string() ? value.get<std::string>() : value["content"].get<std::string>();
    if (!present.insert(content).second) return;
    auto v = vocab.find(content);
    const int64_t id = v != vocab.end() ? v->get<int64_t>() : next_id++;
    out[id] = added_entry(id, content, flags, true, where);
  };
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    if (auto it = config.find(key); it != config.end()) add(*it, key);
  }
  if (auto it = config.find("additional_special_tokens"); it != config.end() && !it->is_null()) {
    if (!it->is_array()) throw Error(cat(name, ": additional_special_tokens must be a list"));
    for (const json& value : *it) add(value, "additional_special_tokens[]");
  }
}

}  // namespace

SlowTokenizerJson gpt2_tokenizer_json_from_slow_files(std::string_view vocab_json,
                                                      std::string_view merges_txt,
                                                      std::string_view tokenizer_config_json,
                                                      std::string_view special_tokens_map_json,
                                                      const std::string& dir_prefix) {
  const std::string config_name = dir_prefix + "tokenizer_config.json";
  json vocab = parse_object(vocab_json, dir_prefix + "vocab.json");
  if (vocab.empty()) throw Error(cat(dir_prefix, "vocab.json: empty vocabulary"));
  for (const auto& item : vocab.items()) {
    if (!item.value().is_number_unsigned() || item.value().get<uint64_t>() > INT32_MAX) {
      throw Error(cat(dir_prefix, "vocab.json: the id of '", item.key(), "' is not a token id"));
    }
  }
  json config = parse_object(tokenizer_config_json, config_name);
  json special_map = parse_object(special_tokens_map_json, dir_prefix + "special_tokens_map.json");
  if (auto it = config.find("tokenizer_class"); it != config.end() && !it->is_null()) {
    const std::string cls = it->is_string() ? it->get<std::string>() : "";
    if (cls != "GPT2Tokenizer" && cls != "GPT2TokenizerFast") {
      throw Error(cat(config_name, ": tokenizer_class '", it->dump(),
                      "' without a tokenizer.json is not supported (only GPT2Tokenizer's "
                      "vocab.json + merges.txt are)"));
    }
  }
  // special_tokens_map.json wins over tokenizer_config.json, as in transformers.
  json merged = config;
  for (auto it = special_map.begin(); it != special_map.end(); ++it) {
    if (!it.value().is_null()) merged[it.key()] = it.value();
  }
  for (const char* key : {"bos_token", "eos_token", "unk_token"}) {
    if (!merged.contains(key)) merged[key] = "<|endoftext|>";
  }
  std::map<int64_t, json> added;
  add_decoder_tokens(config, config_name, added);
  add_special_tokens(merged, vocab, config_name, added);
  json added_list = json::array();
  for (auto& [id, entry] : added) added_list.push_back(std::move(entry));

  const bool add_prefix_space = flag(config, "add_prefix_space", false, config_name);
  json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", add_prefix_space},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  json root = {{"version", "1.0"},
               {"added_tokens", std::move(added_list)},
               {"normalizer", nullptr},
               {"pre_tokenizer", byte_level},
               {"post_processor", nullptr},
               {"decoder",
                {{"type", "ByteLevel"},
                 {"add_prefix_space", true},
                 {"trim_offsets", true},
                 {"use_regex", true}}},
               {"model",
                {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", nullptr},
                 {"continuing_subword_prefix", ""},
                 {"end_of_word_suffix", ""},
                 {"fuse_unk", false},
                 {"byte_fallback", false},
                 {"ignore_merges", false},
                 {"vocab", std::move(vocab)},
                 {"merges", parse_merges(merges_txt, dir_prefix + "merges.txt")}}}};
  try {
    return {root.dump(), merged.dump()};
  } catch (const json::exception&) {  // merges.txt is the only text not checked by a JSON parser
    throw Error(cat(dir_prefix, "merges.txt: not valid UTF-8"));
  }
}

}  // namespace cvllm
