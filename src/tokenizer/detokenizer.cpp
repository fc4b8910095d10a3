#include "tokenizer/detokenizer.h"

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8_check.h"
#include "util/utf8.h"

namespace cvllm {

namespace {
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";
}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer,
                                               std::span<const int32_t> prompt_ids,
                                               bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {
  bool prompt_has_text = false;
  for (int32_t id : prompt_ids) {
    tokenizer_.check_id(id);
    if (!(skip_special_tokens_ && tokenizer_.special_[id])) prompt_has_text = true;
  }
  strip_leading_space_ = tokenizer_.strip_leading_space_ && !prompt_has_text;
  check_strip_marker_ = strip_leading_space_ && !tokenizer_.strip_marker_.empty();
}

std::string IncrementalDetokenizer::add_token(int32_t id) {
  tokenizer_.check_id(id);
  std::string out;
  if (skip_special_tokens_ && tokenizer_.special_[id]) return out;
  if (check_strip_marker_) {
    check_strip_marker_ = false;
    strip_leading_space_ = tokenizer_.pieces_[id].starts_with(tokenizer_.strip_marker_);
  }
  if (tokenizer_.kind_ == TokenizerKind::kByteLevelBpe) {
    pending_ += tokenizer_.decoded_[id];
    size_t ready = pending_.size() - utf8::incomplete_suffix_length(pending_);
    if (ready > 0) {
      out = utf8::sanitize(std::string_view(pending_).substr(0, ready));
      pending_.erase(0, ready);
    }
    return out;
  }
  int16_t byte = tokenizer_.byte_value_[id];
  if (byte >= 0) {
    pending_ += static_cast<char>(byte);
    return out;
  }
  flush_byte_run(out);
  emit(tokenizer_.decoded_[id], out);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out;
  if (tokenizer_.kind_ == TokenizerKind::kByteLevelBpe) {
    out = utf8::sanitize(pending_);
    pending_.clear();
  } else {
    flush_byte_run(out);
  }
  return out;
}

void IncrementalDetokenizer::flush_byte_run(std::string& out) {
  if (pending_.empty()) return;
  std::string text;
  if (is_valid_utf8(pending_)) {
    text.swap(pending_);
  } else {
    for (size_t i = 0; i < pending_.size(); ++i) text += kReplacementCharacter;
  }
  pending_.clear();
  emit(text, out);
}

void IncrementalDetokenizer::emit(std::string_view text, std::string& out) {
  if (strip_leading_space_ && !text.empty()) {
    strip_leading_space_ = false;
    if (text.front() == ' ') text.remove_prefix(1);
  }
  out += text;
}

}  // namespace cvllm
