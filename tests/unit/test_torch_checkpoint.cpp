// The torch.save zip reader (loader/torch_checkpoint.h) on files written by torch.save
// (tests/unit/data/torch_checkpoint/, scripts/gen_torch_bin_fixtures.py): a valid state dict whose
// tensors are compared value by value with what torch wrote (valid.json), and files torch or a
// hostile writer can produce that must be refused with a clear Error: the legacy format,
// compressed entries, forbidden globals, non-contiguous and complex tensors, missing or short
// storages, big-endian data, nested dicts. Byte-level corruption (every truncation, bad offsets in
// the zip records, single-byte flips) must end in an Error, never a crash. Hand-made pickles in a
// hand-made zip check the unpickler's own limits.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loader/torch_checkpoint.h"
#include "tensor/half.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;
using namespace std::string_literals;

const std::string kDir = CVLLM_SOURCE_DIR "/tests/unit/data/torch_checkpoint/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::shared_ptr<TorchCheckpointFile> parse(const std::vector<uint8_t>& bytes) {
  return TorchCheckpointFile::parse(bytes.data(), bytes.size(), "test.bin");
}

// The Error message of opening `file`, or "" when it opened.
std::string open_error(const std::string& file) {
  try {
    TorchCheckpointFile::open(kDir + file);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<float> values_of(const TorchCheckpointFile& f, const TorchTensorInfo& t) {
  std::vector<float> out;
  const uint8_t* p = f.tensor_data(t);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    if (*t.dtype == DType::kF32) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      out.push_back(v);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out.push_back(*t.dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h));
    }
  }
  return out;
}

TEST(TorchCheckpoint, ValidStateDictMatchesTorch) {
  auto file = TorchCheckpointFile::open(kDir + "valid.bin");
  std::ifstream in(kDir + "valid.json");
  nlohmann::ordered_json expected = nlohmann::ordered_json::parse(in);  // in torch's order
  ASSERT_EQ(file->tensors().size(), expected.size());
  size_t k = 0;
  for (const auto& [name, e] : expected.items()) {
    const TorchTensorInfo& t = file->tensors()[k++];
    SCOPED_TRACE(name);
    EXPECT_EQ(t.name, name) << "tensors keep the pickle's order";
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>());
    const std::string dtype = e["dtype"];
    if (dtype == "int64") {
      EXPECT_FALSE(t.dtype.has_value());
      EXPECT_EQ(t.storage_type, "LongStorage");
      continue;
    }
    ASSERT_TRUE(t.dtype.has_value());
    EXPECT_EQ(*t.dtype, dtype == "float32"   ? DType::kF32
                        : dtype == "float16" ? DType::kF16
                                             : DType::kBF16);
    EXPECT_EQ(values_of(*file, t), e["values"].get<std::vector<float>>());
    // torch.save pads local headers so every storage starts 64-byte aligned: views need no copy.
    const uint64_t storage_start =
        t.file_offset - static_cast<uint64_t>(t.storage_offset) * traits(*t.dtype).type_size;
    EXPECT_EQ(storage_start % 64, 0u);
  }
}

// torch.save(..., pickle_protocol=4) frames the pickle and uses its short opcodes.
TEST(TorchCheckpoint, Protocol4PickleGivesTheSameTensors) {
  auto v2 = TorchCheckpointFile::open(kDir + "valid.bin");
  auto v4 = TorchCheckpointFile::open(kDir + "valid_proto4.bin");
  ASSERT_EQ(v4->tensors().size(), v2->tensors().size());
  for (size_t i = 0; i < v2->tensors().size(); ++i) {
    const TorchTensorInfo &a = v2->tensors()[i], &b = v4->tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.shape, b.shape);
    EXPECT_EQ(a.storage_type, b.storage_type);
    ASSERT_EQ(a.num_bytes, b.num_bytes);
    EXPECT_EQ(std::memcmp(v2->tensor_data(a), v4->tensor_data(b), a.num_bytes), 0) << a.name;
  }
}

TEST(TorchCheckpoint, SharedStoragesAndViews) {
  auto file = TorchCheckpointFile::open(kDir + "valid.bin");
  const TorchTensorInfo* w = file->find_tensor("linear.weight");
  const TorchTensorInfo* tied = file->find_tensor("tied.weight");
  const TorchTensorInfo* view = file->find_tensor("row_view");
  ASSERT_TRUE(w && tied && view);
  EXPECT_EQ(file->tensor_data(*tied), file->tensor_data(*w)) << "tied weights share one storage";
  EXPECT_EQ(view->storage_key, w->storage_key);
  EXPECT_EQ(view->storage_offset, 6);
  EXPECT_EQ(file->tensor_data(*view), file->tensor_data(*w) + 6 * sizeof(float));
  EXPECT_EQ(file->find_tensor("missing"), nullptr);
}

TEST(TorchCheckpoint, WeightSourceGivesViewsAndNamesUnloadableTypes) {
  auto ckpt = std::make_shared<TorchCheckpoint>(TorchCheckpoint::from_index(
      R"({"weight_map": {"linear.weight": "valid.bin", "position_ids": "valid.bin"}})",
      "index.json",
      [](const std::string& shard) { return TorchCheckpointFile::open(kDir + shard); }));
  TorchWeightSource source(ckpt,
                           [](const std::string& n) { return std::optional<std::string>(n); });
  std::optional<Tensor> w = source.find("linear.weight");
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->shape(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(w->dtype(), DType::kF32);
  auto [info, file] = ckpt->find("linear.weight");
  EXPECT_EQ(w->data(), static_cast<const void*>(file->tensor_data(*info))) << "zero-copy view";
  EXPECT_FALSE(source.find("linear.bias").has_value()) << "not in the index";
  try {
    source.find("position_ids");
    FAIL() << "an int64 tensor cannot be loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LongStorage"), std::string::npos) << e.what();
  }
}

TEST(TorchCheckpoint, IndexIsChecked) {
  auto loader = [](const std::string& shard) { return TorchCheckpointFile::open(kDir + shard); };
  EXPECT_THROW(TorchCheckpoint::from_index(R"({"weight_map": {"a": "../valid.bin"}})", "i", loader),
               Error);
  EXPECT_THROW(TorchCheckpoint::from_index(R"({"weight_map": {"nope": "valid.bin"}})", "i", loader),
               Error);
  EXPECT_THROW(TorchCheckpoint::from_index(R"({"weight_map": []})", "i", loader), Error);
  EXPECT_THROW(TorchCheckpoint::from_index("{", "i", loader), Error);
}

TEST(TorchCheckpoint, RefusesWhatTorchCanWriteButWeDoNotLoad) {
  const std::pair<const char*, const char*> cases[] = {
      {"legacy.bin", "legacy (pre-1.6, non-zip)"},
      {"compressed.bin", "is compressed"},
      {"forbidden_global.bin", "global 'posix.system' is not allowed"},
      {"transposed.bin", "not contiguous"},
      {"complex.bin", "torch.ComplexFloatStorage is not supported"},
      {"missing_storage.bin", "has no data/0 entry"},
      {"short_storage.bin", "but the pickle says"},
      {"big_endian.bin", "only little-endian"},
      {"nested.bin", "entry 'model' is not a tensor"},
  };
  for (const auto& [file, message] : cases) {
    std::string error = open_error(file);
    EXPECT_NE(error.find(message), std::string::npos) << file << ": " << error;
    EXPECT_NE(error.find(file), std::string::npos) << "the error names the file: " << error;
  }
}

TEST(TorchCheckpoint, EveryTruncationIsAnError) {
  std::vector<uint8_t> bytes = read_bytes(kDir + "valid.bin");
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(parse_error(cut), "") << "truncated to " << n << " bytes";
  }
}

// Byte offsets of the zip records in a valid file: end record and each central header.
size_t find_signature(const std::vector<uint8_t>& b, uint32_t sig, size_t from = 0) {
  for (size_t i = from; i + 4 <= b.size(); ++i) {
    if (b[i] == (sig & 0xFF) && b[i + 1] == ((sig >> 8) & 0xFF) &&
        b[i + 2] == ((sig >> 16) & 0xFF) && b[i + 3] == (sig >> 24))
      return i;
  }
  return std::string::npos;
}

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

TEST(TorchCheckpoint, BadZipOffsetsAreErrors) {
  const std::vector<uint8_t> bytes = read_bytes(kDir + "valid.bin");
  const size_t end = find_signature(bytes, 0x06054b50);
  const size_t central = find_signature(bytes, 0x02014b50);
  ASSERT_NE(end, std::string::npos);
  ASSERT_NE(central, std::string::npos);
  ASSERT_EQ(parse_error(bytes), "");
  for (uint32_t bad : {0u, 1u, 0x7FFFFFFFu, static_cast<uint32_t>(bytes.size())}) {
    std::vector<uint8_t> b = bytes;
    put_u32(b, end + 16, bad);  // central directory offset
    EXPECT_NE(parse_error(b), "") << "directory offset " << bad;
    b = bytes;
    put_u32(b, end + 12, bad);  // central directory size
    if (bad != static_cast<uint32_t>(end - central)) {
      EXPECT_NE(parse_error(b), "") << "directory size " << bad;
    }
    b = bytes;
    put_u32(b, central + 42, bad + 7);  // first entry's local header offset
    EXPECT_NE(parse_error(b), "") << "local header offset " << bad + 7;
    b = bytes;
    put_u32(b, central + 24, bad + 1000000);  // first entry's size
    put_u32(b, central + 20, bad + 1000000);
    EXPECT_NE(parse_error(b), "") << "entry size " << bad + 1000000;
  }
}

TEST(TorchCheckpoint, ByteFlipsNeverCrash) {
  const std::vector<uint8_t> bytes = read_bytes(kDir + "valid.bin");
  int num_errors = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t x : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
      std::vector<uint8_t> b = bytes;
      b[i] ^= x;
      try {
        auto f = parse(b);
        for (const TorchTensorInfo& t : f->tensors()) {
          if (t.num_bytes > 0) {
            const uint8_t* p = f->tensor_data(t);
            ASSERT_GE(p, b.data());
            ASSERT_LE(p + t.num_bytes, b.data() + b.size());
          }
        }
      } catch (const Error&) {
        ++num_errors;
      }
    }
  }
  EXPECT_GT(num_errors, 0);
}

// --- hand-made archives ------------------------------------------------------------------------

// A stored zip of `entries` (CRCs left 0: the reader does not check them). With `zip64`, each
// central header says 0xFFFFFFFF for its sizes and offset and carries them in a zip64 extra field,
// as torch writes entries past 4 GiB.
std::vector<uint8_t> make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                              bool zip64 = false) {
  std::vector<uint8_t> out, central;
  auto u16 = [](std::vector<uint8_t>& b, uint32_t v) {
    b.push_back(v & 0xFF);
    b.push_back((v >> 8) & 0xFF);
  };
  auto u32 = [&](std::vector<uint8_t>& b, uint32_t v) {
    u16(b, v & 0xFFFF);
    u16(b, v >> 16);
  };
  for (const auto& [name, data] : entries) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    u32(out, 0x04034b50);
    for (uint32_t v : {20u, 0u, 0u, 0u, 0u}) u16(out, v);  // version, flags, method, time, date
    u32(out, 0);                                           // crc
    u32(out, static_cast<uint32_t>(data.size()));
    u32(out, static_cast<uint32_t>(data.size()));
    u16(out, static_cast<uint32_t>(name.size()));
    u16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    const uint32_t size32 = zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(data.size());
    u32(central, 0x02014b50);
    for (uint32_t v : {20u, 20u, 0u, 0u, 0u, 0u}) u16(central, v);
    u32(central, 0);
    u32(central, size32);
    u32(central, size32);
    for (uint32_t v : {static_cast<uint32_t>(name.size()), zip64 ? 28u : 0u, 0u, 0u, 0u})
      u16(central, v);
    u32(central, 0);
    u32(central, zip64 ? 0xFFFFFFFFu : offset);
    central.insert(central.end(), name.begin(), name.end());
    if (zip64) {
      u16(central, 0x0001);
      u16(central, 24);
      for (uint64_t v : {uint64_t{data.size()}, uint64_t{data.size()}, uint64_t{offset}}) {
        u32(central, static_cast<uint32_t>(v));
        u32(central, static_cast<uint32_t>(v >> 32));
      }
    }
  }
  const uint32_t central_offset = static_cast<uint32_t>(out.size());
  out.insert(out.end(), central.begin(), central.end());
  u32(out, 0x06054b50);
  for (uint32_t v :
       {0u, 0u, static_cast<uint32_t>(entries.size()), static_cast<uint32_t>(entries.size())})
    u16(out, v);
  u32(out, static_cast<uint32_t>(central.size()));
  u32(out, central_offset);
  u16(out, 0);
  return out;
}

// A one-tensor state dict {"w": FloatStorage "0" of 2 elements, shape (2,)}, as torch writes it.
const std::string kPickle =
    "\x80\x02}q\x00X\x01\x00\x00\x00wq\x01"
    "ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03"
    "ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x00"
    "0q\x05X\x03\x00\x00\x00"
    "cpuq\x06K\x02tq\x07QK\x00K\x02\x85K\x01\x85\x89"
    "ccollections\nOrderedDict\nq\x08)Rq\x09tq\x0aRq\x0bs."s;

std::vector<uint8_t> archive(const std::string& pickle,
                             const std::string& storage = std::string(8, '\0')) {
  return make_zip({{"archive/data.pkl", pickle}, {"archive/data/0", storage}});
}

TEST(TorchCheckpoint, HandMadeArchiveParses) {
  ASSERT_EQ(kPickle.back(), '.');
  std::vector<uint8_t> zip = archive(kPickle);
  auto f = parse(zip);
  ASSERT_EQ(f->tensors().size(), 1u);
  EXPECT_EQ(f->tensors()[0].name, "w");
  EXPECT_EQ(f->tensors()[0].shape, std::vector<int64_t>{2});
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(TorchCheckpoint, UnpicklerRefusesWhatTorchDoesNotWrite) {
  const std::pair<std::string, const char*> cases[] = {
      {replaced(kPickle, "ccollections\nOrderedDict\n", "cbuiltins\neval\n"),
       "global 'builtins.eval' is not allowed"},
      {replaced(kPickle, "torch._utils\n_rebuild_tensor_v2", "torch\nload"),
       "global 'torch.load' is not allowed"},
      {replaced(kPickle, "h", "h"), ""},  // control: unchanged
      {replaced(kPickle, "K\x02tq\x07"s, "K\x03tq\x07"s), "but the pickle says 3 elements"},
      {replaced(kPickle, "K\x00K\x02\x85"s, "K\x01K\x02\x85"s), "runs past its storage"},
      {replaced(kPickle, "K\x01\x85\x89"s, "K\x02\x85\x89"s), "not contiguous"},
      {replaced(kPickle, "s.", "s\x94."), ""},  // MEMOIZE is fine
      {replaced(kPickle,
                "X\x03\x00\x00\x00"
                "cpu"s,
                "X\x06\x00\x00\x00"
                "cuda:0"s),
       ""},  // any location
      {replaced(kPickle, "s.", "sh\x63."), "memo entry 99 was never stored"},
      {replaced(kPickle, "s.", "s0."), "opcode 0x30"},
      {replaced(kPickle, "s.", "s"), "truncated pickle"},
      {replaced(kPickle, "}q\x00"s, "]q\x00"s), "SETITEM on something that is not a dict"},
      {replaced(kPickle, "\x80\x02", "\x80\x09"), "protocol above 5"},
      {replaced(kPickle, "storageq", "storagfq"), "persistent id is not a"},
  };
  for (const auto& [pickle, message] : cases) {
    std::string error = parse_error(archive(pickle));
    if (*message == '\0') {
      EXPECT_EQ(error, "");
    } else {
      EXPECT_NE(error.find(message), std::string::npos)
          << "expected '" << message << "', got '" << error << "'";
    }
  }
}

TEST(TorchCheckpoint, Zip64FieldsAreRead) {
  // Central headers with zip64 extra fields.
  std::vector<uint8_t> zip =
      make_zip({{"archive/data.pkl", kPickle}, {"archive/data/0", std::string(8, '\0')}}, true);
  ASSERT_EQ(parse_error(zip), "");
  EXPECT_EQ(parse(zip)->tensors().size(), 1u);
  // torch writes a zip64 end record too; when the classic record says 0xFFFF.../0xFFFFFFFF, the
  // zip64 one must be used.
  std::vector<uint8_t> b = read_bytes(kDir + "valid.bin");
  const size_t end = find_signature(b, 0x06054b50);
  ASSERT_NE(find_signature(b, 0x06064b50), std::string::npos);
  b[end + 8] = b[end + 9] = b[end + 10] = b[end + 11] = 0xFF;
  put_u32(b, end + 12, 0xFFFFFFFFu);
  put_u32(b, end + 16, 0xFFFFFFFFu);
  ASSERT_EQ(parse_error(b), "");
  EXPECT_EQ(parse(b)->tensors().size(), 9u);
  // ... and a zip64 record that disagrees is an error, not a guess.
  const size_t end64 = find_signature(b, 0x06064b50);
  put_u32(b, end64 + 48, 3);  // directory offset
  EXPECT_NE(parse_error(b), "");
}

TEST(TorchCheckpoint, ZipStructureIsChecked) {
  EXPECT_NE(parse_error(make_zip({{"archive/data/0", std::string(8, '\0')}})).find("data.pkl"),
            std::string::npos);
  EXPECT_NE(parse_error(make_zip({{"a/data.pkl", kPickle}, {"b/data.pkl", kPickle}}))
                .find("more than one"),
            std::string::npos);
  EXPECT_NE(parse_error(make_zip({{"archive/data.pkl", kPickle},
                                  {"archive/data.pkl", kPickle},
                                  {"archive/data/0", std::string(8, '\0')}}))
                .find("appears twice"),
            std::string::npos);
  std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_NE(parse_error(text).find("not a torch.save zip"), std::string::npos);
}

}  // namespace
}  // namespace cvllm
