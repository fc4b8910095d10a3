#!/usr/bin/env bash
# The CPU numbers recorded in BENCHMARKS.md: prompt processing and decode speed of the default model
# (cvllm bench latency), batched throughput over batch sizes (cvllm bench throughput), and — when
# LLAMA_BENCH points at a llama-bench binary you built yourself — llama.cpp on the same GGUF with
# the same thread count, measured in the same run.
#
#   THREADS=2 LLAMA_BENCH=/path/to/llama-bench bash scripts/bench_cpu.sh > /tmp/bench.txt
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
MODEL="${MODEL:-${CVLLM_CACHE_DIR:-$HOME/.cache/cvllm}/SmolLM2-135M-Instruct.Q4_1.gguf}"
CVLLM="${CVLLM:-./build/cvllm}"
export CVLLM_LOGGING_LEVEL=WARNING

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads=$THREADS; $(date -u +%F)"
echo "model: $MODEL"
echo
echo "## latency (batch 1)"
for case in "512 1" "1 128" "512 128"; do
  set -- $case
  $CVLLM bench latency --model "$MODEL" --num-threads "$THREADS" --input-len "$1" --output-len "$2" \
      --batch-size 1 --num-iters 5 --num-iters-warmup 1 |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(f'input {$1:4d} output {$2:4d}: prompt {j[\"prompt_tokens_per_s\"]:8.1f} tok/s, decode {j[\"decode_tokens_per_s\"]:7.1f} tok/s')"
done
if [ -n "${LLAMA_BENCH:-}" ]; then
  echo
  echo "## llama.cpp (llama-bench, same model and threads)"
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p 512 -n 128 -r 5 2>/dev/null | grep -E "pp512|tg128"
fi
echo
echo "## throughput over batch sizes (random prompts: input 128, output 128)"
for n in 1 2 4 8 16 32 64; do
  $CVLLM bench throughput --model "$MODEL" --num-threads "$THREADS" --num-prompts "$n" \
      --max-num-seqs "$n" --input-len 128 --output-len 128 |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(f'batch {$n:3d}: {j[\"output_throughput\"]:8.1f} output tok/s, {j[\"tokens_per_second\"]:8.1f} total tok/s, {j[\"requests_per_second\"]:6.2f} req/s, peak RSS {j[\"peak_memory_bytes\"]/2**20:.0f} MiB')"
done
echo
echo "## shared-prefix dataset (64 prompts, 512 tokens of which 448 shared, output 64)"
$CVLLM bench throughput --model "$MODEL" --num-threads "$THREADS" --num-prompts 64 --max-num-seqs 64 \
    --input-len 512 --prefix-len 448 --output-len 64 |
  python3 -c "import json,sys; j=json.load(sys.stdin); print(f'{j[\"output_throughput\"]:.1f} output tok/s, {j[\"tokens_per_second\"]:.1f} total tok/s, prefix-cache hit rate {j[\"prefix_cache_hit_rate\"]:.2f}')"
