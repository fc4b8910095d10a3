// libFuzzer target for PyTorch checkpoints and GPT-2-style slow tokenizer files. The first byte
// picks the parser, the rest is its input:
//   0: a torch.save zip (TorchCheckpointFile::parse); every tensor's first and last byte is read,
//      so ASan sees any view that points outside the input;
//   1: a pytorch_model.bin.index.json whose shards all resolve to one small valid file;
//   2: slow tokenizer files: vocab.json, merges.txt, tokenizer_config.json and
//      special_tokens_map.json separated by NUL bytes (missing parts are empty), built into a
//      tokenizer.json (gpt2_tokenizer_json_from_slow_files), loaded, and used to encode a text.
// Any input must either parse or throw cvllm::Error (ValueError included).
// Seed corpus: tests/fuzz/corpus/torch_checkpoint/ (scripts/gen_torch_bin_fixtures.py).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loader/torch_checkpoint.h"
#include "tokenizer/hf_slow_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

using namespace std::string_literals;

uint64_t touch(const cvllm::TorchCheckpointFile& file) {
  uint64_t sum = 0;
  for (const cvllm::TorchTensorInfo& t : file.tensors()) {
    if (file.find_tensor(t.name) == nullptr) __builtin_trap();
    sum += static_cast<uint64_t>(t.num_elements()) + t.shape.size();
    if (t.num_bytes > 0) {
      const uint8_t* data = file.tensor_data(t);
      sum += data[0] + data[t.num_bytes - 1];
    }
  }
  return sum;
}

void put(std::vector<uint8_t>& b, uint64_t v, int num_bytes) {
  for (int i = 0; i < num_bytes; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A stored zip holding {"x": FloatStorage of 1 element} as torch writes it (CRCs 0: unchecked).
std::vector<uint8_t> shard_bytes() {
  const std::string pickle =
      "\x80\x02}q\x00X\x01\x00\x00\x00xq\x01"
      "ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03"
      "ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x00"
      "0q\x05X\x03\x00\x00\x00"
      "cpuq\x06K\x01tq\x07QK\x00K\x01\x85K\x01\x85\x89"
      "ccollections\nOrderedDict\nq\x08)Rq\x09tq\x0aRq\x0bs."s;
  const std::vector<std::pair<std::string, std::string>> entries = {
      {"archive/data.pkl", pickle}, {"archive/data/0", std::string(4, '\0')}};
  std::vector<uint8_t> out, central;
  for (const auto& [name, data] : entries) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    put(out, 0x04034b50, 4);
    put(out, 20, 2);
    put(out, 0, 8);  // flags, method, time, date
    put(out, 0, 4);  // crc
    put(out, static_cast<uint32_t>(data.size()), 4);
    put(out, static_cast<uint32_t>(data.size()), 4);
    put(out, static_cast<uint32_t>(name.size()), 2);
    put(out, 0, 2);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    put(central, 0x02014b50, 4);
    put(central, 20, 2);
    put(central, 20, 2);
    put(central, 0, 8);
    put(central, 0, 4);
    put(central, static_cast<uint32_t>(data.size()), 4);
    put(central, static_cast<uint32_t>(data.size()), 4);
    put(central, static_cast<uint32_t>(name.size()), 2);
    put(central, 0, 8);  // extra, comment, disk, internal attributes
    put(central, 0, 4);  // external attributes
    put(central, offset, 4);
    central.insert(central.end(), name.begin(), name.end());
  }
  const uint32_t central_offset = static_cast<uint32_t>(out.size());
  out.insert(out.end(), central.begin(), central.end());
  put(out, 0x06054b50, 4);
  put(out, 0, 4);
  put(out, static_cast<uint32_t>(entries.size()), 2);
  put(out, static_cast<uint32_t>(entries.size()), 2);
  put(out, static_cast<uint32_t>(central.size()), 4);
  put(out, central_offset, 4);
  put(out, 0, 2);
  return out;
}

uint64_t slow_tokenizer(std::string_view text) {
  std::string_view parts[4];
  for (std::string_view& part : parts) {
    size_t nul = text.find('\0');
    part = text.substr(0, nul);
    text = nul == std::string_view::npos ? std::string_view() : text.substr(nul + 1);
  }
  cvllm::SlowTokenizerJson built =
      cvllm::gpt2_tokenizer_json_from_slow_files(parts[0], parts[1], parts[2], parts[3], "fuzz/");
  auto tok = cvllm::Tokenizer::from_hf_json(built.tokenizer_json, built.tokenizer_config_json, "",
                                            "fuzz/tokenizer.json");
  std::vector<int32_t> ids = tok->encode("Hello, world! </s> 123\n\tx", true);
  return ids.size() + tok->decode(ids, false).size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  // A copy, so the parsers see a buffer that ends exactly where the input does.
  std::vector<uint8_t> buffer(data + 1, data + size);
  std::string text(buffer.begin(), buffer.end());
  volatile uint64_t sink = 0;
  try {
    switch (mode) {
      case 0:
        sink = sink +
               touch(*cvllm::TorchCheckpointFile::parse(buffer.data(), buffer.size(), "fuzz.bin"));
        break;
      case 1: {
        static const std::vector<uint8_t> shard = shard_bytes();
        auto ckpt = cvllm::TorchCheckpoint::from_index(
            text, "fuzz.index.json", [](const std::string& name) {
              return cvllm::TorchCheckpointFile::parse(shard.data(), shard.size(), name);
            });
        sink = sink + ckpt.num_tensors() + (ckpt.find("x").first != nullptr);
        break;
      }
      default:
        sink = sink + slow_tokenizer(text);
        break;
    }
  } catch (const cvllm::Error&) {
  }
  return 0;
}
