// GGUF reader tests.
// - Fixtures written by gguf-py's GGUFWriter (scripts/gen_gguf_fixtures.py) are compared value by
//   value with the JSON that gguf-py's GGUFReader dumped from the same files.
// - Corrupt inputs are built byte by byte with GgufBuilder below: each must be a cvllm::Error that
//   names the file and the problem, never a crash.
// - The real default model and the vocabulary-only testdata files parse, when present.
#include <gtest/gtest.h>

#include <bit>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kDataDir = CVLLM_SOURCE_DIR "/tests/unit/data/gguf/";
const std::string kVocabDir = CVLLM_SOURCE_DIR "/../shared/testdata/tokenizer/";
constexpr char kName[] = "test.gguf";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A tiny GGUF writer for hand-made (and deliberately broken) files.

class Bytes {
 public:
  Bytes& u8(uint8_t v) { return put(&v, 1); }
  Bytes& u32(uint32_t v) { return put(&v, 4); }
  Bytes& u64(uint64_t v) { return put(&v, 8); }
  Bytes& f32(float v) { return put(&v, 4); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    return put(s.data(), s.size());
  }
  Bytes& raw(const std::vector<uint8_t>& b) { return put(b.data(), b.size()); }
  void pad_to(size_t alignment) {
    while (data.size() % alignment != 0) data.push_back(0);
  }
  std::vector<uint8_t> data;

 private:
  Bytes& put(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) data.push_back(b[i]);  // (insert() trips GCC 12's -Wnonnull)
    return *this;
  }
};

constexpr uint32_t kTypeF32 = 0, kTypeQ8_0 = 8;

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = kTypeF32;
  std::optional<uint64_t> offset;   // default: after the previous tensor, aligned
  std::optional<size_t> num_bytes;  // default: what the shape and type need
};

class GgufBuilder {
 public:
  uint32_t version = 3;
  uint32_t magic = 0x46554747;
  std::optional<uint64_t> tensor_count;  // overrides the real counts
  std::optional<uint64_t> kv_count;
  size_t alignment = 32;  // layout only; a general.alignment key must be added explicitly

  GgufBuilder& kv(std::string key, uint32_t type, const Bytes& payload) {
    kvs_.push_back(Bytes().str(key).u32(type).raw(payload.data).data);
    return *this;
  }
  GgufBuilder& kv_u32(std::string key, uint32_t v) { return kv(key, 4, Bytes().u32(v)); }
  GgufBuilder& kv_string(std::string key, std::string_view v) { return kv(key, 8, Bytes().str(v)); }
  GgufBuilder& tensor(std::string name, std::vector<uint64_t> dims, uint32_t type = kTypeF32,
                      std::optional<uint64_t> offset = {}, std::optional<size_t> num_bytes = {}) {
    tensors_.push_back({std::move(name), std::move(dims), type, offset, num_bytes});
    return *this;
  }

  std::vector<uint8_t> build() const {
    Bytes b;
    b.u32(magic).u32(version);
    b.u64(tensor_count.value_or(tensors_.size())).u64(kv_count.value_or(kvs_.size()));
    for (const auto& kv : kvs_) b.raw(kv);
    std::vector<size_t> sizes, offsets;
    size_t next = 0;  // end of the data section; tensors placed past kMaxData get no bytes
    for (const TensorSpec& t : tensors_) {
      size_t n = t.num_bytes.value_or(default_bytes(t));
      size_t offset = t.offset.value_or(next);
      sizes.push_back(n);
      offsets.push_back(offset);
      if (offset < kMaxData && n < kMaxData) {
        next = std::max(next, (offset + n + alignment - 1) / alignment * alignment);
      }
      b.str(t.name).u32(t.dims.size());
      for (uint64_t d : t.dims) b.u64(d);
      b.u32(t.type).u64(offset);
    }
    if (tensors_.empty()) return b.data;
    b.pad_to(alignment);
    size_t data_start = b.data.size();
    b.data.resize(data_start + next, 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (offsets[i] >= kMaxData) continue;
      for (size_t j = 0; j < sizes[i] && offsets[i] + j < next; ++j) {
        b.data[data_start + offsets[i] + j] = static_cast<uint8_t>(i * 31 + j);
      }
    }
    return b.data;
  }

 private:
  static constexpr size_t kMaxData = size_t{1} << 20;

  static size_t default_bytes(const TensorSpec& t) {
    std::optional<DTypeTraits> traits = dtype_traits(t.type);
    if (!traits) return 16;
    uint64_t n = 1;
    for (uint64_t d : t.dims) n *= d;
    return n / traits->block_size * traits->type_size;
  }

  std::vector<std::vector<uint8_t>> kvs_;
  std::vector<TensorSpec> tensors_;
};

std::shared_ptr<GgufFile> parse_bytes(const std::vector<uint8_t>& bytes) {
  return GgufFile::parse(bytes.data(), bytes.size(), kName);
}

// Parsing must fail with a cvllm::Error "<file>: ..." that contains every fragment.
void expect_error(const std::vector<uint8_t>& bytes, const std::vector<std::string>& fragments) {
  try {
    parse_bytes(bytes);
    ADD_FAILURE() << "parsed without error; expected: " << fragments.front();
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_EQ(message.rfind(std::string(kName) + ": ", 0), 0u) << message;
    for (const std::string& f : fragments) {
      EXPECT_NE(message.find(f), std::string::npos) << "'" << f << "' not in: " << message;
    }
  }
}

GgufBuilder valid_builder() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama").kv_u32("llama.block_count", 2);
  b.tensor("a", {4, 2}).tensor("b", {64}, kTypeQ8_0);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Fixtures against gguf-py's reader.

void expect_value_matches(const GgufValue& v, uint32_t type, const json& j, const std::string& at) {
  ASSERT_EQ(static_cast<uint32_t>(v.type), type) << at;
  switch (v.type) {
    case GgufValueType::kUint8:
    case GgufValueType::kUint16:
    case GgufValueType::kUint32:
    case GgufValueType::kUint64:
      EXPECT_EQ(v.uint_value, j.get<uint64_t>()) << at;
      EXPECT_EQ(v.int_value, static_cast<int64_t>(j.get<uint64_t>())) << at;
      break;
    case GgufValueType::kInt8:
    case GgufValueType::kInt16:
    case GgufValueType::kInt32:
    case GgufValueType::kInt64:
      EXPECT_EQ(v.int_value, j.get<int64_t>()) << at;
      break;
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64:  // bit-exact, so -0.0 and denormals count
      EXPECT_EQ(std::bit_cast<uint64_t>(v.float_value), std::bit_cast<uint64_t>(j.get<double>()))
          << at << ": " << v.float_value << " vs " << j.get<double>();
      break;
    case GgufValueType::kBool:
      EXPECT_EQ(v.bool_value, j.get<bool>()) << at;
      break;
    case GgufValueType::kString:
      EXPECT_EQ(v.string_value,
                j.is_string() ? j.get<std::string>() : from_hex(j.at("hex").get<std::string>()))
          << at;
      break;
    case GgufValueType::kArray: {
      uint32_t element_type = j.at("element_type").get<uint32_t>();
      EXPECT_EQ(static_cast<uint32_t>(v.array_type), element_type) << at;
      const json& elements = j.at("elements");
      ASSERT_EQ(v.array.size(), elements.size()) << at;
      for (size_t i = 0; i < v.array.size(); ++i) {
        expect_value_matches(v.array[i], element_type, elements[i],
                             at + "[" + std::to_string(i) + "]");
      }
      break;
    }
  }
}

void expect_matches_gguf_py(const std::string& stem) {
  std::string path = kDataDir + stem + ".gguf";
  std::ifstream json_in(kDataDir + stem + ".json");
  ASSERT_TRUE(json_in.good()) << "missing " << stem << ".json; run scripts/gen_gguf_fixtures.py";
  json expected = json::parse(json_in);

  std::shared_ptr<GgufFile> file = GgufFile::open(path);
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(file->version(), expected["version"].get<uint32_t>());
  EXPECT_EQ(file->alignment(), expected["alignment"].get<size_t>());
  EXPECT_EQ(file->data_offset(), expected["data_offset"].get<size_t>());

  const json& metadata = expected["metadata"];
  ASSERT_EQ(file->metadata().size(), metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    const auto& [key, value] = file->metadata()[i];
    const json& m = metadata[i];
    EXPECT_EQ(key, m["key"].get<std::string>());  // file order is kept
    EXPECT_EQ(gguf_value_type_name(value.type), m["type_name"].get<std::string>()) << key;
    EXPECT_EQ(file->find(key), &value) << key;
    expect_value_matches(value, m["type"].get<uint32_t>(), m["value"], key);
  }

  const json& tensors = expected["tensors"];
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& t = file->tensors()[i];
    const json& e = tensors[i];
    EXPECT_EQ(t.name, e["name"].get<std::string>());
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>()) << t.name;
    EXPECT_EQ(static_cast<uint32_t>(t.dtype), e["type"].get<uint32_t>()) << t.name;
    EXPECT_EQ(t.offset, e["offset"].get<uint64_t>()) << t.name;
    EXPECT_EQ(t.num_elements(), e["n_elements"].get<int64_t>()) << t.name;
    EXPECT_EQ(t.num_bytes, e["n_bytes"].get<size_t>()) << t.name;
    EXPECT_EQ(file->find_tensor(t.name), &t);
    std::string bytes(reinterpret_cast<const char*>(file->tensor_data(t)), t.num_bytes);
    EXPECT_EQ(bytes, from_hex(e["data_hex"].get<std::string>())) << t.name;
  }
  EXPECT_EQ(file->find("no.such.key"), nullptr);
  EXPECT_EQ(file->find_tensor("no.such.tensor"), nullptr);
}

TEST(GgufFixture, AllTypesMatchesGgufPyReader) {
  expect_matches_gguf_py("all_types");
}
TEST(GgufFixture, Version2MatchesGgufPyReader) {
  expect_matches_gguf_py("v2");
}
TEST(GgufFixture, VocabSmallMatchesGgufPyReader) {
  expect_matches_gguf_py("vocab_small");
}

TEST(GgufFixture, ParseOfBufferEqualsOpen) {
  std::vector<uint8_t> bytes = read_bytes(kDataDir + "all_types.gguf");
  auto from_buffer = parse_bytes(bytes);
  auto from_file = GgufFile::open(kDataDir + "all_types.gguf");
  EXPECT_EQ(from_buffer->path(), kName);
  ASSERT_EQ(from_buffer->tensors().size(), from_file->tensors().size());
  for (const GgufTensorInfo& t : from_buffer->tensors()) {
    EXPECT_EQ(from_buffer->tensor_data(t), bytes.data() + from_buffer->data_offset() + t.offset);
  }
}

TEST(GgufFixture, TypedGetters) {
  auto file = GgufFile::open(kDataDir + "all_types.gguf");
  EXPECT_EQ(file->get_string("general.architecture"), "llama");
  EXPECT_EQ(file->get_string("test.string_empty"), "");
  EXPECT_EQ(file->get_int("test.uint8"), 255);
  EXPECT_EQ(file->get_int("test.int64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(file->get_int("test.uint64_small"), 42);
  EXPECT_EQ(file->get_float("test.float64"), 2.718281828459045);
  EXPECT_EQ(file->get_float("test.int16"), -32768.0);  // integers widen to float
  EXPECT_EQ(file->get_bool("test.bool_true"), true);
  EXPECT_EQ(file->get_bool("test.bool_false"), false);
  EXPECT_EQ(file->get_string_array("test.array.string"),
            (std::vector<std::string>{"a", "", "ünïcödé", "<|im_start|>"}));
  EXPECT_EQ(file->get_int_array("test.array.int8"), (std::vector<int64_t>{-128, 0, 127}));
  EXPECT_EQ(file->get_int_array("test.array.uint32"), (std::vector<int64_t>{0, 4294967295}));
  EXPECT_EQ(file->get_int_array("test.array.empty_uint32"), std::vector<int64_t>{});
  EXPECT_EQ(file->get_float_array("test.array.float32"), (std::vector<float>{0.5f, -1.25f, 1e30f}));
  EXPECT_EQ(file->get_float_array("test.array.int16"), (std::vector<float>{-32768.f, 32767.f}));

  EXPECT_EQ(file->get_string("absent"), std::nullopt);
  EXPECT_EQ(file->get_int("absent"), std::nullopt);
  EXPECT_EQ(file->get_float_array("absent"), std::nullopt);

  auto expect_throws = [&](auto&& fn, const std::string& fragment) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_throws([&] { file->get_int("test.uint64"); }, "'test.uint64' value 18446744073709551615");
  expect_throws([&] { file->get_int("test.string"); },
                "'test.string' is string, expected an integer");
  expect_throws([&] { file->get_string("test.uint8"); }, "'test.uint8' is uint8, expected string");
  expect_throws([&] { file->get_bool("test.uint8"); }, "expected bool");
  expect_throws([&] { file->get_float("test.bool_true"); }, "expected a number");
  expect_throws([&] { file->get_int_array("test.array.uint64"); }, "does not fit in int64");
  expect_throws([&] { file->get_string_array("test.array.nested"); },
                "'test.array.nested' is array of array");
  expect_throws([&] { file->get_float_array("test.array.string"); }, "is array of string");
}

TEST(GgufFixture, OpenMissingFileNamesThePath) {
  try {
    GgufFile::open(kDataDir + "missing.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.gguf"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Corrupt and unusual files.

TEST(GgufCorrupt, EveryTruncationIsAnError) {
  for (const char* stem : {"all_types", "v2", "vocab_small"}) {
    std::vector<uint8_t> bytes = read_bytes(kDataDir + stem + ".gguf");
    auto full = parse_bytes(bytes);
    // Bytes past the end of the last tensor are padding; cutting them loses nothing.
    size_t required = 0;
    for (const GgufTensorInfo& t : full->tensors()) {
      required = std::max<size_t>(required, full->data_offset() + t.offset + t.num_bytes);
    }
    if (full->tensors().empty()) {
      // Metadata only: the file may end right after the last value, before the padding.
      while (required < bytes.size()) {
        try {
          parse_bytes(std::vector<uint8_t>(bytes.begin(), bytes.begin() + required));
          break;
        } catch (const Error&) {
          ++required;
        }
      }
      EXPECT_GT(required + full->alignment(), bytes.size()) << stem;
    }
    for (size_t n = 0; n < bytes.size(); ++n) {
      std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
      if (n < required) {
        expect_error(cut, {"truncated"});
      } else {
        EXPECT_NO_THROW(parse_bytes(cut)) << stem << " cut at " << n;
      }
    }
  }
}

TEST(GgufCorrupt, ByteFlipsAreErrorsOrParse) {
  std::vector<uint8_t> bytes = read_bytes(kDataDir + "v2.gguf");
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t v : {uint8_t{0x00}, uint8_t{0xff}, uint8_t{0x80}, uint8_t{0x41}}) {
      std::vector<uint8_t> changed = bytes;
      changed[i] = v;
      try {
        parse_bytes(changed);
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(std::string(kName) + ": ", 0), 0u) << e.what();
      }
    }
  }
}

TEST(GgufCorrupt, EmptyBuffer) {
  expect_error({}, {"truncated", "magic"});
}

TEST(GgufCorrupt, BadMagic) {
  GgufBuilder b = valid_builder();
  b.magic = 0x46554746;
  expect_error(b.build(), {"not a GGUF file", "starts with bytes 46 47 55 46"});
}

TEST(GgufCorrupt, UnsupportedVersions) {
  for (uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
    GgufBuilder b = valid_builder();
    b.version = version;
    expect_error(b.build(), {"unsupported version " + std::to_string(version)});
  }
  GgufBuilder b = valid_builder();
  b.version = 0x03000000;
  expect_error(b.build(), {"big-endian"});
}

TEST(GgufCorrupt, BuilderFilesParse) {
  for (uint32_t version : {2u, 3u}) {
    GgufBuilder b = valid_builder();
    b.version = version;
    auto file = parse_bytes(b.build());
    EXPECT_EQ(file->version(), version);
    EXPECT_EQ(file->get_int("llama.block_count"), 2);
    ASSERT_EQ(file->tensors().size(), 2u);
    EXPECT_EQ(file->tensors()[1].dtype, DType::kQ8_0);
    EXPECT_EQ(file->tensors()[1].num_bytes, 68u);  // two q8_0 blocks
    EXPECT_EQ(file->tensors()[1].offset, 32u);
  }
}

TEST(GgufCorrupt, UnknownValueType) {
  GgufBuilder b = valid_builder();
  b.kv("bad.key", 13, Bytes().u32(0));
  expect_error(b.build(), {"metadata key 'bad.key'", "unknown value type 13"});
}

TEST(GgufCorrupt, UnknownArrayElementType) {
  GgufBuilder b = valid_builder();
  b.kv("bad.array", 9, Bytes().u32(99).u64(1).u32(0));
  expect_error(b.build(), {"'bad.array'", "unknown array element type 99"});
}

TEST(GgufCorrupt, UnknownGgmlType) {
  GgufBuilder b;
  b.tensor("weird", {32}, 4, std::nullopt, 32);  // 4 was Q4_2, removed from ggml
  expect_error(b.build(), {"tensor 'weird'", "unknown ggml type id 4"});
  GgufBuilder c;
  c.tensor("future", {32}, 1000, std::nullopt, 32);
  expect_error(c.build(), {"tensor 'future'", "1000"});
}

TEST(GgufCorrupt, HugeCounts) {
  GgufBuilder tensors = valid_builder();
  tensors.tensor_count = uint64_t{1} << 60;
  expect_error(tensors.build(), {"tensor count 1152921504606846976", "truncated"});
  GgufBuilder kvs = valid_builder();
  kvs.kv_count = ~uint64_t{0};
  expect_error(kvs.build(), {"metadata count 18446744073709551615", "truncated"});
  GgufBuilder array = valid_builder();
  array.kv("big.array", 9, Bytes().u32(4).u64(uint64_t{1} << 61).u32(0));
  expect_error(array.build(), {"array of 2305843009213693952 uint32", "'big.array'", "truncated"});
  GgufBuilder strings = valid_builder();
  strings.kv("big.strings", 9, Bytes().u32(8).u64(1000000).str("x"));
  expect_error(strings.build(), {"array of 1000000 string", "truncated"});
}

TEST(GgufCorrupt, MetadataValueLimit) {
  // The bytes are all there, but 8M+ one-byte values would cost ~100x their size in memory.
  GgufBuilder b;
  Bytes payload;
  payload.u32(0).u64(kGgufMaxMetadataValues + 1);
  payload.data.resize(payload.data.size() + kGgufMaxMetadataValues + 1, 0);
  b.kv("huge.bytes", 9, payload);
  expect_error(b.build(), {"'huge.bytes'", "limit of 8388608 metadata values"});
}

TEST(GgufCorrupt, StringLengthPastEnd) {
  GgufBuilder value = valid_builder();
  value.kv("s", 8, Bytes().u64(~uint64_t{0}));
  expect_error(value.build(), {"truncated", "metadata key 's'", "length 18446744073709551615"});
  Bytes key;
  key.u32(0x46554747).u32(3).u64(0).u64(1).u64(100).raw(std::vector<uint8_t>(20, 'a'));
  expect_error(key.data, {"truncated", "length 100", "offset 24"});
  GgufBuilder name;
  name.tensor(std::string(10, 'n'), {4});
  std::vector<uint8_t> bytes = name.build();
  bytes[24] = 200;  // the tensor name's length
  expect_error(bytes, {"truncated", "tensor #0", "length 200"});
}

TEST(GgufCorrupt, TensorDataPastEnd) {
  std::vector<uint8_t> bytes = valid_builder().build();
  auto full = parse_bytes(bytes);
  const GgufTensorInfo& b = full->tensors()[1];
  bytes.resize(full->data_offset() + b.offset + b.num_bytes - 1);
  expect_error(bytes, {"truncated", "tensor 'b'", "68 bytes"});
  GgufBuilder far;
  far.tensor("far", {4}, kTypeF32, uint64_t{1} << 62, 0);
  expect_error(far.build(), {"truncated", "tensor 'far'", "4611686018427387904"});
  GgufBuilder far_empty;  // even an empty tensor must point inside the file
  far_empty.tensor("far_empty", {0}, kTypeF32, uint64_t{1} << 40);
  expect_error(far_empty.build(), {"truncated", "tensor 'far_empty'"});
  GgufBuilder wrap;  // offset + size wraps around 2^64
  wrap.tensor("wrap", {8}, kTypeF32, ~uint64_t{31}, 0);
  expect_error(wrap.build(), {"truncated", "tensor 'wrap'"});
}

TEST(GgufCorrupt, MisalignedOffset) {
  GgufBuilder b;
  b.tensor("a", {4}).tensor("b", {4}, kTypeF32, 16);
  expect_error(b.build(), {"tensor 'b'", "data offset 16", "not a multiple of the alignment 32"});
}

TEST(GgufCorrupt, BadDimensions) {
  GgufBuilder overflow;
  overflow.tensor("big", {uint64_t{1} << 32, uint64_t{1} << 32}, kTypeF32, 0, 0);
  expect_error(overflow.build(), {"tensor 'big'", "overflows int64"});
  GgufBuilder hidden;  // a zero dimension must not hide an overflowing product
  hidden.tensor("big0", {0, uint64_t{1} << 40, uint64_t{1} << 40}, kTypeF32, 0, 0);
  expect_error(hidden.build(), {"tensor 'big0'", "overflows int64"});
  GgufBuilder bytes;  // the element count fits, the byte count does not
  bytes.tensor("wide", {uint64_t{1} << 31, uint64_t{1} << 31}, kTypeF32, 0, 0);
  expect_error(bytes.build(), {"tensor 'wide'", "byte size", "overflows"});
  GgufBuilder negative;
  negative.tensor("neg", {~uint64_t{0}}, kTypeF32, 0, 0);
  expect_error(negative.build(), {"tensor 'neg'", "dimension 0", "negative"});
  GgufBuilder five;
  five.tensor("five", {1, 1, 1, 1, 1});
  expect_error(five.build(), {"tensor 'five'", "has 5 dimensions", "1 to 4"});
  GgufBuilder zero;
  zero.tensor("zero", {}, kTypeF32, 0, 4);
  expect_error(zero.build(), {"tensor 'zero'", "has 0 dimensions"});
  GgufBuilder block;
  block.tensor("q", {48, 2}, kTypeQ8_0, 0, 102);
  expect_error(block.build(), {"tensor 'q'", "first dimension 48", "q8_0 block size 32"});
}

TEST(GgufCorrupt, EmptyTensorsAreAllowed) {
  GgufBuilder b;
  b.tensor("empty", {0, 7}).tensor("empty_q", {0}, kTypeQ8_0).tensor("a", {3});
  auto file = parse_bytes(b.build());
  ASSERT_EQ(file->tensors().size(), 3u);
  EXPECT_EQ(file->tensors()[0].num_elements(), 0);
  EXPECT_EQ(file->tensors()[0].num_bytes, 0u);
  EXPECT_EQ(file->tensors()[2].num_bytes, 12u);
  EXPECT_EQ(file->tensors()[2].offset, 0u);  // empty tensors take no room
}

TEST(GgufCorrupt, DuplicateNames) {
  GgufBuilder tensors;
  tensors.tensor("same", {4}).tensor("same", {4});
  expect_error(tensors.build(), {"duplicate tensor name 'same'"});
  GgufBuilder keys = valid_builder();
  keys.kv_u32("llama.block_count", 3);
  expect_error(keys.build(), {"duplicate metadata key 'llama.block_count'", "offset"});
}

TEST(GgufCorrupt, OverlappingTensors) {
  GgufBuilder b;
  b.tensor("a", {16}).tensor("b", {8}, kTypeF32, 32);  // a is bytes 0..64
  expect_error(b.build(), {"tensors 'a'", "'b'", "overlap"});
  GgufBuilder shared;
  shared.tensor("x", {8}, kTypeF32, 0).tensor("y", {8}, kTypeF32, 0);
  expect_error(shared.build(), {"'x'", "'y'", "overlap"});
}

TEST(GgufCorrupt, Alignment) {
  for (uint32_t bad : {0u, 3u, 48u}) {
    GgufBuilder b = valid_builder();
    b.kv_u32("general.alignment", bad);
    expect_error(b.build(), {"general.alignment", "power of two", std::to_string(bad)});
  }
  GgufBuilder str = valid_builder();
  str.kv_string("general.alignment", "64");
  expect_error(str.build(), {"general.alignment must be an integer", "string"});

  GgufBuilder ok = valid_builder();
  ok.alignment = 128;
  ok.kv_u32("general.alignment", 128);
  auto file = parse_bytes(ok.build());
  EXPECT_EQ(file->alignment(), 128u);
  EXPECT_EQ(file->data_offset() % 128, 0u);
  EXPECT_EQ(file->tensors()[1].offset, 128u);
}

TEST(GgufCorrupt, ArrayNestingIsBounded) {
  auto nested = [](int levels) {
    Bytes value;
    for (int i = 1; i < levels; ++i) value.u32(9).u64(1);  // array of one array ...
    value.u32(4).u64(1).u32(7);                            // ... of one uint32
    GgufBuilder b;
    b.kv("deep", 9, value);
    return b.build();
  };
  auto file = parse_bytes(nested(kGgufMaxArrayDepth));
  const GgufValue* v = file->find("deep");
  for (int i = 1; i < kGgufMaxArrayDepth; ++i) {
    ASSERT_EQ(v->array_type, GgufValueType::kArray);
    v = &v->array.at(0);
  }
  EXPECT_EQ(v->array.at(0).uint_value, 7u);
  expect_error(nested(kGgufMaxArrayDepth + 1), {"'deep'", "nests arrays deeper than 8"});
  expect_error(nested(100000), {"nests arrays deeper"});
}

TEST(GgufCorrupt, MetadataOnlyFileNeedsNoPadding) {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  auto file = parse_bytes(b.build());
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_EQ(file->get_string("general.architecture"), "llama");
}

// ---------------------------------------------------------------------------------------------
// Real files.

TEST(GgufRealModel, DefaultModel) {
  const char* home = std::getenv("HOME");
  std::string path =
      std::string(home ? home : "") + "/.cache/cvllm/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "default model not found at " << path;
  auto file = GgufFile::open(path);
  EXPECT_EQ(file->tensors().size(), 272u);
  EXPECT_EQ(file->get_string("general.architecture"), "llama");
  EXPECT_EQ(file->get_int("llama.block_count"), 30);
  EXPECT_EQ(file->get_string_array("tokenizer.ggml.tokens")->size(), 49152u);
  const GgufTensorInfo* embd = file->find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dtype, DType::kQ8_0);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(embd->num_bytes, size_t{576} / 32 * 34 * 49152);
  size_t file_size = fs::file_size(path);
  for (const GgufTensorInfo& t : file->tensors()) {
    EXPECT_LE(file->data_offset() + t.offset + t.num_bytes, file_size) << t.name;
    EXPECT_EQ(t.offset % file->alignment(), 0u) << t.name;
  }
}

TEST(GgufRealModel, VocabularyTestdataFiles) {
  if (!fs::exists(kVocabDir)) GTEST_SKIP() << kVocabDir << " not found";
  int count = 0;
  for (const auto& entry : fs::directory_iterator(kVocabDir)) {
    if (entry.path().extension() != ".gguf") continue;
    ++count;
    std::shared_ptr<GgufFile> file;
    ASSERT_NO_THROW(file = GgufFile::open(entry.path().string())) << entry.path();
    auto tokens = file->get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens.has_value()) << entry.path();
    EXPECT_GT(tokens->size(), 1000u) << entry.path();
    EXPECT_TRUE(file->get_string("tokenizer.ggml.model").has_value()) << entry.path();
  }
  EXPECT_GT(count, 0);
}

}  // namespace
}  // namespace cvllm
