#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in one call: build (or take prebuilt binaries), run
# the CUDA op tests and the tiny-model tests, a compute-sanitizer pass over the kernels, then a
# quick benchmark on random-weight models of real shapes (the lent GPU machine has no network and
# takes at most 64 MiB of files, so the models are generated there).
#
#   bash scripts/device_test.sh --pack
#       (on a machine with nvcc, no GPU needed) builds the binaries in $BUILD (default build-cuda)
#       and gathers them, the shared libraries a bare machine may lack and gguf-py into
#       build-devpack/ (ignored by git: carry it). XZ=1 compresses the binaries (unpacked on use).
#   CVLLM_PREBUILT=build-devpack bash scripts/device_test.sh
#       (on the GPU machine) runs the packed binaries.
#   bash scripts/device_test.sh
#       (on a GPU machine with the build dependencies) configures and builds build-device first.
#
# The default model's GPU test needs the model (98 MB), which no call can carry beside the tree
# and the binaries: cut it into ignored folders (build-dm1/part: 24 MB, build-dm2/part: 40 MB,
# build-dm3/part: the rest), carry build-devpack with build-dm1 and then each further part in
# calls back to back (the GPU machine keeps /tmp while it stays warm), each copying its part to
# /tmp/dm/N, and in the last set DEFAULT_MODEL_PARTS="/tmp/dm/1 /tmp/dm/2 build-dm3/part".
#
# Results: $OUT/logs.tgz and $OUT/summary.txt (default ./build-device-logs); the last lines printed are
# the summary. Knobs: SKIP_TESTS=1, SKIP_BENCH=1, BENCH_SHAPES="smollm2-135m llama-1b",
# MICRO=1 (with MICRO_ARGS), BENCH_EXTRA="in,out,batch,gemm ..." (gemm: per-n | invariant | per-n-glibc), PROFILE=1 (with
# PROFILE_BS, PROFILE_SKIP, PROFILE_COUNT, PROFILE_SHAPES: add llama3-8b, PROFILE_PREFILL=1), TARGETS=1 (issue 8's Llama-3-8B-shape targets;
# TARGETS_ONLY="decode-bs1 ..." runs just those).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TEST_TARGETS="kernels_test_cuda_ops golden_test_cuda_tiny_llama golden_test_cuda_hf_models unit_test_cuda_model_runner_graphs golden_test_cuda_default_model"

if [[ "${1:-}" == "--pack" ]]; then
  set -e
  BUILD=${BUILD:-build-cuda}
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCVLLM_CUDA=ON -DCVLLM_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$BUILD" --target cvllm $TEST_TARGETS bench_cuda_decode_step -j"${JOBS:-2}"
  rm -rf build-devpack
  mkdir -p build-devpack/bin build-devpack/lib build-devpack/py
  cp "$BUILD/cvllm" build-devpack/bin/
  for t in $TEST_TARGETS; do cp "$BUILD/tests/$t" build-devpack/bin/; done
  cp "$BUILD/bench/bench_cuda_decode_step" build-devpack/bin/
  strip build-devpack/bin/*
  # Libraries of our dependencies that a CUDA image may not have (the CUDA ones it has).
  for lib in libcpp-httplib.so.0.11 libutf8proc.so.2 libpcre2-8.so.0 libbrotlicommon.so.1 \
             libbrotlidec.so.1 libbrotlienc.so.1; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found {print $NF; found = 1}')  # no early exit: SIGPIPE
    [[ -n "$path" ]] && cp -L "$path" build-devpack/lib/
  done
  gguf_dir=$(python3 -c "import gguf, os; print(os.path.dirname(gguf.__file__))")
  cp -r "$gguf_dir" build-devpack/py/
  find build-devpack/py -name __pycache__ -prune -exec rm -rf {} +
  echo "source root baked into the test binaries: $ROOT"
  echo "$ROOT" > build-devpack/source_root
  if [[ "${XZ:-0}" == 1 ]]; then
    tar cJf build-devpack/bin.tar.xz -C build-devpack bin && rm -rf build-devpack/bin
  fi
  du -sh build-devpack
  exit 0
fi

# Logs are written to a scratch folder and handed back as $RESULTS/logs.tgz + summary.txt (the
# device tool returns at most 8 files).
RESULTS=${OUT:-$ROOT/build-device-logs}
OUT=$(mktemp -d /tmp/cvllm-device.XXXXXX)
mkdir -p "$RESULTS"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nvcc --version | tail -1; } \
  > "$OUT/machine.txt" 2>&1
note "machine: $(sed -n 3p "$OUT/machine.txt") ($(date -u +%Y-%m-%dT%H:%MZ))"

if [[ -n "${CVLLM_PREBUILT:-}" ]]; then
  # (--pack XZ=1 leaves the binaries as bin.tar.xz: the device tool carries at most 64 MiB.)
  [[ -f $ROOT/$CVLLM_PREBUILT/bin.tar.xz && ! -d $ROOT/$CVLLM_PREBUILT/bin ]] &&
    tar xJf "$ROOT/$CVLLM_PREBUILT/bin.tar.xz" -C "$ROOT/$CVLLM_PREBUILT"
  BIN=$ROOT/$CVLLM_PREBUILT/bin
  TEST_BIN=$BIN
  MICRO_BIN=$BIN
  export LD_LIBRARY_PATH=$ROOT/$CVLLM_PREBUILT/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
  export PYTHONPATH=$ROOT/$CVLLM_PREBUILT/py:${PYTHONPATH:-}
  # The test binaries read fixtures under the source root they were built in.
  baked=$(cat "$ROOT/$CVLLM_PREBUILT/source_root")
  if [[ "$baked" != "$ROOT" && ! -e "$baked" ]]; then
    mkdir -p "$(dirname "$baked")" && ln -s "$ROOT" "$baked"
  fi
else
  start=$(date +%s)
  cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DCVLLM_CUDA=ON -DCVLLM_BUILD_EXAMPLES=OFF \
    > "$OUT/configure.log" 2>&1 || { note "configure failed (see configure.log)"; tail -20 "$OUT/configure.log"; exit 1; }
  cmake --build build-device --target cvllm $TEST_TARGETS bench_cuda_decode_step -j16 > "$OUT/build.log" 2>&1 ||
    { note "build failed (see build.log)"; grep -m20 error "$OUT/build.log"; exit 1; }
  note "build: $(( $(date +%s) - start )) s"
  BIN=$ROOT/build-device
  TEST_BIN=$ROOT/build-device/tests
  MICRO_BIN=$ROOT/build-device/bench
fi

status=0
run_tests() {  # name binary [gtest args]
  local name=$1 bin=$2
  shift 2
  timeout "${TEST_TIMEOUT:-240}" "$bin" --gtest_color=no "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  [[ $rc -ne 0 ]] && status=1
  note "$name: rc=$rc; $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \]' "$OUT/$name.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$OUT/$name.log" | head -20 | tee -a "$SUMMARY"
}
if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
run_tests cuda_ops "$TEST_BIN/kernels_test_cuda_ops"
run_tests cuda_tiny_llama "$TEST_BIN/golden_test_cuda_tiny_llama"
run_tests cuda_hf_models "$TEST_BIN/golden_test_cuda_hf_models"
run_tests cuda_graphs "$TEST_BIN/unit_test_cuda_model_runner_graphs"
# The default model, put back together from DEFAULT_MODEL_PARTS (see the top); without it the
# test skips.
if [[ -n "${DEFAULT_MODEL_PARTS:-}" ]]; then
  mkdir -p /tmp/cvllm-default-model
  cat $DEFAULT_MODEL_PARTS > /tmp/cvllm-default-model/SmolLM2-135M-Instruct.Q4_1.gguf
  export CVLLM_CACHE_DIR=/tmp/cvllm-default-model
fi
run_tests cuda_default_model "$TEST_BIN/golden_test_cuda_default_model"
grep -h "\[ note \]" "$OUT/cuda_hf_models.log" | head -60 >> "$OUT/notes.txt"
grep -h "\[ note \]" "$OUT/cuda_tiny_llama.log" | head -40 >> "$OUT/notes.txt"

# Out-of-bounds accesses and races in the kernels (a subset: the sanitizer is slow).
if command -v compute-sanitizer >/dev/null; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 "$TEST_BIN/kernels_test_cuda_ops" \
    --gtest_filter='*PagedAttentionF32*:*PagedAttentionBf16*:*DecodeAttention*:*RopeAttention*:*GatedLinear*:*Embedding*:*RmsNorm*:*Rotary*:*Dequantize*:*Sampling*:*DecodeSized*:-*PieceLoops*' > "$OUT/memcheck.log" 2>&1
  note "memcheck: rc=$? ($(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log"))"
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$TEST_BIN/kernels_test_cuda_ops" \
    --gtest_filter='*SplitAcrossLongContexts*:*PieceLoops*' > "$OUT/memcheck-split.log" 2>&1
  note "memcheck split-KV: rc=$? ($(grep -m1 'ERROR SUMMARY' "$OUT/memcheck-split.log"))"
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$TEST_BIN/unit_test_cuda_model_runner_graphs" \
    --gtest_filter='*MatrixVector*:*AsyncScheduling*' > "$OUT/memcheck-graphs.log" 2>&1
  note "memcheck CUDA graphs: rc=$? ($(grep -m1 'ERROR SUMMARY' "$OUT/memcheck-graphs.log"))"
  # (Not *OutputFeedsTheNextLinear: racecheck reports a hazard inside one of cuBLASLt's own GEMM
  # kernels, nvjet_sm90_tss_8x64_64x16_4x1_v_bz_TNN, that test's small linear.)
  timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 "$TEST_BIN/kernels_test_cuda_ops" \
    --gtest_filter='*PagedAttentionBf16*:*DecodeAttention*:*LayerNorm*:-*OutputFeedsTheNextLinear*:*PieceLoops*' > "$OUT/racecheck.log" 2>&1
  note "racecheck: rc=$? ($(grep -m1 'RACECHECK SUMMARY\|ERROR SUMMARY' "$OUT/racecheck.log"))"
fi
fi  # SKIP_TESTS

# One batch-1 decode step of the 8B shape from the launchers alone (bench/bench_cuda_decode_step.cpp):
# what each kernel kind adds to the step, and the matrix-vector kernels' bandwidth. MICRO=1.
if [[ "${MICRO:-0}" == 1 ]]; then
  for variant in ${MICRO_VARIANTS:-default CVLLM_CUDA_PDL=0 CVLLM_CUDA_DECODE_CLUSTER=0}; do
    log=$OUT/micro-${variant//=/-}.json
    env $([[ $variant != default ]] && echo "$variant") "$MICRO_BIN/bench_cuda_decode_step" ${MICRO_ARGS:-} > "$log" 2>&1
    note "decode step microbenchmark ($variant):"
    python3 -c "
import json, sys
for line in open('$log'):
    try: d = json.loads(line)
    except ValueError: print('  ' + line.rstrip()); continue
    print('  %-28s %8.1f us  %6.3f TB/s' % (d['variant'], d['us_per_step'], d['weight_tb_per_s']))" | tee -a "$SUMMARY"
  done
fi

# Benchmarks on random-weight models (f16 GGUF, no tokenizer: prompts are random token ids).
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
  for shape in ${BENCH_SHAPES:-smollm2-135m llama-1b}; do
    model=/tmp/random-$shape.gguf
    python3 scripts/gen_random_llama_gguf.py --shape "$shape" "$model" > "$OUT/gen-$shape.log" 2>&1 ||
      { note "could not generate $shape (see gen-$shape.log)"; continue; }
    # gemm: "per-n" (default: cuBLASLt picks per batch size) or "invariant" (batch-invariant
    # GEMMs); "per-n-glibc" leaves glibc's malloc thresholds alone (see cuda_backend.cpp);
    # "eager" is per-n without CUDA graphs (--enforce-eager); "no-pdl" without programmatic
    # dependent launch (CVLLM_CUDA_PDL=0).
    for cfg in "512 128 1 per-n" "512 128 1 eager" "512 128 1 no-pdl" "512 128 32 per-n" "512 128 32 eager" \
               "128 128 128 per-n" "3584 128 1 per-n" "512 128 1 invariant" ${BENCH_EXTRA:-}; do
      read -r in_len out_len bs gemm <<< "${cfg//,/ }"
      [[ $shape == llama-1b && $in_len -gt 1900 ]] && continue  # its context is 2048
      log=$OUT/bench-$shape-$in_len-$out_len-$bs-$gemm.json
      CVLLM_CUDA_PDL=$([[ $gemm == no-pdl ]] && echo 0 || echo 1) \
      CVLLM_CUDA_BATCH_INVARIANT=$([[ $gemm == invariant ]] && echo 1 || echo 0) \
      CVLLM_CUDA_KEEP_MALLOC=$([[ $gemm == per-n-glibc ]] && echo 1 || echo 0) "$BIN/cvllm" bench latency --model "$model" --skip-tokenizer-init --device cuda \
        --max-model-len $(( in_len + out_len > 1024 ? in_len + out_len : 1024 )) --input-len "$in_len" --output-len "$out_len" --batch-size "$bs" \
        --num-iters 3 --num-iters-warmup 1 $([[ $gemm == eager ]] && echo --enforce-eager) > "$log" 2> "${log%.json}.err"
      note "bench latency $shape in=$in_len out=$out_len bs=$bs gemm=$gemm: $(python3 -c "import json,sys; d=json.load(open('$log')); print('prefill %.1f tok/s, decode %.1f tok/s, latency %.3f s' % (d['prompt_tokens_per_s'], d['decode_tokens_per_s'], d['avg_latency_s']))" 2>/dev/null || echo failed: $(tail -2 "${log%.json}.err"))"
    done
  done
fi

# Issue 8's targets on a Llama-3-8B-shaped random bf16 checkpoint (safetensors, made here), each
# with the A/B switch of the change that targets it: matrix-vector kernels for batch-1 decode,
# the mma.sync prefill attention against the WMMA one for long prompts, sampling on the GPU for
# throughput (CVLLM_CUDA_SAMPLING=0 would send [256, 128k] logits to the host every step: compare
# with BENCHMARKS.md's earlier row instead).
if [[ "${TARGETS:-0}" == 1 ]]; then
  model=/tmp/random-llama3-8b-hf
  [[ -f $model/config.json ]] || python3 scripts/gen_random_hf_checkpoint.py --shape llama3-8b "$model" > "$OUT/gen-8b.log" 2>&1 ||
    note "could not generate the 8B checkpoint (see gen-8b.log)"
  bench8b() {  # name env... -- args...
    local name=$1; shift
    # TARGETS_ONLY="name ...": just those runs.
    [[ -n "${TARGETS_ONLY:-}" && " $TARGETS_ONLY " != *" $name "* ]] && return
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    local log=$OUT/target-$name.json
    env "${envs[@]}" "$BIN/cvllm" "$@" --model "$model" --skip-tokenizer-init --device cuda > "$log" 2> "${log%.json}.err"
    note "8B $name: $(python3 -c "
import json; d = json.load(open('$log'))
keys = ['prompt_tokens_per_s', 'decode_tokens_per_s', 'avg_latency_s', 'tokens_per_second', 'output_throughput', 'elapsed_time']
print(', '.join('%s %.4g' % (k, d[k]) for k in keys if k in d))" 2>/dev/null || echo failed: $(tail -2 "${log%.json}.err"))"
  }
  lat="bench latency --num-iters 3 --num-iters-warmup 1"
  bench8b decode-bs1 -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024
  bench8b decode-bs1-sync -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024 --no-async-scheduling
  bench8b decode-bs1-eager -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024 --enforce-eager
  bench8b decode-bs1-no-pdl CVLLM_CUDA_PDL=0 -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024
  bench8b decode-bs1-old-attention CVLLM_CUDA_DECODE_ATTENTION=0 -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024
  bench8b decode-bs1-global-merge CVLLM_CUDA_DECODE_CLUSTER=0 -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024
  bench8b decode-bs1-ctx4k -- $lat --input-len 4000 --output-len 128 --batch-size 1 --max-model-len 4200
  bench8b decode-bs1-ctx4k-global-merge CVLLM_CUDA_DECODE_CLUSTER=0 -- $lat --input-len 4000 --output-len 128 --batch-size 1 --max-model-len 4200
  bench8b decode-bs1-ctx4k-old-attention CVLLM_CUDA_DECODE_ATTENTION=0 -- $lat --input-len 4000 --output-len 128 --batch-size 1 --max-model-len 4200
  bench8b decode-bs4 -- $lat --input-len 512 --output-len 128 --batch-size 4 --max-model-len 1024
  bench8b decode-bs4-sync -- $lat --input-len 512 --output-len 128 --batch-size 4 --max-model-len 1024 --no-async-scheduling
  bench8b decode-bs4-eager -- $lat --input-len 512 --output-len 128 --batch-size 4 --max-model-len 1024 --enforce-eager
  bench8b decode-bs4-no-pdl CVLLM_CUDA_PDL=0 -- $lat --input-len 512 --output-len 128 --batch-size 4 --max-model-len 1024
  bench8b decode-bs1-again -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024
  bench8b decode-bs1-sync-again -- $lat --input-len 512 --output-len 128 --batch-size 1 --max-model-len 1024 --no-async-scheduling
  bench8b decode-bs4-again -- $lat --input-len 512 --output-len 128 --batch-size 4 --max-model-len 1024
  bench8b prefill-8000 -- bench latency --num-iters 2 --num-iters-warmup 1 --input-len 8000 --output-len 1 --batch-size 1 --max-model-len 8192
  bench8b prefill-8000-wmma CVLLM_CUDA_FLASH_WMMA=1 -- bench latency --num-iters 2 --num-iters-warmup 1 --input-len 8000 --output-len 1 --batch-size 1 --max-model-len 8192
  bench8b throughput-1000x256 -- bench throughput --num-prompts 1000 --input-len 256 --output-len 256 --max-model-len 1024
  bench8b throughput-1000x256-sync -- bench throughput --num-prompts 1000 --input-len 256 --output-len 256 --max-model-len 1024 --no-async-scheduling
  bench8b throughput-1000x256-eager -- bench throughput --num-prompts 1000 --input-len 256 --output-len 256 --max-model-len 1024 --enforce-eager
  bench8b throughput-1000x256-one-block-per-piece CVLLM_CUDA_DECODE_STRIDE=16 -- bench throughput --num-prompts 1000 --input-len 256 --output-len 256 --max-model-len 1024
fi

# Per-kernel GPU time of decode steps (Nsight Compute; the prefill's launches are skipped). The
# clocks and caches are left as they run (--clock-control none --cache-control none), so small
# kernels are not timed at base clock from a flushed L2.
if [[ "${PROFILE:-0}" == 1 ]] && command -v ncu >/dev/null; then
  for shape in ${PROFILE_SHAPES:-smollm2-135m llama-1b}; do
    if [[ $shape == llama3-8b ]]; then
      model=/tmp/random-llama3-8b-hf
      [[ -f $model/config.json ]] || python3 scripts/gen_random_hf_checkpoint.py --shape llama3-8b "$model" > /dev/null 2>&1
    else
      model=/tmp/random-$shape.gguf
      [[ -f $model ]] || python3 scripts/gen_random_llama_gguf.py --shape "$shape" "$model" > /dev/null 2>&1
    fi
    # PROFILE_PREFILL=1: every launch of one 8,000-token prefill instead (loading's are skipped).
    if [[ "${PROFILE_PREFILL:-0}" == 1 ]]; then
      ncu_args=(--launch-skip 0 --launch-count 3000 --kernel-name-base demangled --kernel-name "regex:^(?!.*dequantize)")
      run_args=(--max-model-len 8192 --input-len 8000 --output-len 1)
    else
      ncu_args=(--launch-skip "${PROFILE_SKIP:-1500}" --launch-count "${PROFILE_COUNT:-600}")
      run_args=(--max-model-len 1024 --input-len 512 --output-len 64)
    fi
    timeout 300 ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv "${ncu_args[@]}" \
      "$BIN/cvllm" bench latency --model "$model" --skip-tokenizer-init --device cuda "${run_args[@]}" \
      --batch-size "${PROFILE_BS:-1}" --num-iters 1 --num-iters-warmup 0 > "$OUT/ncu-$shape.csv" 2> "$OUT/ncu-$shape.err"
    python3 - "$OUT/ncu-$shape.csv" <<'PY' | tee -a "$SUMMARY"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
ki, vi, ui = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
tot = collections.Counter(); cnt = collections.Counter()
for r in rows:
    v = float(r[vi].replace(",", "")); v *= {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1, "us": 1, "msecond": 1e3, "ms": 1e3}.get(r[ui], 1)
    name = r[ki].split("(")[0][:60]; tot[name] += v; cnt[name] += 1
print(f"ncu {sys.argv[1].split('/')[-1]}: {len(rows)} kernels, {sum(tot.values()):.0f} us")
for name, v in tot.most_common(12):
    print(f"  {v:9.0f} us {cnt[name]:5d}x {v / cnt[name]:7.1f} us  {name}")
PY
  done
fi

tar czf "$RESULTS/logs.tgz" -C "$OUT" .
cp "$SUMMARY" "$RESULTS/summary.txt"
echo "==== summary ===="
cat "$SUMMARY"
exit $status
