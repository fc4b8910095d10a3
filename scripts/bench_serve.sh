#!/usr/bin/env bash
# The serving numbers recorded in BENCHMARKS.md: `cvllm bench serve` (vLLM's `bench serve` with the
# random dataset) against `cvllm serve` on the default model at 1, 4, 16 and 64 concurrent clients,
# and — when LLAMA_SERVER points at a llama-server binary you built yourself — against llama-server
# on the same GGUF with the same threads and enough slots for 64 clients, in the same run.
#
#   THREADS=2 LLAMA_SERVER=/path/to/llama-server bash scripts/bench_serve.sh > /tmp/serve.txt
# Environment: INPUT_LEN (128), OUTPUT_LEN (64), PROMPTS_PER_CLIENT (4), CONCURRENCY ("1 4 16 64").
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
MODEL="${MODEL:-${CVLLM_CACHE_DIR:-$HOME/.cache/cvllm}/SmolLM2-135M-Instruct.Q4_1.gguf}"
CVLLM="${CVLLM:-./build/cvllm}"
INPUT_LEN="${INPUT_LEN:-128}"
OUTPUT_LEN="${OUTPUT_LEN:-64}"
PROMPTS_PER_CLIENT="${PROMPTS_PER_CLIENT:-4}"
CONCURRENCY="${CONCURRENCY:-1 4 16 64}"
PORT=18431
export CVLLM_LOGGING_LEVEL=WARNING

server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not become healthy" >&2
  exit 1
}

run_clients() {  # $1: label
  result="$(mktemp)"
  for c in $CONCURRENCY; do
    if ! "$CVLLM" bench serve --base-url "http://127.0.0.1:$PORT" --model "$MODEL" \
        --num-prompts $((c * PROMPTS_PER_CLIENT)) --max-concurrency "$c" \
        --random-input-len "$INPUT_LEN" --random-output-len "$OUTPUT_LEN" \
        --save-result --result-filename "$result" >/dev/null; then
      echo "$1 clients $c: the benchmark client failed (see its output by running it alone)"
      continue
    fi
    python3 - "$1" "$c" "$result" <<'EOF'
import json, sys
label, c, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
j = json.load(open(path))
print(f"{label:10s} clients {c:3d}: {j['request_throughput']:6.2f} req/s, "
      f"{j['output_throughput']:8.1f} out tok/s, TTFT mean/median/p99 "
      f"{j['mean_ttft_ms']:7.1f}/{j['median_ttft_ms']:7.1f}/{j['p99_ttft_ms']:7.1f} ms, "
      f"TPOT median {j['median_tpot_ms']:6.1f} ms, ITL median/p99 "
      f"{j['median_itl_ms']:6.1f}/{j['p99_itl_ms']:6.1f} ms, failed {j['failed']}")
EOF
  done
  rm -f "$result"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads=$THREADS; $(date -u +%F)"
echo "model: $MODEL; random dataset: input $INPUT_LEN, output $OUTPUT_LEN tokens (ignore_eos);" \
     "$PROMPTS_PER_CLIENT prompts per client"
echo
"$CVLLM" serve "$MODEL" --port "$PORT" --host 127.0.0.1 --num-threads "$THREADS" \
    --max-num-seqs 64 --disable-log-stats --disable-uvicorn-access-log >/dev/null 2>&1 &
server_pid=$!
wait_healthy
run_clients cvllm
cleanup
server_pid=""

if [ -n "${LLAMA_SERVER:-}" ]; then
  slots=64
  "$LLAMA_SERVER" -m "$MODEL" -t "$THREADS" --port "$PORT" --host 127.0.0.1 -np "$slots" \
      -c $((slots * (INPUT_LEN + OUTPUT_LEN + 16))) >/dev/null 2>&1 &
  server_pid=$!
  wait_healthy
  run_clients llama.cpp
fi
