#include "server/json_util.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include "server/api_error.h"
#include "util/error.h"

namespace cvllm::server {
namespace {

// Builds an ordered_json from nlohmann's SAX events, appending object members without the
// duplicate search ordered_map::emplace does, and collapsing repeated keys once per object.
class OrderedJsonBuilder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  Json root;
  bool too_deep = false;
  std::string error;

  bool null() { return add(Json(nullptr)); }
  bool boolean(bool v) { return add(Json(v)); }
  bool number_integer(number_integer_t v) { return add(Json(v)); }
  bool number_unsigned(number_unsigned_t v) { return add(Json(v)); }
  bool number_float(number_float_t v, const string_t&) { return add(Json(v)); }
  bool string(string_t& v) { return add(Json(std::move(v))); }
  bool binary(binary_t&) { return false; }
  bool key(string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) { return open(Json::object()); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_object() {
    dedupe(*stack_.back());
    stack_.pop_back();
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    error = e.what();
    return false;
  }

 private:
  // Adds a value to the innermost container (or as the root) and returns where it now lives.
  Json* place(Json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    Json& top = *stack_.back();
    if (top.is_array()) {
      auto& arr = top.get_ref<Json::array_t&>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    auto& obj = top.get_ref<Json::object_t&>();
    obj.Container::emplace_back(std::move(key_), std::move(v));
    return &obj.back().second;
  }
  bool add(Json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(Json&& container) {
    if (static_cast<int>(stack_.size()) >= kMaxJsonDepth) {
      too_deep = true;
      return false;
    }
    stack_.push_back(place(std::move(container)));
    return true;
  }
  static void dedupe(Json& object) {
    Json::object_t::Container& members = object.get_ref<Json::object_t&>();
    if (members.size() < 2) return;
    std::unordered_map<std::string_view, size_t> last;
    last.reserve(members.size());
    for (size_t i = 0; i < members.size(); ++i) last[members[i].first] = i;
    if (last.size() == members.size()) return;
    Json::object_t out;
    std::unordered_map<std::string_view, bool> done;
    for (size_t i = 0; i < members.size(); ++i) {
      if (!done.emplace(members[i].first, true).second) continue;
      out.Container::emplace_back(members[i].first, members[last.at(members[i].first)].second);
    }
    object.get_ref<Json::object_t&>() = std::move(out);
  }

  std::vector<Json*> stack_;
  string_t key_;
};

const char* type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "int";
    case Json::value_t::number_float:
      return "float";
    case Json::value_t::string:
      return "str";
    case Json::value_t::array:
      return "list";
    case Json::value_t::object:
      return "dict";
    default:
      return "value";
  }
}

// The request field an error is about: "prompt" for "prompt.3".
std::string top_field(const std::string& field) {
  return field.substr(0, field.find('.'));
}

[[noreturn]] void type_error(const std::string& field, const char* expected, const Json& v) {
  throw bad_request(cat("1 validation error: ", field, ": Input should be ", expected,
                        " [input_type=", type_name(v), "]"),
                    top_field(field));
}

// Parses a whole string as a number the way pydantic's lax mode accepts numeric strings.
std::optional<double> parse_number_string(const std::string& s) {
  if (s.empty() || s.size() > 64) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(x)) return std::nullopt;
  return x;
}

}  // namespace

Json parse_json_object(std::string_view body) {
  OrderedJsonBuilder builder;
  bool ok = Json::sax_parse(body.begin(), body.end(), &builder);
  if (builder.too_deep) {
    throw bad_request(cat("JSON decode error: nesting deeper than ", kMaxJsonDepth, " levels"));
  }
  if (!ok) {
    throw bad_request(
        cat("JSON decode error: ", builder.error.empty() ? "invalid JSON" : builder.error));
  }
  if (!builder.root.is_object()) {
    throw bad_request(
        cat("Input should be a valid dictionary or object to extract fields from "
            "[input_type=",
            type_name(builder.root), "]"));
  }
  return std::move(builder.root);
}

std::string dump_json(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

int64_t json_to_int(const Json& v, const std::string& field, int64_t min, int64_t max) {
  int64_t x = 0;
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    x = v.get<int64_t>();
  } else if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw bad_request(cat("1 validation error: ", field,
                            ": Input should be less than or equal "
                            "to ",
                            max),
                        top_field(field));
    }
    x = static_cast<int64_t>(u);
  } else if (v.is_number_float() || v.is_string()) {
    std::optional<double> d;
    if (v.is_number_float())
      d = v.get<double>();
    else
      d = parse_number_string(v.get<std::string>());
    if (!d) type_error(field, "a valid integer, unable to parse string as an integer", v);
    if (std::floor(*d) != *d)
      type_error(field, "a valid integer, got a number with a fractional part", v);
    if (*d < -9.2e18 || *d > 9.2e18) {
      throw bad_request(cat("1 validation error: ", field,
                            ": Input should be a valid integer, "
                            "the number is too large"),
                        top_field(field));
    }
    x = static_cast<int64_t>(*d);
  } else if (v.is_boolean()) {
    x = v.get<bool>() ? 1 : 0;
  } else {
    type_error(field, "a valid integer", v);
  }
  if (x < min) {
    throw bad_request(cat("1 validation error: ", field,
                          ": Input should be greater than or "
                          "equal to ",
                          min),
                      top_field(field));
  }
  if (x > max) {
    throw bad_request(cat("1 validation error: ", field,
                          ": Input should be less than or equal "
                          "to ",
                          max),
                      top_field(field));
  }
  return x;
}

double json_to_double(const Json& v, const std::string& field) {
  if (v.is_number()) return v.get<double>();
  if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
  if (v.is_string()) {
    if (std::optional<double> d = parse_number_string(v.get<std::string>())) return *d;
    type_error(field, "a valid number, unable to parse string as a number", v);
  }
  type_error(field, "a valid number", v);
}

bool json_to_bool(const Json& v, const std::string& field) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    if (x == 0 || x == 1) return x == 1;
  }
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "true" || s == "1" || s == "yes" || s == "on" || s == "t" || s == "y") return true;
    if (s == "false" || s == "0" || s == "no" || s == "off" || s == "f" || s == "n") return false;
  }
  type_error(field, "a valid boolean", v);
}

std::string json_to_string(const Json& v, const std::string& field) {
  if (!v.is_string()) type_error(field, "a valid string", v);
  return v.get<std::string>();
}

FieldReader::FieldReader(const Json& object, std::string prefix)
    : object_(object), prefix_(std::move(prefix)) {}

const Json* FieldReader::find(std::string_view key) const {
  if (!object_.is_object()) return nullptr;
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<bool> FieldReader::get_bool(const char* key) const {
  const Json* v = find(key);
  if (!v) return std::nullopt;
  return json_to_bool(*v, field_name(key));
}

std::optional<int64_t> FieldReader::get_int(const char* key, int64_t min, int64_t max) const {
  const Json* v = find(key);
  if (!v) return std::nullopt;
  return json_to_int(*v, field_name(key), min, max);
}

std::optional<int> FieldReader::get_int32(const char* key, int min, int max) const {
  std::optional<int64_t> x = get_int(key, min, max);
  if (!x) return std::nullopt;
  return static_cast<int>(*x);
}

std::optional<double> FieldReader::get_double(const char* key) const {
  const Json* v = find(key);
  if (!v) return std::nullopt;
  return json_to_double(*v, field_name(key));
}

std::optional<std::string> FieldReader::get_string(const char* key) const {
  const Json* v = find(key);
  if (!v) return std::nullopt;
  return json_to_string(*v, field_name(key));
}

std::optional<std::vector<int32_t>> FieldReader::get_int_list(const char* key, int64_t min,
                                                              int64_t max) const {
  const Json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_array()) type_error(field_name(key), "a valid list", *v);
  std::vector<int32_t> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    out.push_back(
        static_cast<int32_t>(json_to_int((*v)[i], cat(field_name(key), ".", i), min, max)));
  }
  return out;
}

std::optional<std::vector<std::string>> FieldReader::get_string_list(const char* key) const {
  const Json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_array()) type_error(field_name(key), "a valid list", *v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i)
    out.push_back(json_to_string((*v)[i], cat(field_name(key), ".", i)));
  return out;
}

const Json* FieldReader::get_object(const char* key) const {
  const Json* v = find(key);
  if (v && !v->is_object()) type_error(field_name(key), "a valid dictionary", *v);
  return v;
}

const Json* FieldReader::get_array(const char* key) const {
  const Json* v = find(key);
  if (v && !v->is_array()) type_error(field_name(key), "a valid list", *v);
  return v;
}

}  // namespace cvllm::server
