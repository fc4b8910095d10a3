#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <mutex>

#include "loader/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/hf_pipeline.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/utf8_check.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/utf8.h"

namespace cvllm {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, sentencepiece's space
constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kMaxCachedWords = size_t{1} << 16;

// HF's ByteFallback decoder: a token spelled "<0xXX>" (two hex digits) stands for that byte.
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

bool is_added_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined;
}

size_t num_code_points(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

// Whether the three bytes before `pos` are "▁" (E2 96 81 can only be that character).
bool follows_space_marker(std::string_view s, size_t pos) {
  return pos >= kSpaceMarker.size() &&
         s.compare(pos - kSpaceMarker.size(), kSpaceMarker.size(), kSpaceMarker) == 0;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    out.append(s.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos));
    if (hit == std::string_view::npos) return out;
    out.append(to);
    pos = hit + from.size();
  }
}

}  // namespace

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  std::optional<std::string> model = file.get_string("tokenizer.ggml.model");
  if (!model) {
    throw Error(cat(file.path(), ": no tokenizer in this file (tokenizer.ggml.model is missing)"));
  }
  if (*model == "gpt2") {
    t->kind_ = TokenizerKind::kByteLevelBpe;
  } else if (*model == "llama") {
    t->kind_ = TokenizerKind::kSentencePieceBpe;
  } else {
    throw Error(
        cat(file.path(), ": unsupported tokenizer model '", *model, "' (supported: gpt2, llama)"));
  }
  t->pre_type_ = file.get_string("tokenizer.ggml.pre").value_or("default");
  // The byte-level families whose tokenizer.json starts with an NFC normalizer.
  for (std::string_view pre : {"qwen2", "deepseek-r1-qwen", "mpt", "olmo", "command-r"}) {
    t->nfc_ = t->nfc_ || (t->kind_ == TokenizerKind::kByteLevelBpe && t->pre_type_ == pre);
  }
  t->load_vocab(file);
  if (t->kind_ == TokenizerKind::kByteLevelBpe) {
    t->pre_tokenizer_ = PreTokenizer::for_pre_type(t->pre_type_);
    if (!t->pre_tokenizer_) {
      LOG_WARNING(file.path(), ": unknown pre-tokenizer '", t->pre_type_,
                  "', using GPT-2's; token ids may differ from the model's own tokenizer");
      t->pre_tokenizer_ = PreTokenizer::for_pre_type("gpt2");
    }
    t->load_merges(file);
  } else {
    t->derive_spm_merges();
  }
  t->load_special_ids(file);
  t->build_added_tokens(file);
  t->build_decode_tables();
  t->set_template_from_flags();
  t->strip_leading_space_ = t->kind_ == TokenizerKind::kSentencePieceBpe && t->add_space_prefix_;
  return t;
}

void Tokenizer::set_template_from_flags() {
  prefix_ids_.clear();
  suffix_ids_.clear();
  if (add_bos_ && bos_) prefix_ids_.push_back(*bos_);
  if (add_eos_ && eos_) suffix_ids_.push_back(*eos_);
}

void Tokenizer::load_vocab(const GgufFile& file) {
  std::optional<std::vector<std::string>> tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) {
    throw Error(cat(file.path(), ": tokenizer.ggml.tokens is missing or empty"));
  }
  if (tokens->size() > static_cast<size_t>(INT32_MAX)) {
    throw Error(
        cat(file.path(), ": tokenizer.ggml.tokens has too many entries (", tokens->size(), ")"));
  }
  pieces_ = std::move(*tokens);
  const size_t n = pieces_.size();

  types_.assign(n, TokenType::kNormal);
  if (auto types = file.get_int_array("tokenizer.ggml.token_type")) {
    if (types->size() != n) {
      throw Error(cat(file.path(), ": tokenizer.ggml.token_type has ", types->size(),
                      " entries for ", n, " tokens"));
    }
    for (size_t i = 0; i < n; ++i) {
      int64_t v = (*types)[i];
      types_[i] = v >= 1 && v <= 6 ? static_cast<TokenType>(v) : TokenType::kUndefined;
    }
  }
  scores_.assign(n, 0.0f);
  if (auto scores = file.get_float_array("tokenizer.ggml.scores")) {
    if (scores->size() != n) {
      throw Error(cat(file.path(), ": tokenizer.ggml.scores has ", scores->size(), " entries for ",
                      n, " tokens"));
    }
    scores_ = std::move(*scores);
    // A NaN would break the merge ordering (sorting needs a strict weak order): rank it last.
    for (float& score : scores_) {
      if (std::isnan(score)) score = -std::numeric_limits<float>::infinity();
    }
  }
  // A later entry with the same text wins, as when transformers builds its vocab dict.
  for (size_t i = 0; i < n; ++i) {
    if (pieces_[i].empty()) continue;  // an empty token can never be matched
    auto& index = is_added_type(types_[i]) ? added_index_ : model_index_;
    index[pieces_[i]] = static_cast<int32_t>(i);
  }
}

std::optional<int32_t> Tokenizer::model_token(std::string_view piece) const {
  if (auto it = model_index_.find(piece); it != model_index_.end()) return it->second;
  if (auto it = added_index_.find(piece); it != added_index_.end()) return it->second;
  return std::nullopt;
}

void Tokenizer::load_merges(const GgufFile& file) {
  std::optional<std::vector<std::string>> merges = file.get_string_array("tokenizer.ggml.merges");
  if (!merges) {
    throw Error(cat(file.path(), ": tokenizer.ggml.merges is missing (a gpt2 tokenizer needs it)"));
  }
  size_t num_ignored = 0;
  for (const std::string& merge : *merges) {
    // "left right": the separator is the first space after the first character (a left half can
    // itself be a space only in a vocabulary that stores raw text, never in byte-level spelling).
    size_t sep = merge.find(' ', 1);
    std::optional<int32_t> left, right, result;
    if (sep != std::string::npos) {
      std::string_view l(merge.data(), sep), r(merge.data() + sep + 1, merge.size() - sep - 1);
      left = model_token(l);
      right = model_token(r);
      result = model_token(cat(l, r));
    }
    if (!left || !right || !result) {
      ++num_ignored;
      continue;
    }
    merges_.add(*left, *right, *result);
  }
  if (num_ignored > 0) {
    LOG_WARNING(file.path(), ": ignored ", num_ignored,
                " merges that are malformed or name tokens missing from the vocabulary");
  }
}

void Tokenizer::derive_spm_merges() {
  // Sentencepiece BPE merges the adjacent pair whose concatenation is the best-scored vocabulary
  // piece. As a ranked merge list (what HF's converter builds): every split of every normal token
  // into two vocabulary pieces, ordered by the token's score, then longer left half, then longer
  // right half, then vocabulary order.
  struct Candidate {
    float score;
    uint32_t left_len, right_len;
    int32_t left, right, result;
  };
  std::vector<Candidate> candidates;
  for (size_t id = 0; id < pieces_.size(); ++id) {
    if (types_[id] != TokenType::kNormal) continue;
    std::string_view piece = pieces_[id];
    size_t first = candidates.size();
    for (size_t split = 1; split < piece.size(); ++split) {
      if ((static_cast<uint8_t>(piece[split]) & 0xC0) == 0x80) continue;  // inside a character
      std::optional<int32_t> left = model_token(piece.substr(0, split));
      std::optional<int32_t> right = model_token(piece.substr(split));
      if (!left || !right) continue;
      candidates.push_back({scores_[id],
                            static_cast<uint32_t>(num_code_points(piece.substr(0, split))),
                            static_cast<uint32_t>(num_code_points(piece.substr(split))), *left,
                            *right, static_cast<int32_t>(id)});
    }
    std::sort(candidates.begin() + first, candidates.end(), [](const auto& a, const auto& b) {
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_len != b.left_len) return a.left_len > b.left_len;
    return a.right_len > b.right_len;
  });
  for (const Candidate& c : candidates) merges_.add(c.left, c.right, c.result);

  // Words may be cut before each "▁" that follows another character only when no token a merge
  // can make has such a "▁" inside (true of sentencepiece models trained with split_by_whitespace).
  spm_words_split_at_space_ = true;
  for (size_t id = 0; id < pieces_.size() && spm_words_split_at_space_; ++id) {
    if (types_[id] != TokenType::kNormal) continue;
    std::string_view piece = pieces_[id];
    for (size_t pos = piece.find(kSpaceMarker, 1); pos != std::string_view::npos;
         pos = piece.find(kSpaceMarker, pos + kSpaceMarker.size())) {
      if (!follows_space_marker(piece, pos)) {
        spm_words_split_at_space_ = false;
        break;
      }
    }
  }
}

void Tokenizer::load_special_ids(const GgufFile& file) {
  const int32_t n = vocab_size();
  auto special_id = [&](std::string_view key) -> std::optional<int32_t> {
    std::optional<int64_t> v = file.get_int(key);
    if (!v) return std::nullopt;
    if (*v < 0 || *v >= n) {
      LOG_WARNING(file.path(), ": ", key, " = ", *v, " is outside the vocabulary; ignored");
      return std::nullopt;
    }
    return static_cast<int32_t>(*v);
  };
  bos_ = special_id("tokenizer.ggml.bos_token_id");
  eos_ = special_id("tokenizer.ggml.eos_token_id");
  eot_ = special_id("tokenizer.ggml.eot_token_id");
  pad_ = special_id("tokenizer.ggml.padding_token_id");
  unk_ = special_id("tokenizer.ggml.unknown_token_id");

  const bool spm = kind_ == TokenizerKind::kSentencePieceBpe;
  if (spm && !unk_) {
    if (auto it = model_index_.find("<unk>"); it != model_index_.end()) unk_ = it->second;
  }
  // Defaults when the file has no flag: sentencepiece vocabularies and the Llama 3 / tekken
  // families add BOS (their tokenizer.json post-processors do); other byte-level ones do not.
  bool bos_by_default = spm || pre_type_ == "llama3" || pre_type_ == "llama-v3" ||
                        pre_type_ == "llama-bpe" || pre_type_ == "falcon3" || pre_type_ == "tekken";
  add_bos_ = file.get_bool("tokenizer.ggml.add_bos_token").value_or(bos_by_default);
  add_eos_ = file.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  add_space_prefix_ = spm && file.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
}

void Tokenizer::build_added_tokens(const GgufFile& file) {
  // Phi-3's tokenizer.json gives its added tokens rstrip (they swallow the newline after them),
  // except <unk>, <s> and <|endoftext|>; GGUF does not record the flag, so it is set by model.
  std::string arch = file.get_string("general.architecture").value_or("");
  std::string name = file.get_string("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  bool phi3 = arch == "phi3" || name.find("phi-3") != std::string::npos ||
              name.find("phi3") != std::string::npos;

  for (size_t i = 0; i < pieces_.size(); ++i) {
    TokenType type = types_[i];
    if (type != TokenType::kControl && type != TokenType::kUnknown &&
        type != TokenType::kUserDefined) {
      continue;
    }
    const std::string& text = pieces_[i];
    AddedTokenMatcher::Token token;
    token.id = static_cast<int32_t>(i);
    token.special = type != TokenType::kUserDefined;
    token.rstrip = phi3 && text != "<unk>" && text != "<s>" && text != "<|endoftext|>";
    added_tokens_.add(text, token);
  }
}

void Tokenizer::build_decode_tables() {
  const size_t n = pieces_.size();
  decoded_.resize(n);
  special_.assign(n, 0);
  for (int b = 0; b < 256; ++b) byte_symbol_[b] = -1;
  if (kind_ == TokenizerKind::kByteLevelBpe) {
    for (size_t i = 0; i < n; ++i) decoded_[i] = byte_level::token_bytes(pieces_[i]);
    for (int b = 0; b < 256; ++b) {
      std::string spelled;
      byte_level::append_spelling(spelled, static_cast<uint8_t>(b));
      if (auto it = model_index_.find(spelled); it != model_index_.end()) {
        byte_symbol_[b] = it->second;
      }
    }
  } else {
    byte_value_.assign(n, -1);
    for (size_t i = 0; i < n; ++i) {
      byte_value_[i] = static_cast<int16_t>(parse_byte_token(pieces_[i]));
      decoded_[i] = utf8::sanitize(replace_all(pieces_[i], kSpaceMarker, " "));
    }
    static const char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      std::string name = cat("<0x", kHex[b >> 4], kHex[b & 15], ">");
      if (auto it = model_index_.find(name); it != model_index_.end()) byte_symbol_[b] = it->second;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    special_[i] = types_[i] == TokenType::kControl || types_[i] == TokenType::kUnknown;
  }
  for (const auto& id : {bos_, eos_, eot_, pad_, unk_}) {
    if (id) special_[*id] = 1;
  }
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw ValueError(cat("token id ", id, " is out of vocabulary range [0, ", vocab_size(), ")"));
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens,
                                       bool parse_special) const {
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = utf8::sanitize(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  std::vector<AddedTokenMatcher::Piece> pieces;
  added_tokens_.split(text, parse_special, pieces);
  for (const AddedTokenMatcher::Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
    } else {
      encode_text(text.substr(piece.range.begin, piece.range.end - piece.range.begin),
                  piece.range.begin == 0, parse_special, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void Tokenizer::encode_text(std::string_view text, bool at_start, bool parse_special,
                            std::vector<int32_t>& ids) const {
  if (hf_) {
    encode_hf_text(text, at_start, parse_special, ids);
    return;
  }
  if (kind_ == TokenizerKind::kSentencePieceBpe) {
    encode_spm_text(text, ids);
    return;
  }
  std::string normalized;
  if (nfc_) {
    normalized = unicode_nfc(text);
    text = normalized;
  }
  thread_local std::vector<TextRange> words;
  pre_tokenizer_->split(text, words);
  for (const TextRange& w : words)
    encode_byte_level_word(text.substr(w.begin, w.end - w.begin), ids);
}

void Tokenizer::encode_hf_text(std::string_view text, bool at_start, bool parse_special,
                               std::vector<int32_t>& ids) const {
  std::string normalized(text);
  hf_->normalizer.normalize(normalized);
  std::vector<AddedTokenMatcher::Piece> pieces;
  hf_->normalized_added_tokens.split(normalized, parse_special, pieces);
  std::vector<PreWord> words;
  for (const AddedTokenMatcher::Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    std::string_view part =
        std::string_view(normalized).substr(piece.range.begin, piece.range.end - piece.range.begin);
    if (hf_->pre_tokenizer.empty()) {
      encode_hf_word(part, ids);
      continue;
    }
    hf_->pre_tokenizer.pre_tokenize(part, at_start && piece.range.begin == 0, words);
    for (const PreWord& word : words) encode_hf_word(word.text, ids);
  }
}

void Tokenizer::encode_hf_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (hf_->ignore_merges) {
    if (auto it = model_index_.find(word); it != model_index_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  if (!hf_->split_at_marker) {
    encode_hf_segment(word, ids);
    return;
  }
  size_t start = 0;
  for (size_t pos = word.find(kSpaceMarker, 1); pos != std::string_view::npos;
       pos = word.find(kSpaceMarker, pos + kSpaceMarker.size())) {
    if (!follows_space_marker(word, pos)) {
      encode_hf_segment(word.substr(start, pos - start), ids);
      start = pos;
    }
  }
  encode_hf_segment(word.substr(start), ids);
}

void Tokenizer::encode_hf_segment(std::string_view segment, std::vector<int32_t>& ids) const {
  if (segment.empty() || find_cached(segment, ids)) return;
  const HfPipeline& hf = *hf_;
  std::vector<int32_t> symbols;
  std::optional<int32_t> pending_unk;  // HF holds an unknown token back to fuse the next one in
  std::string piece;
  size_t pos = 0;
  while (pos < segment.size()) {
    size_t len = std::max(1, utf8::sequence_length(static_cast<uint8_t>(segment[pos])));
    piece.assign(pos > 0 ? hf.continuing_subword_prefix : std::string());
    piece.append(segment.substr(pos, len));
    pos += len;
    if (pos >= segment.size()) piece.append(hf.end_of_word_suffix);
    if (auto it = model_index_.find(piece); it != model_index_.end()) {
      if (pending_unk) symbols.push_back(*pending_unk);
      pending_unk.reset();
      symbols.push_back(it->second);
      continue;
    }
    if (hf.byte_fallback) {
      bool all_bytes = true;
      for (char b : piece) all_bytes = all_bytes && hf.byte_token[static_cast<uint8_t>(b)] >= 0;
      if (all_bytes) {  // (HF leaves a held-back unknown token pending across these)
        for (char b : piece) symbols.push_back(hf.byte_token[static_cast<uint8_t>(b)]);
        continue;
      }
    }
    if (hf.unk) {
      if (pending_unk && !hf.fuse_unk) symbols.push_back(*pending_unk);
      pending_unk = hf.unk;
    }
  }
  if (pending_unk) symbols.push_back(*pending_unk);
  merges_.merge(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  store_cached(segment, symbols);
}

bool Tokenizer::find_cached(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.size() > kMaxCachedWordBytes) return false;
  std::shared_lock lock(cache_mutex_);
  auto it = word_cache_.find(word);
  if (it == word_cache_.end()) return false;
  ids.insert(ids.end(), it->second.begin(), it->second.end());
  return true;
}

void Tokenizer::store_cached(std::string_view word, const std::vector<int32_t>& symbols) const {
  if (word.size() > kMaxCachedWordBytes) return;
  std::unique_lock lock(cache_mutex_);
  if (word_cache_.size() >= kMaxCachedWords) word_cache_.clear();
  word_cache_.emplace(std::string(word), symbols);
}

void Tokenizer::encode_byte_level_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (pre_tokenizer_->ignore_merges()) {
    if (auto it = model_index_.find(byte_level::spell(word)); it != model_index_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  if (find_cached(word, ids)) return;
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  for (char c : word) {
    // A byte whose character the vocabulary lacks is dropped (HF BPE without an unk token).
    int32_t s = byte_symbol_[static_cast<uint8_t>(c)];
    if (s >= 0) symbols.push_back(s);
  }
  merges_.merge(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  store_cached(word, symbols);
}

void Tokenizer::encode_spm_text(std::string_view text, std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  std::string normalized;
  normalized.reserve(text.size() + 3);
  if (add_space_prefix_) normalized += kSpaceMarker;
  for (char c : text) {
    if (c == ' ') {
      normalized += kSpaceMarker;
    } else {
      normalized += c;
    }
  }
  if (!spm_words_split_at_space_) {
    encode_spm_word(normalized, ids);
    return;
  }
  // Cut before every "▁" that follows another character: no merge can join across such a cut
  // (checked at load), and short words keep the merge heap small and hit the cache.
  std::string_view rest = normalized;
  size_t start = 0;
  for (size_t pos = rest.find(kSpaceMarker, 1); pos != std::string_view::npos;
       pos = rest.find(kSpaceMarker, pos + kSpaceMarker.size())) {
    if (!follows_space_marker(rest, pos)) {
      encode_spm_word(rest.substr(start, pos - start), ids);
      start = pos;
    }
  }
  encode_spm_word(rest.substr(start), ids);
}

void Tokenizer::encode_spm_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty() || find_cached(word, ids)) return;
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  bool last_was_unk = false;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t len = std::max(1, utf8::sequence_length(static_cast<uint8_t>(word[pos])));
    std::string_view ch = word.substr(pos, len);
    pos += ch.size();
    if (auto it = model_index_.find(ch); it != model_index_.end()) {
      symbols.push_back(it->second);
      last_was_unk = false;
      continue;
    }
    // Byte fallback when every byte has its <0xXX> token, else one unknown token for the
    // character; consecutive unknowns fuse into one (HF fuse_unk).
    bool all_bytes = true;
    for (char b : ch) all_bytes = all_bytes && byte_symbol_[static_cast<uint8_t>(b)] >= 0;
    if (all_bytes) {
      for (char b : ch) symbols.push_back(byte_symbol_[static_cast<uint8_t>(b)]);
      last_was_unk = false;
    } else if (unk_ && !last_was_unk) {
      symbols.push_back(*unk_);
      last_was_unk = true;
    }
  }
  merges_.merge(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  store_cached(word, symbols);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  for (int32_t id : ids) check_id(id);
  if (kind_ == TokenizerKind::kByteLevelBpe) {
    std::string bytes;
    for (int32_t id : ids) {
      if (!(skip_special_tokens && special_[id])) bytes += decoded_[id];
    }
    return is_valid_utf8(bytes) ? bytes : utf8::sanitize(bytes);
  }
  IncrementalDetokenizer detokenizer(*this, {}, skip_special_tokens);
  std::string text;
  for (int32_t id : ids) text += detokenizer.add_token(id);
  text += detokenizer.flush();
  return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

std::optional<int32_t> Tokenizer::piece_to_id(std::string_view piece) const {
  if (auto it = added_index_.find(piece); it != added_index_.end()) return it->second;
  if (auto it = model_index_.find(piece); it != model_index_.end()) return it->second;
  return std::nullopt;
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return types_[id];
}

bool Tokenizer::is_special(int32_t id) const {
  check_id(id);
  return special_[id] != 0;
}

}  // namespace cvllm
