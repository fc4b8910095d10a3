// safetensors reader: valid files (every supported dtype, metadata, zero-size tensors), sharded
// checkpoints through model.safetensors.index.json, and every validation error with its message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loader/hf_weight_source.h"
#include "loader/safetensors.h"
#include "tensor/half.h"
#include "util/error.h"

namespace cvllm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A safetensors file: u64 LE header length, header text, data bytes.
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + data.size());
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// Header padded with spaces to a multiple of 8 bytes, as the safetensors library writes it.
std::string padded(const json& header) {
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  return text;
}

template <typename T>
void append(std::vector<uint8_t>& bytes, const std::vector<T>& values) {
  size_t at = bytes.size();
  bytes.resize(at + values.size() * sizeof(T));
  std::memcpy(bytes.data() + at, values.data(), values.size() * sizeof(T));
}

std::shared_ptr<SafetensorsFile> parse(const std::vector<uint8_t>& bytes) {
  return SafetensorsFile::parse(bytes.data(), bytes.size(), "test.safetensors");
}

// The parse error message; fails the test when parsing succeeds.
std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return "";
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& part) {
  std::string message = error_of(bytes);
  EXPECT_NE(message.find("test.safetensors: "), std::string::npos) << message;
  EXPECT_NE(message.find(part), std::string::npos)
      << "message: " << message << "\nexpected: " << part;
}

// One tensor "w" of dtype/shape/offsets with `data_bytes` bytes of data.
std::vector<uint8_t> one_tensor(const json& dtype, const json& shape, const json& offsets,
                                size_t data_bytes) {
  json h = {{"w", {{"dtype", dtype}, {"shape", shape}, {"data_offsets", offsets}}}};
  return make_file(padded(h), std::vector<uint8_t>(data_bytes, 0));
}

TEST(Safetensors, ReadsEverySupportedDtypeAndMetadata) {
  std::vector<uint8_t> data;
  append<float>(data, {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1.0f});   // a: f32 [2, 3] at [0, 24)
  append<uint16_t>(data, {f32_to_f16(0.5f), f32_to_f16(-4.0f)});  // b: f16 [2] at [24, 28)
  append<uint16_t>(data, {f32_to_bf16(1.0f), f32_to_bf16(2.0f), f32_to_bf16(-8.0f), 0});  // c
  json h = {{"__metadata__", {{"format", "pt"}}},
            {"c", {{"dtype", "BF16"}, {"shape", {2, 2}}, {"data_offsets", {28, 36}}}},
            {"a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
            {"b", {{"dtype", "F16"}, {"shape", {2}}, {"data_offsets", {24, 28}}}},
            {"empty", {{"dtype", "F32"}, {"shape", {0, 4}}, {"data_offsets", {36, 36}}}}};
  std::vector<uint8_t> bytes = make_file(padded(h), data);
  auto f = parse(bytes);
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->tensors()[0].name, "a");  // data-offset order
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafetensorsTensorInfo* a = f->find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->num_elements(), 6);
  float a_values[6];
  std::memcpy(a_values, f->tensor_data(*a), sizeof(a_values));
  EXPECT_EQ(a_values[2], 3.25f);
  const SafetensorsTensorInfo* b = f->find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kF16);
  uint16_t b1;
  std::memcpy(&b1, f->tensor_data(*b) + 2, 2);
  EXPECT_EQ(f16_to_f32(b1), -4.0f);
  const SafetensorsTensorInfo* c = f->find_tensor("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->dtype, DType::kBF16);
  uint16_t c2;
  std::memcpy(&c2, f->tensor_data(*c) + 4, 2);
  EXPECT_EQ(bf16_to_f32(c2), -8.0f);
  EXPECT_EQ(f->find_tensor("empty")->num_elements(), 0);
  EXPECT_EQ(f->find_tensor("missing"), nullptr);
}

TEST(Safetensors, EmptyHeaderObjectIsValid) {
  auto f = parse(make_file("{}      ", {}));
  EXPECT_TRUE(f->tensors().empty());
}

TEST(Safetensors, RejectsBadHeaderFraming) {
  expect_error({1, 2, 3}, "too short for a safetensors header");
  std::vector<uint8_t> huge(8, 0);
  huge[4] = 1;  // 2^32 bytes
  expect_error(huge, "exceeds the limit of");
  std::vector<uint8_t> past = make_file("{}", {});
  past[0] = 50;
  expect_error(past, "runs past the end of the file");
  expect_error(make_file("{\"a\": ", {}), "header is not valid JSON");
  expect_error(make_file("[1, 2]", {}), "header is not a JSON object");
  expect_error(make_file(std::string(40, '[') + std::string(40, ']'), {}), "nests deeper than");
}

TEST(Safetensors, RejectsBadEntries) {
  expect_error(make_file(R"({"w": 5})", {}), "tensor 'w': entry is not an object");
  expect_error(make_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 0]}})", {}),
               "tensor 'w': missing 'shape'");
  expect_error(make_file(R"({"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4], "x": 1}})",
                         std::vector<uint8_t>(4)),
               "tensor 'w': unknown key 'x'");
  expect_error(one_tensor(7, {1}, {0, 4}, 4), "tensor 'w': dtype is not a string");
  expect_error(make_file(R"({"__metadata__": {"k": 1}})", {}),
               "__metadata__ value of 'k' is not a string");
  expect_error(make_file(R"({"__metadata__": [1]})", {}), "__metadata__ is not an object");
}

TEST(Safetensors, RejectsUnsupportedDtypeNamingTheTensor) {
  for (const char* dtype : {"I64", "F64", "F8_E4M3", "BOOL", "Q4"}) {
    expect_error(one_tensor(dtype, {2}, {0, 16}, 16),
                 std::string("tensor 'w' has dtype '") + dtype +
                     "', which is not supported (supported: F32, F16, BF16)");
  }
}

TEST(Safetensors, RejectsBadShapes) {
  expect_error(one_tensor("F32", 3, {0, 12}, 12), "tensor 'w': shape is not an array");
  expect_error(one_tensor("F32", {2, -1}, {0, 8}, 8),
               "shape entries must be non-negative integers");
  expect_error(one_tensor("F32", {1.5}, {0, 8}, 8), "shape entries must be non-negative integers");
  expect_error(one_tensor("F32", {1, 1, 1, 1, 1, 1, 1, 1, 1}, {0, 4}, 4), "has 9 dimensions");
  expect_error(one_tensor("F32", {uint64_t{1} << 32, uint64_t{1} << 32}, {0, 4}, 4),
               "element count overflows");
  expect_error(one_tensor("F32", {uint64_t{1} << 62}, {0, 4}, 4), "byte size overflows");
}

TEST(Safetensors, RejectsBadOffsets) {
  expect_error(one_tensor("F32", {2}, {8}, 8), "data_offsets must be two non-negative integers");
  expect_error(one_tensor("F32", {2}, {-1, 7}, 8),
               "data_offsets must be two non-negative integers");
  expect_error(one_tensor("F32", {0}, {8, 4}, 8), "end before they begin");
  expect_error(one_tensor("F32", {3}, {0, 8}, 12), "hold 8 bytes, but its shape and dtype need 12");
  expect_error(one_tensor("F32", {2}, {8, 16}, 12), "run past the data section (12 bytes)");
  json h = {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
            {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}};
  expect_error(make_file(padded(h), std::vector<uint8_t>(12)), "tensors 'a' and 'b' overlap");
}

// The format does not promise alignment: a misaligned tensor parses, and the weight source hands
// out an aligned copy with the same values.
TEST(Safetensors, MisalignedTensorIsCopiedByTheWeightSource) {
  namespace fs = std::filesystem;
  std::vector<uint8_t> data = {0, 0};  // "pad": bf16 [1] at [0, 2); "w": f32 [2] at [2, 10)
  append<float>(data, {1.25f, -3.5f});
  json h = {{"pad", {{"dtype", "BF16"}, {"shape", {1}}, {"data_offsets", {0, 2}}}},
            {"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {2, 10}}}}};
  fs::path dir = fs::temp_directory_path() / ("cvllm_st_misaligned_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<uint8_t> bytes = make_file(padded(h), data);
  std::ofstream(dir / "model.safetensors", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto ckpt =
      std::make_shared<const SafetensorsCheckpoint>(SafetensorsCheckpoint::open_dir(dir.string()));
  HfWeightSource weights(ckpt,
                         [](const std::string& name) { return std::optional<std::string>(name); });
  Tensor w = weights.get("w", {2});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data()) % 4, 0u);
  EXPECT_EQ(w.data_as<float>()[0], 1.25f);
  EXPECT_EQ(w.data_as<float>()[1], -3.5f);
  EXPECT_EQ(weights.get_f32("pad", {1}).data_as<float>()[0], 0.0f);
  EXPECT_FALSE(weights.find("missing").has_value());
  try {
    weights.get("w", {3});
    ADD_FAILURE() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'w' (w) has shape f32[2], expected f32[3]"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

// A temporary folder with a two-shard checkpoint.
class ShardedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cvllm_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::vector<uint8_t> d1, d2;
    append<float>(d1, {1, 2, 3, 4});
    append<float>(d2, {5, 6});
    write(
        "model-00001-of-00002.safetensors",
        make_file(padded({{"x", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}}}),
                  d1));
    write("model-00002-of-00002.safetensors",
          make_file(padded({{"y", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}}),
                    d2));
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::ofstream(dir_ / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  void write_index(const json& index) {
    std::string text = index.dump();
    write("model.safetensors.index.json", std::vector<uint8_t>(text.begin(), text.end()));
  }
  std::string open_error() {
    try {
      SafetensorsCheckpoint::open_dir(dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected an error";
    return "";
  }

  fs::path dir_;
};

TEST_F(ShardedCheckpoint, FindsTensorsAcrossShards) {
  write_index(
      {{"metadata", {{"total_size", 24}}},
       {"weight_map",
        {{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}}}});
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open_dir(dir_.string());
  EXPECT_EQ(ckpt.files().size(), 2u);
  EXPECT_EQ(ckpt.num_tensors(), 2u);
  auto [y, file] = ckpt.find("y");
  ASSERT_NE(y, nullptr);
  EXPECT_NE(file->path().find("model-00002-of-00002.safetensors"), std::string::npos);
  float v;
  std::memcpy(&v, file->tensor_data(*y) + 4, 4);
  EXPECT_EQ(v, 6.0f);
  EXPECT_EQ(ckpt.find("z").first, nullptr);
}

TEST_F(ShardedCheckpoint, IndexErrorsNameTheProblem) {
  write_index({{"weight_map", {{"x", "model-00002-of-00002.safetensors"}}}});
  EXPECT_NE(
      open_error().find("tensor 'x' is listed in shard 'model-00002-of-00002.safetensors', but"),
      std::string::npos);
  write_index({{"weight_map", {{"x", "../model-00001-of-00002.safetensors"}}}});
  EXPECT_NE(open_error().find("which is not a plain file name"), std::string::npos);
  write_index({{"weight_map", {{"x", "missing.safetensors"}}}});
  EXPECT_NE(open_error().find("missing.safetensors: cannot open"), std::string::npos);
  write_index({{"metadata", {}}});
  EXPECT_NE(open_error().find("model.safetensors.index.json: index has no \"weight_map\" object"),
            std::string::npos);
  write("model.safetensors.index.json", {'{', 'x'});
  EXPECT_NE(open_error().find("index is not valid JSON"), std::string::npos);
}

TEST_F(ShardedCheckpoint, DirectoryWithoutWeightsIsAnError) {
  EXPECT_NE(open_error().find("no model.safetensors or model.safetensors.index.json"),
            std::string::npos);
}

TEST(Safetensors, OpensAFileFromDisk) {
  auto f = SafetensorsFile::open(std::string(CVLLM_SOURCE_DIR) +
                                 "/tests/golden/data/hf/llama_bf16_tied/model.safetensors");
  const SafetensorsTensorInfo* embed = f->find_tensor("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, DType::kBF16);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{256, 64}));
  EXPECT_THROW(SafetensorsFile::open("/nonexistent/model.safetensors"), Error);
}

}  // namespace
}  // namespace cvllm
