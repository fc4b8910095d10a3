// Microbenchmark of CPU paged attention (not a test): decode (one query token per request) and
// prefill shapes of the default model, printed as JSON with time per call and effective GFLOP/s.
//   bench_attention [--threads N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "util/thread_pool.h"

namespace {

double run_case(cvllm::ThreadPool& pool, int num_reqs, int q_len, int ctx, int heads, int kv_heads,
                int d, int iters) {
  using namespace cvllm::cpu;
  const int bs = 16;
  const int blocks_per_req = (ctx + bs - 1) / bs;
  const int num_blocks = num_reqs * blocks_per_req + 1;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> k_cache(static_cast<size_t>(num_blocks) * bs * kv_heads * d);
  std::vector<float> v_cache(k_cache.size());
  for (float& x : k_cache) x = normal(rng);
  for (float& x : v_cache) x = normal(rng);
  std::vector<float> q(static_cast<size_t>(num_reqs) * q_len * heads * d), out(q.size());
  for (float& x : q) x = normal(rng);
  std::vector<int32_t> qsl(num_reqs + 1), seq_lens(num_reqs), table(num_reqs * blocks_per_req);
  for (int r = 0; r < num_reqs; ++r) {
    qsl[r + 1] = qsl[r] + q_len;
    seq_lens[r] = ctx;
    for (int b = 0; b < blocks_per_req; ++b) table[r * blocks_per_req + b] = 1 + r * blocks_per_req + b;
  }
  AttentionShape shape;
  shape.num_heads = heads;
  shape.num_kv_heads = kv_heads;
  shape.head_size = d;
  shape.block_size = bs;
  shape.scale = 0.125f;
  auto call = [&] {
    paged_attention(q.data(), k_cache.data(), v_cache.data(), cvllm::DType::kF32, out.data(),
                    qsl.data(), seq_lens.data(), table.data(), blocks_per_req, num_reqs, shape, &pool);
  };
  call();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) call();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
  // QK and PV: 2 flops per multiply-add; causal prefill sees half the keys on average.
  double keys = q_len == 1 ? ctx : (ctx - q_len) + q_len / 2.0;
  double flops = 4.0 * num_reqs * q_len * heads * keys * d;
  std::printf("  {\"reqs\": %d, \"q_len\": %d, \"ctx\": %d, \"heads\": %d, \"kv_heads\": %d, \"d\": %d, "
              "\"us_per_call\": %.1f, \"gflops\": %.2f},\n",
              num_reqs, q_len, ctx, heads, kv_heads, d, secs * 1e6, flops / secs / 1e9);
  return secs;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  cvllm::ThreadPool pool(threads);
  std::printf("{\"threads\": %d, \"cases\": [\n", pool.num_threads());
  run_case(pool, 1, 1, 576, 9, 3, 64, 2000);
  run_case(pool, 1, 1, 4096, 9, 3, 64, 300);
  run_case(pool, 16, 1, 576, 9, 3, 64, 200);
  run_case(pool, 1, 512, 512, 9, 3, 64, 10);
  std::printf("  {}]}\n");
  return 0;
}
