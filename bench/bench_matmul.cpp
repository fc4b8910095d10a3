// Microbenchmark of cpu::matmul for the default model's shapes (SmolLM2-135M: hidden 576, kv 192,
// intermediate 1536, vocab 49152) in the dtypes real GGUF files use. Prints one JSON object: per
// (shape, dtype, num_tokens, threads, path) the time per call, GFLOP/s (2*rows*cols*num_tokens
// per call) and effective weight bandwidth (weight bytes per call / time).
//
// Usage: bench_matmul [--quick] [--dtypes q4_1,q8_0] [--tokens 1,512] [--threads 1,2]
//                     [--paths fast,reference] [--min-time 0.3] [--shape SUBSTRING]
// Weights are random blocks with realistic scales; the numbers do not depend on the values.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "tensor/dtype.h"
#include "tensor/half.h"
#include "tensor/quant_blocks.h"
#include "util/thread_pool.h"

using namespace cvllm;
using namespace cvllm::cpu;

namespace {

struct Shape {
  const char* name;
  int64_t cols, rows;  // in_features -> out_features
};

// SmolLM2-135M's matrices. Only ffn_down has a width that K-quants (256-element blocks) can
// store, so K-quants also run two Llama-3.2-1B shapes.
const Shape kShapes[] = {
    {"attn_q/attn_o 576->576", 576, 576},      {"attn_k/attn_v 576->192", 576, 192},
    {"ffn_gate/up 576->1536", 576, 1536},      {"ffn_down 1536->576", 1536, 576},
    {"lm_head 576->49152", 576, 49152},        {"llama1b attn_q 2048->2048", 2048, 2048},
    {"llama1b ffn_up 2048->8192", 2048, 8192},
};

// The reference path is slow; beyond this many multiply-adds per call it is not timed.
constexpr double kMaxReferenceMacs = 2e9;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

std::vector<int> split_ints(const std::string& s) {
  std::vector<int> out;
  for (const std::string& v : split(s)) out.push_back(std::stoi(v));
  return out;
}

DType parse_dtype(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    auto t = dtype_traits(id);
    if (!t) continue;
    std::string n(t->name);
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == name) return static_cast<DType>(id);
  }
  std::fprintf(stderr, "unknown dtype %s\n", name.c_str());
  std::exit(2);
}

// Byte offsets of the f16 scales inside one block.
std::vector<int> scale_offsets(DType d) {
  switch (d) {
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K:
      return {80, 82};
    case DType::kQ3_K:
      return {108};
    case DType::kQ6_K:
      return {208};
    default:
      return {0};
  }
}

std::vector<uint8_t> random_weights(DType dtype, int64_t rows, int64_t cols) {
  std::mt19937 rng(1234);
  const size_t bytes = row_size(dtype, cols) * rows;
  std::vector<uint8_t> w(bytes + 64);
  for (size_t i = 0; i < bytes; i += 4) {
    const uint32_t v = static_cast<uint32_t>(rng());
    std::memcpy(w.data() + i, &v, 4);
  }
  const DTypeTraits& t = traits(dtype);
  if (dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16) {
    std::normal_distribution<float> normal(0.0f, 0.05f);
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = normal(rng);
      if (dtype == DType::kF32) std::memcpy(w.data() + 4 * i, &v, 4);
      const uint16_t h = dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
      if (dtype != DType::kF32) std::memcpy(w.data() + 2 * i, &h, 2);
    }
    return w;
  }
  const uint16_t scale = f32_to_f16(0.01f);
  for (size_t b = 0; b < bytes / t.type_size; ++b) {
    for (int off : scale_offsets(dtype)) std::memcpy(w.data() + b * t.type_size + off, &scale, 2);
  }
  return w;
}

double seconds_per_call(const WeightView& w, const float* x, int64_t num_tokens, float* y,
                        ThreadPool& pool, MatmulPath path, double min_time, int64_t* num_calls) {
  matmul(w, x, num_tokens, y, pool, path);  // warm-up: scratch buffers, caches
  int64_t calls = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    matmul(w, x, num_tokens, y, pool, path);
    ++calls;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < min_time);
  *num_calls = calls;
  return elapsed / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> dtypes = {"q4_1", "q8_0", "q4_k", "q6_k"};
  std::vector<int> tokens = {1, 512}, threads = {1, 2};
  std::vector<std::string> paths = {"fast", "reference"};
  double min_time = 0.3;
  std::string shape_filter;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--dtypes")
      dtypes = split(next());
    else if (arg == "--tokens")
      tokens = split_ints(next());
    else if (arg == "--threads")
      threads = split_ints(next());
    else if (arg == "--paths")
      paths = split(next());
    else if (arg == "--min-time")
      min_time = std::stod(next());
    else if (arg == "--quick")
      min_time = 0.05;
    else if (arg == "--shape")
      shape_filter = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  std::printf("{\n  \"isa\": \"%s\",\n  \"results\": [\n", std::string(active_isa()).c_str());
  bool first = true;
  for (int num_threads : threads) {
    ThreadPool pool(num_threads);
    for (const std::string& dname : dtypes) {
      const DType dtype = parse_dtype(dname);
      for (const Shape& s : kShapes) {
        if (!shape_filter.empty() && std::string(s.name).find(shape_filter) == std::string::npos) {
          continue;
        }
        const bool k_quant = traits(dtype).block_size == 256;
        const bool llama_shape = std::string(s.name).rfind("llama", 0) == 0;
        if (s.cols % traits(dtype).block_size != 0 || (llama_shape && !k_quant)) continue;
        const std::vector<uint8_t> wbuf = random_weights(dtype, s.rows, s.cols);
        const WeightView w{wbuf.data(), dtype, s.rows, s.cols};
        const double weight_bytes = static_cast<double>(row_size(dtype, s.cols) * s.rows);
        for (int num_tokens : tokens) {
          std::vector<float> x(static_cast<size_t>(num_tokens) * s.cols);
          std::mt19937 rng(7);
          std::normal_distribution<float> normal(0.0f, 1.0f);
          for (float& v : x) v = normal(rng);
          std::vector<float> y(static_cast<size_t>(num_tokens) * s.rows);
          for (const std::string& pname : paths) {
            const MatmulPath path = pname == "fast" ? MatmulPath::kFast : MatmulPath::kReference;
            if (path == MatmulPath::kReference &&
                static_cast<double>(s.rows) * s.cols * num_tokens > kMaxReferenceMacs) {
              continue;
            }
            int64_t calls = 0;
            const double sec = seconds_per_call(w, x.data(), num_tokens, y.data(), pool, path,
                                                path == MatmulPath::kFast ? min_time : 0.0, &calls);
            const double gflops = 2.0 * s.rows * s.cols * num_tokens / sec / 1e9;
            std::printf(
                "%s    {\"shape\": \"%s\", \"dtype\": \"%s\", \"num_tokens\": %d, "
                "\"threads\": %d, \"path\": \"%s\", \"ms\": %.4f, \"gflops\": %.2f, "
                "\"weight_gbps\": %.2f, \"calls\": %lld}",
                first ? "" : ",\n", s.name, dname.c_str(), num_tokens, num_threads, pname.c_str(),
                sec * 1e3, gflops, weight_bytes / sec / 1e9, static_cast<long long>(calls));
            std::fflush(stdout);
            first = false;
          }
        }
      }
    }
  }
  std::printf("\n  ]\n}\n");
  return 0;
}
