// JSON helpers for the HTTP API: parsing a request body safely (bounded nesting, malformed text
// and invalid UTF-8 become 400s), dumping compactly (invalid UTF-8 replaced, never a throw), and
// FieldReader, which reads typed fields of a request object the way vLLM's pydantic models accept
// them (lax mode: 5.0 is an int, "0.5" is a float, "true" is a bool) and names the field in the
// 400 it raises for anything else.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cvllm::server {

// Request and response JSON keep the order keys arrived in, like Python dicts: chat templates
// render tool schemas in the client's order, and responses follow pydantic's field order.
using Json = nlohmann::ordered_json;
using OrderedJson = nlohmann::ordered_json;

// Deeper nesting than this is rejected: no request field needs it, and recursive walks of a
// pathological body must not exhaust the stack.
inline constexpr int kMaxJsonDepth = 64;

// Parses a request body that must be a JSON object. Throws ApiError(400). Linear in the body size
// (nlohmann's ordered_json parser is quadratic in the keys of one object); a repeated key keeps
// its first position and its last value, as Python's json module does.
Json parse_json_object(std::string_view body);
// Compact dump (no spaces, like pydantic's model_dump_json), UTF-8 kept, invalid bytes replaced.
std::string dump_json(const Json& value);

// Lax conversions of one JSON value (field names the value in error messages).
int64_t json_to_int(const Json& value, const std::string& field,
                    int64_t min = std::numeric_limits<int64_t>::min(),
                    int64_t max = std::numeric_limits<int64_t>::max());
double json_to_double(const Json& value, const std::string& field);
bool json_to_bool(const Json& value, const std::string& field);
std::string json_to_string(const Json& value, const std::string& field);

class FieldReader {
 public:
  // `object` must outlive the reader; `prefix` is prepended to field names in errors.
  explicit FieldReader(const Json& object, std::string prefix = "");

  // The field's value, or null when absent or JSON null.
  const Json* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  std::optional<bool> get_bool(const char* key) const;
  std::optional<int64_t> get_int(const char* key, int64_t min = std::numeric_limits<int64_t>::min(),
                                 int64_t max = std::numeric_limits<int64_t>::max()) const;
  // An int that must fit in `int` (engine fields); larger values are a 400, not a wrap.
  std::optional<int> get_int32(const char* key, int min = std::numeric_limits<int>::min(),
                               int max = std::numeric_limits<int>::max()) const;
  std::optional<double> get_double(const char* key) const;
  std::optional<std::string> get_string(const char* key) const;
  // A list of ints (each in [min, max]).
  std::optional<std::vector<int32_t>> get_int_list(const char* key, int64_t min, int64_t max) const;
  std::optional<std::vector<std::string>> get_string_list(const char* key) const;
  // A JSON object field (null when absent); a non-object is a 400.
  const Json* get_object(const char* key) const;
  // A JSON array field (null when absent); a non-array is a 400.
  const Json* get_array(const char* key) const;

  std::string field_name(std::string_view key) const { return prefix_ + std::string(key); }

 private:
  const Json& object_;
  std::string prefix_;
};

}  // namespace cvllm::server
