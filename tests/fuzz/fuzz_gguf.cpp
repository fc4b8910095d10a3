// libFuzzer target for the GGUF reader: any input must either parse or throw cvllm::Error. After a
// successful parse every metadata value, every typed getter and every tensor's bytes are touched,
// so ASan sees any view that points outside the input.
// Seed corpus: tests/fuzz/corpus/gguf/ (written by scripts/gen_gguf_fixtures.py).
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>

#include "loader/gguf.h"
#include "util/error.h"

namespace {

uint64_t touch(const cvllm::GgufValue& v) {
  uint64_t sum = static_cast<uint64_t>(v.type) + v.uint_value + static_cast<uint64_t>(v.int_value) +
                 std::bit_cast<uint64_t>(v.float_value) + v.bool_value;
  for (char c : v.string_value) sum += static_cast<uint8_t>(c);
  for (const cvllm::GgufValue& e : v.array) sum += touch(e);
  return sum;
}

template <typename Fn>
void call_getter(Fn&& fn) {
  try {
    fn();
  } catch (const cvllm::Error&) {  // a type mismatch is an expected answer
  }
}

void touch_file(const cvllm::GgufFile& file) {
  volatile uint64_t sink = file.version() + file.alignment() + file.data_offset();
  for (const auto& entry : file.metadata()) {
    const std::string& key = entry.first;  // (clang 14 cannot capture structured bindings)
    const cvllm::GgufValue& value = entry.second;
    sink = sink + touch(value) + (file.find(key) == &value);
    call_getter([&] { file.get_string(key); });
    call_getter([&] { file.get_int(key); });
    call_getter([&] { file.get_float(key); });
    call_getter([&] { file.get_bool(key); });
    call_getter([&] { file.get_string_array(key); });
    call_getter([&] { file.get_int_array(key); });
    call_getter([&] { file.get_float_array(key); });
  }
  for (const cvllm::GgufTensorInfo& t : file.tensors()) {
    sink = sink + t.num_elements() + cvllm::dtype_name(t.dtype).size();
    if (file.find_tensor(t.name) != &t) __builtin_trap();
    const uint8_t* data = file.tensor_data(t);
    if (t.num_bytes > 0) sink = sink + data[0] + data[t.num_bytes - 1];
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = cvllm::GgufFile::parse(data, size, "fuzz.gguf");
    touch_file(*file);
  } catch (const cvllm::Error&) {
  }
  return 0;
}
