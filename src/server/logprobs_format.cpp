#include "server/logprobs_format.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace cvllm::server {
namespace {

double clamp_logprob(double x) {
  return std::isnan(x) ? -9999.0 : std::max(x, -9999.0);
}

std::string decode_one(int32_t id, const LogprobsFormat& f) {
  if (f.tokens_as_ids) return cat("token_id:", id);
  if (!f.tokenizer) throw ValueError("Unable to get tokenizer because `skip_tokenizer_init=True`");
  int32_t ids[1] = {id};
  return f.tokenizer->decode(ids, /*skip_special_tokens=*/false);
}

std::string entry_token(int32_t id, const Logprob& lp, const LogprobsFormat& f) {
  if (f.tokens_as_ids || !lp.decoded_token) return decode_one(id, f);
  return *lp.decoded_token;
}

const Logprob* find_entry(const PositionLogprobs& pos, int32_t id) {
  for (const auto& [tid, lp] : pos) {
    if (tid == id) return &lp;
  }
  return nullptr;
}

OrderedJson utf8_bytes(const std::string& s) {
  OrderedJson out = OrderedJson::array();
  // Python's encode("utf-8", errors="replace") of a str: the str is valid already, so the bytes
  // are those of the sanitized text.
  std::string clean = utf8::sanitize(s);
  for (unsigned char c : clean) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

std::vector<std::optional<PositionLogprobs>> as_positions(
    const std::optional<std::vector<PositionLogprobs>>& logprobs) {
  std::vector<std::optional<PositionLogprobs>> out;
  if (logprobs) out.assign(logprobs->begin(), logprobs->end());
  return out;
}

int python_len(const std::string& text) {
  int n = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    utf8::decode(text, pos);
    ++n;
  }
  return n;
}

OrderedJson completion_logprobs(std::span<const int32_t> token_ids,
                                std::span<const std::optional<PositionLogprobs>> positions,
                                int num_top, int initial_text_offset, const LogprobsFormat& f) {
  OrderedJson text_offset = OrderedJson::array(), token_logprobs = OrderedJson::array();
  OrderedJson tokens = OrderedJson::array(), top_logprobs = OrderedJson::array();
  int last_len = 0;
  for (size_t i = 0; i < token_ids.size(); ++i) {
    int32_t id = token_ids[i];
    const Logprob* own =
        i < positions.size() && positions[i] ? find_entry(*positions[i], id) : nullptr;
    std::string token;
    if (!own) {
      token = decode_one(id, f);
      token_logprobs.push_back(nullptr);
      top_logprobs.push_back(nullptr);
    } else {
      token = entry_token(id, *own, f);
      token_logprobs.push_back(clamp_logprob(own->logprob));
      OrderedJson top = OrderedJson::object();
      int k = 0;
      for (const auto& [tid, lp] : *positions[i]) {
        // vLLM keeps entries while num_top >= index: up to num_top + 1 of them.
        if (num_top >= k) top[entry_token(tid, lp, f)] = clamp_logprob(lp.logprob);
        ++k;
      }
      top_logprobs.push_back(std::move(top));
    }
    tokens.push_back(token);
    text_offset.push_back(text_offset.empty() ? initial_text_offset
                                              : text_offset.back().get<int>() + last_len);
    last_len = python_len(token);
  }
  OrderedJson out = OrderedJson::object();
  out["text_offset"] = std::move(text_offset);
  out["token_logprobs"] = std::move(token_logprobs);
  out["tokens"] = std::move(tokens);
  out["top_logprobs"] = std::move(top_logprobs);
  return out;
}

OrderedJson chat_logprobs(std::span<const int32_t> token_ids,
                          std::span<const std::optional<PositionLogprobs>> positions,
                          int top_logprobs, const LogprobsFormat& f) {
  OrderedJson content = OrderedJson::array();
  for (size_t i = 0; i < token_ids.size(); ++i) {
    int32_t id = token_ids[i];
    const Logprob* own =
        i < positions.size() && positions[i] ? find_entry(*positions[i], id) : nullptr;
    OrderedJson item = OrderedJson::object();
    if (!own) {
      std::string token = decode_one(id, f);
      item["token"] = token;
      item["logprob"] = -9999.0;
      item["bytes"] = utf8_bytes(token);
      item["top_logprobs"] = OrderedJson::array();
    } else {
      item["token"] = entry_token(id, *own, f);
      item["logprob"] = clamp_logprob(own->logprob);
      item["bytes"] = own->decoded_token ? utf8_bytes(*own->decoded_token) : OrderedJson(nullptr);
      OrderedJson top = OrderedJson::array();
      int k = 0;
      for (const auto& [tid, lp] : *positions[i]) {
        if (top_logprobs != -1 && k >= top_logprobs) break;
        std::string token = entry_token(tid, lp, f);
        OrderedJson t = OrderedJson::object();
        t["token"] = token;
        t["logprob"] = clamp_logprob(lp.logprob);
        t["bytes"] = utf8_bytes(token);
        top.push_back(std::move(t));
        ++k;
      }
      item["top_logprobs"] = std::move(top);
    }
    content.push_back(std::move(item));
  }
  OrderedJson out = OrderedJson::object();
  out["content"] = std::move(content);
  return out;
}

OrderedJson prompt_logprobs_json(const std::vector<std::optional<PositionLogprobs>>& positions) {
  OrderedJson out = OrderedJson::array();
  for (const auto& pos : positions) {
    if (!pos) {
      out.push_back(nullptr);
      continue;
    }
    OrderedJson d = OrderedJson::object();
    for (const auto& [id, lp] : *pos) {
      OrderedJson e = OrderedJson::object();
      e["logprob"] = clamp_logprob(lp.logprob);
      e["rank"] = lp.rank ? OrderedJson(*lp.rank) : OrderedJson(nullptr);
      e["decoded_token"] = lp.decoded_token ? OrderedJson(*lp.decoded_token) : OrderedJson(nullptr);
      d[std::to_string(id)] = std::move(e);
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace cvllm::server
