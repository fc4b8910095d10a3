// libFuzzer target for the Hugging Face checkpoint parsers. The first byte picks the parser, the
// rest is its input:
//   0: a safetensors file (SafetensorsFile::parse); every tensor's first and last byte is read,
//      so ASan sees any view that points outside the input;
//   1: a model.safetensors.index.json whose shards all resolve to one small valid file;
//   2: a config.json (model_config_from_hf_json);
//   3: a generation_config.json (parse_hf_generation_config).
// Any input must either parse or throw cvllm::Error (ValueError included).
// Seed corpus: tests/fuzz/corpus/safetensors/ (written by scripts/gen_hf_model_fixtures.py
// --fuzz-corpus).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "loader/hf_files.h"
#include "loader/safetensors.h"
#include "models/model_config.h"
#include "util/error.h"

namespace {

uint64_t touch(const cvllm::SafetensorsFile& file) {
  uint64_t sum = 0;
  for (const auto& entry : file.metadata()) sum += entry.first.size() + entry.second.size();
  for (const cvllm::SafetensorsTensorInfo& t : file.tensors()) {
    if (file.find_tensor(t.name) == nullptr) __builtin_trap();
    sum += static_cast<uint64_t>(t.num_elements()) + t.shape.size();
    if (t.end > t.begin) {
      const uint8_t* data = file.tensor_data(t);
      sum += data[0] + data[t.end - t.begin - 1];
    }
  }
  return sum;
}

// A valid one-tensor shard ("x": F32 [1]) for index inputs.
std::vector<uint8_t> shard_bytes() {
  std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  )";
  std::vector<uint8_t> out(8, 0);
  out[0] = static_cast<uint8_t>(header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), 4, 0);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  const uint8_t* body = data + 1;
  const size_t body_size = size - 1;
  // A copy, so the parsers see a buffer that ends exactly where the input does.
  std::vector<uint8_t> buffer(body, body + body_size);
  std::string text(reinterpret_cast<const char*>(body), body_size);
  volatile uint64_t sink = 0;
  try {
    switch (mode) {
      case 0:
        sink = sink + touch(*cvllm::SafetensorsFile::parse(buffer.data(), buffer.size(),
                                                           "fuzz.safetensors"));
        break;
      case 1: {
        static const std::vector<uint8_t> shard = shard_bytes();
        auto ckpt = cvllm::SafetensorsCheckpoint::from_index(
            text, "fuzz.index.json", [](const std::string& name) {
              return cvllm::SafetensorsFile::parse(shard.data(), shard.size(), name);
            });
        sink = sink + ckpt.num_tensors() + (ckpt.find("x").first != nullptr);
        break;
      }
      case 2: {
        cvllm::ModelConfig c = cvllm::model_config_from_hf_json(text, "fuzz/config.json");
        sink = sink + c.describe().size() + c.sliding_window_layers.size();
        break;
      }
      default: {
        cvllm::HfGenerationConfig g =
            cvllm::parse_hf_generation_config(text, "fuzz/generation_config.json");
        sink = sink + g.eos_token_ids.size() + g.defaults.describe().size();
        break;
      }
    }
  } catch (const cvllm::Error&) {
  }
  return 0;
}
