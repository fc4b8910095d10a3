// tokenizer.json -> Tokenizer. The file's components map onto our machinery as follows:
//   model            BPE only (vocab, merges as "a b" or ["a", "b"], byte_fallback, unk_token,
//                    fuse_unk, ignore_merges, continuing_subword_prefix, end_of_word_suffix)
//   normalizer       NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence
//   pre_tokenizer    ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace,
//                    WhitespaceSplit, CharDelimiterSplit, BertPreTokenizer, Sequence
//   post_processor   TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence:
//                    reduced to the ids put before and after a single sequence
//   decoder          ByteLevel (byte-level decoding), or a chain of Replace / ByteFallback / Fuse /
//                    Strip(" ", 1, 0) after Fuse / Metaspace (sentencepiece decoding); none at all
//                    means tokens joined by spaces, as `tokenizers` does
// Anything else is an Error naming the component. tokenizer_config.json / special_tokens_map.json
// give the bos/eos/unk/pad token strings (the latter file wins, as in transformers) and, when
// either add_bos_token or add_eos_token is present (or the file has no post-processor), replace the
// post-processor with "[bos] $A [eos]" as the flags say (transformers' update_post_processor).
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/byte_level.h"
#include "tokenizer/hf_slow_tokenizer.h"
#include "tokenizer/hf_pipeline.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/utf8.h"

namespace cvllm {

namespace {

using json = nlohmann::json;

constexpr int kMaxNesting = 32;  // Sequence inside Sequence ...: real files use one level

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(cat(path, ": read failed"));
  out = buffer.str();
  return true;
}

int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(s[3]), lo = hex(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  size_t pos = 0;
  for (size_t hit = s.find(from); hit != std::string_view::npos; hit = s.find(from, pos)) {
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// How the decoder chain maps onto Tokenizer's two decoding modes.
struct DecoderSpec {
  bool byte_level = false;
  bool byte_fallback = false;
  bool strip_leading_space = false;
  std::string strip_marker;      // Metaspace: strip only when the first token starts with it
  bool join_with_space = false;  // no decoder: tokens joined by " "
  std::vector<std::pair<std::string, std::string>> replacements;  // per token, in order
};

}  // namespace

class Tokenizer::HfLoader {
 public:
  HfLoader(Tokenizer& t, std::string_view source) : t_(t), source_(source) {}

  void load(const json& root, const json& config);

 private:
  [[noreturn]] void fail(std::string_view what) const { throw Error(cat(source_, ": ", what)); }

  const json& member(const json& obj, std::string_view where, const char* key) const;
  std::string string_member(const json& obj, std::string_view where, const char* key,
                            std::optional<std::string> fallback = std::nullopt) const;
  bool bool_member(const json& obj, std::string_view where, const char* key, bool fallback) const;
  std::string type_of(const json& obj, std::string_view where) const;
  // {"String": s} or {"Regex": r} -> (text, is_regex)
  std::pair<std::string, bool> pattern_of(const json& obj, std::string_view where) const;
  SplitBehavior behavior_of(const json& obj, std::string_view where) const;

  void load_vocab(const json& model, const json& added_tokens);
  void load_merges(const json& model);
  void load_model_options(const json& model);
  void add_normalizer(const json& node, int depth);
  void add_pre_tokenizer(const json& node, int depth);
  void add_post_processor(const json& node, int depth, std::vector<int32_t>& prefix,
                          std::vector<int32_t>& suffix);
  void add_decoder(const json& node, int depth, bool& fused, DecoderSpec& spec);
  void load_added_tokens(const json& added_tokens);
  void load_special_tokens(const json& config, bool has_post_processor);
  void build_decode_tables(const DecoderSpec& spec);

  Tokenizer& t_;
  std::string source_;
  HfPipeline* hf_ = nullptr;
};

const json& Tokenizer::HfLoader::member(const json& obj, std::string_view where,
                                        const char* key) const {
  auto it = obj.find(key);
  if (it == obj.end()) fail(cat(where, ": missing \"", key, "\""));
  return *it;
}

std::string Tokenizer::HfLoader::string_member(const json& obj, std::string_view where,
                                               const char* key,
                                               std::optional<std::string> fallback) const {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail(cat(where, ": missing \"", key, "\""));
  }
  if (!it->is_string()) fail(cat(where, ".", key, " must be a string"));
  return it->get<std::string>();
}

bool Tokenizer::HfLoader::bool_member(const json& obj, std::string_view where, const char* key,
                                      bool fallback) const {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(cat(where, ".", key, " must be true or false"));
  return it->get<bool>();
}

std::string Tokenizer::HfLoader::type_of(const json& obj, std::string_view where) const {
  if (!obj.is_object()) fail(cat(where, " must be an object"));
  return string_member(obj, where, "type");
}

std::pair<std::string, bool> Tokenizer::HfLoader::pattern_of(const json& obj,
                                                             std::string_view where) const {
  const json& p = member(obj, where, "pattern");
  if (p.is_object() && p.size() == 1) {
    if (p.contains("String") && p["String"].is_string()) return {p["String"], false};
    if (p.contains("Regex") && p["Regex"].is_string()) return {p["Regex"], true};
  }
  fail(cat(where, ".pattern must be {\"String\": ...} or {\"Regex\": ...}"));
}

SplitBehavior Tokenizer::HfLoader::behavior_of(const json& obj, std::string_view where) const {
  std::string b = string_member(obj, where, "behavior", "Isolated");
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  fail(cat(where, ": unsupported split behavior '", b, "'"));
}

void Tokenizer::HfLoader::load(const json& root, const json& config) {
  if (!root.is_object()) fail("the top level must be a JSON object");
  t_.hf_ = std::make_unique<HfPipeline>();
  hf_ = t_.hf_.get();
  const json& model = member(root, "tokenizer.json", "model");
  if (!model.is_object()) fail("model must be an object");
  std::string type = model.contains("type")     ? type_of(model, "model")
                     : model.contains("merges") ? "BPE"
                                                : "";
  if (type != "BPE") {
    fail(cat("unsupported model type '", type, "' (supported: BPE)"));
  }
  json no_tokens = json::array();
  auto added_it = root.find("added_tokens");
  const json& added = added_it == root.end() || added_it->is_null() ? no_tokens : *added_it;
  if (!added.is_array()) fail("added_tokens must be an array");

  load_vocab(model, added);
  load_model_options(model);
  load_merges(model);
  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    add_normalizer(*it, 0);
  }
  if (auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null()) {
    add_pre_tokenizer(*it, 0);
  }
  load_added_tokens(added);

  bool has_post_processor = false;
  if (auto it = root.find("post_processor"); it != root.end() && !it->is_null()) {
    has_post_processor = true;
    add_post_processor(*it, 0, t_.prefix_ids_, t_.suffix_ids_);
  }
  DecoderSpec spec;
  if (auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
    bool fused = false;
    add_decoder(*it, 0, fused, spec);
  } else {
    spec.join_with_space = true;
  }
  load_special_tokens(config, has_post_processor);
  build_decode_tables(spec);
}

void Tokenizer::HfLoader::load_vocab(const json& model, const json& added_tokens) {
  const json& vocab = member(model, "model", "vocab");
  if (!vocab.is_object()) fail("model.vocab must be an object (token -> id)");
  std::vector<std::pair<std::string, int32_t>> entries;
  entries.reserve(vocab.size());
  int64_t max_id = -1;
  auto check_id = [&](const json& id, std::string_view where) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      fail(cat(where, ": token ids must be non-negative integers"));
    }
    max_id = std::max(max_id, id.get<int64_t>());
    return static_cast<int32_t>(id.get<int64_t>());
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    entries.emplace_back(it.key(), check_id(it.value(), "model.vocab"));
  }
  for (const json& token : added_tokens) {
    if (!token.is_object()) fail("added_tokens entries must be objects");
    check_id(member(token, "added_tokens[]", "id"), "added_tokens[].id");
  }
  const size_t num_entries = entries.size() + added_tokens.size();
  if (max_id < 0) fail("the vocabulary is empty");
  // Ids are dense in real files; a far larger id would make us allocate for nothing.
  if (static_cast<size_t>(max_id) >= 2 * num_entries + 1024) {
    fail(cat("token id ", max_id, " is far beyond the ", num_entries, " tokens in the file"));
  }
  const size_t n = static_cast<size_t>(max_id) + 1;
  t_.pieces_.assign(n, std::string());
  t_.types_.assign(n, TokenType::kUnused);
  t_.scores_.assign(n, 0.0f);
  for (const auto& [text, id] : entries) {
    t_.pieces_[id] = text;
    t_.types_[id] = TokenType::kNormal;
  }
  // Added tokens own their ids' text (HF id_to_token looks at added tokens first).
  for (const json& token : added_tokens) {
    int32_t id = token["id"].get<int32_t>();
    t_.pieces_[id] = string_member(token, "added_tokens[]", "content");
  }
  // model_index_ holds views: into pieces_, or into stable copies for the strings whose id shows
  // another text (an added token took it over, or two strings share the id).
  std::deque<std::string>& shadowed = hf_->shadowed_pieces;
  for (auto& [text, id] : entries) {
    if (text.empty()) continue;
    if (t_.pieces_[id] == text) {
      t_.model_index_[t_.pieces_[id]] = id;
    } else {
      shadowed.push_back(std::move(text));
      t_.model_index_[shadowed.back()] = id;
    }
  }
}

void Tokenizer::HfLoader::load_model_options(const json& model) {
  hf_->byte_fallback = bool_member(model, "model", "byte_fallback", false);
  hf_->fuse_unk = bool_member(model, "model", "fuse_unk", false);
  hf_->ignore_merges = bool_member(model, "model", "ignore_merges", false);
  hf_->continuing_subword_prefix = string_member(model, "model", "continuing_subword_prefix", "");
  hf_->end_of_word_suffix = string_member(model, "model", "end_of_word_suffix", "");
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0) {
      fail("model.dropout is not supported (BPE dropout makes encoding random)");
    }
  }
  std::string unk = string_member(model, "model", "unk_token", "");
  if (!unk.empty()) {
    if (auto it = t_.model_index_.find(unk); it != t_.model_index_.end()) hf_->unk = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    static const char kHex[] = "0123456789ABCDEF";
    auto it = t_.model_index_.find(cat("<0x", kHex[b >> 4], kHex[b & 15], ">"));
    hf_->byte_token[b] = it == t_.model_index_.end() ? -1 : it->second;
  }
}

void Tokenizer::HfLoader::load_merges(const json& model) {
  auto it = model.find("merges");
  if (it == model.end() || it->is_null()) return;
  if (!it->is_array()) fail("model.merges must be an array");
  const std::string& prefix = hf_->continuing_subword_prefix;
  size_t num_ignored = 0;
  bool marker_inside = false;  // a merge result with "▁" right after another character
  constexpr std::string_view kMarker = "\xE2\x96\x81";
  for (const json& merge : *it) {
    std::string left, right;
    if (merge.is_string()) {
      const std::string& s = merge.get_ref<const std::string&>();
      size_t sep = s.find(' ', 1);
      if (sep == std::string::npos) {
        ++num_ignored;
        continue;
      }
      left = s.substr(0, sep);
      right = s.substr(sep + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      fail("model.merges entries must be \"a b\" strings or [\"a\", \"b\"] pairs");
    }
    std::string result = left;
    result += std::string_view(right).substr(
        !prefix.empty() && right.compare(0, prefix.size(), prefix) == 0 ? prefix.size() : 0);
    auto l = t_.model_index_.find(left), r = t_.model_index_.find(right);
    auto m = t_.model_index_.find(result);
    if (l == t_.model_index_.end() || r == t_.model_index_.end() || m == t_.model_index_.end()) {
      ++num_ignored;
      continue;
    }
    t_.merges_.add(l->second, r->second, m->second);
    for (size_t pos = result.find(kMarker, 1); pos != std::string::npos && !marker_inside;
         pos = result.find(kMarker, pos + 1)) {
      marker_inside = pos < kMarker.size() ||
                      result.compare(pos - kMarker.size(), kMarker.size(), kMarker) != 0;
    }
  }
  if (num_ignored > 0) {
    LOG_WARNING(source_, ": ignored ", num_ignored,
                " merges that are malformed or name tokens missing from the vocabulary");
  }
  hf_->split_at_marker = !marker_inside && !hf_->ignore_merges && prefix.empty() &&
                         hf_->end_of_word_suffix.empty() && t_.model_index_.count(kMarker) > 0;
}

void Tokenizer::HfLoader::add_normalizer(const json& node, int depth) {
  if (depth > kMaxNesting) fail("normalizer: nested too deeply");
  std::string type = type_of(node, "normalizer");
  Normalizer& n = hf_->normalizer;
  if (type == "Sequence") {
    const json& list = member(node, "normalizer", "normalizers");
    if (!list.is_array()) fail("normalizer.normalizers must be an array");
    for (const json& child : list) add_normalizer(child, depth + 1);
  } else if (type == "NFC") {
    n.add_form(Normalizer::Kind::kNfc);
  } else if (type == "NFD") {
    n.add_form(Normalizer::Kind::kNfd);
  } else if (type == "NFKC") {
    n.add_form(Normalizer::Kind::kNfkc);
  } else if (type == "NFKD") {
    n.add_form(Normalizer::Kind::kNfkd);
  } else if (type == "Lowercase") {
    n.add_form(Normalizer::Kind::kLowercase);
  } else if (type == "Prepend") {
    n.add_prepend(string_member(node, "normalizer Prepend", "prepend"));
  } else if (type == "Replace") {
    auto [pattern, is_regex] = pattern_of(node, "normalizer Replace");
    n.add_replace(pattern, is_regex, string_member(node, "normalizer Replace", "content"));
  } else if (type == "Strip") {
    n.add_strip(bool_member(node, "normalizer Strip", "strip_left", true),
                bool_member(node, "normalizer Strip", "strip_right", true));
  } else {
    fail(cat("unsupported normalizer '", type,
             "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)"));
  }
}

void Tokenizer::HfLoader::add_pre_tokenizer(const json& node, int depth) {
  if (depth > kMaxNesting) fail("pre_tokenizer: nested too deeply");
  std::string type = type_of(node, "pre_tokenizer");
  HfPreTokenizer& p = hf_->pre_tokenizer;
  using CharClass = HfPreTokenizer::CharClass;
  if (type == "Sequence") {
    const json& list = member(node, "pre_tokenizer", "pretokenizers");
    if (!list.is_array()) fail("pre_tokenizer.pretokenizers must be an array");
    for (const json& child : list) add_pre_tokenizer(child, depth + 1);
  } else if (type == "ByteLevel") {
    p.add_byte_level(bool_member(node, "pre_tokenizer ByteLevel", "add_prefix_space", true),
                     bool_member(node, "pre_tokenizer ByteLevel", "use_regex", true));
  } else if (type == "Split") {
    auto [pattern, is_regex] = pattern_of(node, "pre_tokenizer Split");
    SplitBehavior behavior = behavior_of(node, "pre_tokenizer Split");
    bool invert = bool_member(node, "pre_tokenizer Split", "invert", false);
    if (is_regex) {
      p.add_split_regex(pattern, behavior, invert);
    } else {
      p.add_split_literal(pattern, behavior, invert);
    }
  } else if (type == "Metaspace") {
    const char* where = "pre_tokenizer Metaspace";
    std::string replacement = string_member(node, where, "replacement", "\xE2\x96\x81");
    if (replacement.empty() || utf8::sequence_length(static_cast<uint8_t>(replacement[0])) !=
                                   static_cast<int>(replacement.size())) {
      fail("pre_tokenizer Metaspace: replacement must be one character");
    }
    PrependScheme scheme = bool_member(node, where, "add_prefix_space", true)
                               ? PrependScheme::kAlways
                               : PrependScheme::kNever;
    if (node.contains("prepend_scheme")) {
      std::string s = string_member(node, where, "prepend_scheme");
      if (s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (s == "always") {
        scheme = PrependScheme::kAlways;
      } else if (s == "never") {
        scheme = PrependScheme::kNever;
      } else {
        fail(cat(where, ": unsupported prepend_scheme '", s, "'"));
      }
    }
    p.add_metaspace(replacement, scheme, bool_member(node, where, "split", true));
  } else if (type == "Digits") {
    bool individual = bool_member(node, "pre_tokenizer Digits", "individual_digits", false);
    p.add_split_chars(CharClass::kNumeric,
                      individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false);
  } else if (type == "Punctuation") {
    p.add_split_chars(CharClass::kPunctuation, behavior_of(node, "pre_tokenizer Punctuation"),
                      false);
  } else if (type == "Whitespace") {
    // \w+|[^\w\s]+ kept, the rest (whitespace) removed.
    p.add_split_regex(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, /*invert=*/true);
  } else if (type == "WhitespaceSplit") {
    p.add_split_chars(CharClass::kWhiteSpace, SplitBehavior::kRemoved, false);
  } else if (type == "BertPreTokenizer") {
    p.add_split_chars(CharClass::kWhiteSpace, SplitBehavior::kRemoved, false);
    p.add_split_chars(CharClass::kPunctuation, SplitBehavior::kIsolated, false);
  } else if (type == "CharDelimiterSplit") {
    std::string delimiter = string_member(node, "pre_tokenizer CharDelimiterSplit", "delimiter");
    if (delimiter.empty()) fail("pre_tokenizer CharDelimiterSplit: empty delimiter");
    p.add_split_literal(delimiter, SplitBehavior::kRemoved, false);
  } else {
    fail(cat("unsupported pre_tokenizer '", type,
             "' (supported: ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace, "
             "WhitespaceSplit, CharDelimiterSplit, BertPreTokenizer, Sequence)"));
  }
}

void Tokenizer::HfLoader::add_post_processor(const json& node, int depth,
                                             std::vector<int32_t>& prefix,
                                             std::vector<int32_t>& suffix) {
  if (depth > kMaxNesting) fail("post_processor: nested too deeply");
  std::string type = type_of(node, "post_processor");
  if (type == "Sequence") {
    const json& list = member(node, "post_processor", "processors");
    if (!list.is_array()) fail("post_processor.processors must be an array");
    // Each processor wraps what the ones before it produced.
    for (const json& child : list) {
      std::vector<int32_t> p, s;
      add_post_processor(child, depth + 1, p, s);
      prefix.insert(prefix.begin(), p.begin(), p.end());
      suffix.insert(suffix.end(), s.begin(), s.end());
    }
  } else if (type == "ByteLevel") {
    // Only adjusts offsets.
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json& pair = member(node, "post_processor", key);
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() ||
          !pair[1].is_number_integer()) {
        fail(cat("post_processor.", key, " must be [token, id]"));
      }
      int64_t id = pair[1].get<int64_t>();
      if (id < 0 || id >= t_.vocab_size()) fail(cat("post_processor.", key, ": id out of range"));
      (std::string_view(key) == "cls" ? prefix : suffix).push_back(static_cast<int32_t>(id));
    }
  } else if (type == "TemplateProcessing") {
    const json& single = member(node, "post_processor", "single");
    const json& specials = member(node, "post_processor", "special_tokens");
    if (!single.is_array() || !specials.is_object()) {
      fail("post_processor TemplateProcessing: single must be a list, special_tokens an object");
    }
    bool seen_sequence = false;
    for (const json& item : single) {
      if (!item.is_object() || item.size() != 1) fail("post_processor: bad template item");
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const json& special = member(item, "post_processor template item", "SpecialToken");
      if (!special.is_object()) fail("post_processor: bad template item");
      std::string name = string_member(special, "post_processor SpecialToken", "id");
      auto it = specials.find(name);
      if (it == specials.end() || !it->is_object()) {
        fail(cat("post_processor: special token '", name, "' is not in special_tokens"));
      }
      const json& ids = member(*it, "post_processor special_tokens", "ids");
      if (!ids.is_array()) fail("post_processor special_tokens: ids must be a list");
      for (const json& id : ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() >= t_.vocab_size()) {
          fail(cat("post_processor: special token '", name, "' has an id out of range"));
        }
        (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
      }
    }
  } else {
    fail(cat("unsupported post_processor '", type,
             "' (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, "
             "Sequence)"));
  }
}

void Tokenizer::HfLoader::add_decoder(const json& node, int depth, bool& fused, DecoderSpec& spec) {
  if (depth > kMaxNesting) fail("decoder: nested too deeply");
  std::string type = type_of(node, "decoder");
  auto unsupported_mix = [&] { fail(cat("decoder: unsupported combination with ", type)); };
  if (type == "Sequence") {
    const json& list = member(node, "decoder", "decoders");
    if (!list.is_array()) fail("decoder.decoders must be an array");
    for (const json& child : list) add_decoder(child, depth + 1, fused, spec);
    return;
  }
  if (spec.byte_level) fail(cat("decoder: unsupported ", type, " after ByteLevel"));
  if (type == "ByteLevel") {
    if (spec.byte_fallback || spec.strip_leading_space || !spec.replacements.empty() || fused) {
      unsupported_mix();
    }
    spec.byte_level = true;
  } else if (type == "Replace") {
    auto [pattern, is_regex] = pattern_of(node, "decoder Replace");
    if (is_regex) fail("decoder Replace: regex patterns are not supported");
    spec.replacements.emplace_back(pattern, string_member(node, "decoder Replace", "content"));
  } else if (type == "ByteFallback") {
    if (fused) unsupported_mix();
    spec.byte_fallback = true;
  } else if (type == "Fuse") {
    fused = true;
  } else if (type == "Strip") {
    std::string content = string_member(node, "decoder Strip", "content", " ");
    const json& start = member(node, "decoder Strip", "start");
    const json& stop = member(node, "decoder Strip", "stop");
    if (!fused || content != " " || !start.is_number_integer() || !stop.is_number_integer() ||
        start.get<int64_t>() > 1 || start.get<int64_t>() < 0 || stop.get<int64_t>() != 0) {
      fail("decoder Strip: only Strip(\" \", start<=1, stop=0) after Fuse is supported");
    }
    spec.strip_leading_space = spec.strip_leading_space || start.get<int64_t>() == 1;
    spec.strip_marker.clear();  // strips the whole text's leading space
  } else if (type == "Metaspace") {
    const char* where = "decoder Metaspace";
    std::string replacement = string_member(node, where, "replacement", "\xE2\x96\x81");
    bool prepend = bool_member(node, where, "add_prefix_space", true);
    if (node.contains("prepend_scheme")) {
      prepend = string_member(node, where, "prepend_scheme") != "never";
    }
    spec.replacements.emplace_back(replacement, " ");
    // HF strips the leading space of the first token when that token starts with the marker.
    if (prepend && !spec.strip_leading_space) {
      spec.strip_leading_space = true;
      spec.strip_marker = replacement;
    }
  } else {
    fail(cat("unsupported decoder '", type,
             "' (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)"));
  }
}

void Tokenizer::HfLoader::load_added_tokens(const json& added_tokens) {
  for (const json& token : added_tokens) {
    const char* where = "added_tokens[]";
    AddedTokenMatcher::Token entry;
    entry.id = token["id"].get<int32_t>();
    entry.special = bool_member(token, where, "special", false);
    entry.lstrip = bool_member(token, where, "lstrip", false);
    entry.rstrip = bool_member(token, where, "rstrip", false);
    entry.single_word = bool_member(token, where, "single_word", false);
    const std::string& content = t_.pieces_[entry.id];
    if (content.empty()) continue;  // an empty token can never be matched
    t_.types_[entry.id] = entry.special ? TokenType::kControl : TokenType::kUserDefined;
    t_.added_index_[content] = entry.id;
    if (bool_member(token, where, "normalized", !entry.special)) {
      std::string normalized = content;
      hf_->normalizer.normalize(normalized);
      hf_->normalized_added_tokens.add(normalized, entry);
    } else {
      t_.added_tokens_.add(content, entry);
    }
  }
}

void Tokenizer::HfLoader::load_special_tokens(const json& config, bool has_post_processor) {
  auto token_text = [&](const char* key) -> std::optional<std::string> {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object()) return string_member(*it, key, "content");
    fail(cat(key, " must be a string or {\"content\": ...}"));
  };
  auto token_id = [&](const char* key) -> std::optional<int32_t> {
    std::optional<std::string> text = token_text(key);
    if (!text) return std::nullopt;
    std::optional<int32_t> id = t_.piece_to_id(*text);
    if (!id) LOG_WARNING(source_, ": ", key, " '", *text, "' is not in the vocabulary; ignored");
    return id;
  };
  t_.bos_ = token_id("bos_token");
  t_.eos_ = token_id("eos_token");
  t_.unk_ = token_id("unk_token");
  t_.pad_ = token_id("pad_token");
  if (!t_.unk_) t_.unk_ = hf_->unk;

  auto flag = [&](const char* key) -> std::optional<bool> {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) fail(cat(key, " must be true or false"));
    return it->get<bool>();
  };
  std::optional<bool> add_bos = flag("add_bos_token"), add_eos = flag("add_eos_token");
  if (add_bos || add_eos || !has_post_processor) {
    t_.add_bos_ = add_bos.value_or(false);
    t_.add_eos_ = add_eos.value_or(false);
    t_.set_template_from_flags();
  }
  // Without token names in the config, the post-processor's tokens stand for BOS/EOS.
  if (!t_.bos_ && !t_.prefix_ids_.empty()) t_.bos_ = t_.prefix_ids_.front();
  if (!t_.eos_ && !t_.suffix_ids_.empty()) t_.eos_ = t_.suffix_ids_.back();
  t_.add_bos_ = t_.bos_ && !t_.prefix_ids_.empty() && t_.prefix_ids_.front() == *t_.bos_;
  t_.add_eos_ = t_.eos_ && !t_.suffix_ids_.empty() && t_.suffix_ids_.back() == *t_.eos_;
}

void Tokenizer::HfLoader::build_decode_tables(const DecoderSpec& spec) {
  const size_t n = t_.pieces_.size();
  t_.kind_ = spec.byte_level ? TokenizerKind::kByteLevelBpe : TokenizerKind::kSentencePieceBpe;
  t_.decoded_.resize(n);
  t_.special_.assign(n, 0);
  t_.byte_value_.assign(n, -1);
  for (int b = 0; b < 256; ++b) t_.byte_symbol_[b] = hf_->byte_token[b];
  for (size_t i = 0; i < n; ++i) {
    const std::string& piece = t_.pieces_[i];
    if (spec.byte_level) {
      t_.decoded_[i] = byte_level::token_bytes(piece);
      continue;
    }
    if (spec.byte_fallback) t_.byte_value_[i] = static_cast<int16_t>(parse_byte_token(piece));
    std::string text = piece;
    for (const auto& [from, to] : spec.replacements) text = replace_all(text, from, to);
    if (spec.join_with_space) text.insert(0, " ");
    t_.decoded_[i] = utf8::sanitize(text);
  }
  for (size_t i = 0; i < n; ++i) t_.special_[i] = t_.types_[i] == TokenType::kControl;
  t_.strip_leading_space_ = !spec.byte_level && (spec.strip_leading_space || spec.join_with_space);
  t_.strip_marker_ = spec.strip_marker;
  t_.add_space_prefix_ = t_.strip_leading_space_;
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(std::string_view tokenizer_json,
                                                   std::string_view tokenizer_config_json,
                                                   std::string_view special_tokens_map_json,
                                                   std::string_view source) {
  auto parse = [&](std::string_view text, std::string_view name) {
    if (text.empty()) return json::object();
    try {
      json value = json::parse(text);
      if (!value.is_object()) throw Error(cat(name, ": the top level must be a JSON object"));
      return value;
    } catch (const json::exception& e) {
      throw Error(cat(name, ": malformed JSON: ", e.what()));
    }
  };
  std::string dir_prefix;
  if (size_t slash = source.rfind('/'); slash != std::string_view::npos) {
    dir_prefix = std::string(source.substr(0, slash + 1));
  }
  json root = parse(tokenizer_json, source);
  if (tokenizer_json.empty()) throw Error(cat(source, ": empty file"));
  // special_tokens_map.json wins over tokenizer_config.json, as in transformers.
  json config = parse(tokenizer_config_json, dir_prefix + "tokenizer_config.json");
  json special_map = parse(special_tokens_map_json, dir_prefix + "special_tokens_map.json");
  for (auto it = special_map.begin(); it != special_map.end(); ++it) {
    if (!it.value().is_null()) config[it.key()] = it.value();
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->pre_type_ = "tokenizer.json";
  try {
    HfLoader(*t, source).load(root, config);
  } catch (const json::exception& e) {
    throw Error(cat(source, ": unexpected JSON structure: ", e.what()));
  }
  return t;
}

bool has_hf_tokenizer_files(const std::string& dir) {
  auto is_file = [&](const char* name) {
    std::error_code ec;
    return std::filesystem::is_regular_file(std::filesystem::path(dir) / name, ec);
  };
  return is_file("tokenizer.json") || (is_file("vocab.json") && is_file("merges.txt"));
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir) {
  std::string tokenizer_json, config_json, special_map_json;
  read_file(dir + "/tokenizer_config.json", config_json);
  read_file(dir + "/special_tokens_map.json", special_map_json);
  const std::string path = dir + "/tokenizer.json";
  if (read_file(path, tokenizer_json)) {
    return Tokenizer::from_hf_json(tokenizer_json, config_json, special_map_json, path);
  }
  // GPT-2-style slow files (facebook/opt-*, openai-community/gpt2): the tokenizer.json that
  // transformers would build from them.
  std::string vocab_json, merges_txt;
  if (read_file(dir + "/vocab.json", vocab_json) && read_file(dir + "/merges.txt", merges_txt)) {
    SlowTokenizerJson built = gpt2_tokenizer_json_from_slow_files(
        vocab_json, merges_txt, config_json, special_map_json, dir + "/");
    return Tokenizer::from_hf_json(built.tokenizer_json, built.tokenizer_config_json, "",
                                   dir + "/vocab.json+merges.txt");
  }
  throw Error(cat(path, ": not found (a Hugging Face checkpoint needs its tokenizer.json, or "
                        "vocab.json and merges.txt)"));
}

}  // namespace cvllm
