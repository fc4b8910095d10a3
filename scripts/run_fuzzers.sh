#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/fuzz_*.cpp) in a clang build directory and runs each for
# a bounded time on a scratch copy of its seed corpus tests/fuzz/corpus/<name without fuzz_>/, so
# the committed corpus never grows. Fails if any target finds a crash, leak, timeout or OOM; the
# reproducers are kept in $FUZZ_ARTIFACTS.
#
# Usage: scripts/run_fuzzers.sh [build-dir]        (default build-fuzz, relative to the repo root)
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_MAX_LEN (default 65536),
#              FUZZ_ARTIFACTS (default <build-dir>/fuzz-artifacts), JOBS (build parallelism),
#              FUZZ_SKIP_BUILD=1 (run the fuzz_* binaries already in the build dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-build-fuzz}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
MAX_LEN="${FUZZ_MAX_LEN:-65536}"
ARTIFACTS="${FUZZ_ARTIFACTS:-$BUILD/fuzz-artifacts}"
JOBS="${JOBS:-$(nproc)}"

if [[ "${FUZZ_SKIP_BUILD:-0}" != 1 ]]; then
  # The CUDA backend stays out: parsers are what is fuzzed, and nvcc would only slow the build.
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -DCVLLM_BUILD_FUZZERS=ON -DCVLLM_BUILD_TESTS=ON -DCVLLM_CUDA=OFF \
    -DCVLLM_BUILD_EXAMPLES=OFF >/dev/null
  targets=()
  for src in "$ROOT"/tests/fuzz/fuzz_*.cpp; do
    [[ -e "$src" ]] && targets+=("$(basename "$src" .cpp)")
  done
  if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no fuzz targets in tests/fuzz/" >&2
    exit 1
  fi
  cmake --build "$BUILD" --target "${targets[@]}" -j "$JOBS"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$ARTIFACTS"

# UBSan only reports by default; make every finding fatal so libFuzzer keeps a reproducer.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

failed=()
ran=0
for bin in "$BUILD"/tests/fuzz/fuzz_*; do
  [[ -f "$bin" && -x "$bin" ]] || continue
  name="$(basename "$bin")"
  ran=$((ran + 1))
  short="${name#fuzz_}"
  corpus="$scratch/$short"
  mkdir -p "$corpus"
  if [[ -d "$ROOT/tests/fuzz/corpus/$short" ]]; then
    cp -R "$ROOT/tests/fuzz/corpus/$short/." "$corpus/"
  else
    echo "warning: no seed corpus tests/fuzz/corpus/$short/" >&2
  fi
  extra=()
  [[ -f "$ROOT/tests/fuzz/$name.dict" ]] && extra+=("-dict=$ROOT/tests/fuzz/$name.dict")
  echo "== $name: ${SECONDS_EACH}s from $(find "$corpus" -type f | wc -l) seed inputs"
  log="$scratch/$name.log"
  if "$bin" -max_total_time="$SECONDS_EACH" -max_len="$MAX_LEN" -rss_limit_mb=2048 -timeout=30 \
      -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" "${extra[@]}" "$corpus" \
      >"$log" 2>&1; then
    grep -E "^(Done|stat::number_of_executed_units)" "$log" || true
  else
    echo "!! $name failed; reproducers in $ARTIFACTS:" >&2
    tail -n 80 "$log" >&2
    failed+=("$name")
  fi
done

if [[ $ran -eq 0 ]]; then
  echo "no fuzz_* binaries in $BUILD/tests/fuzz" >&2
  exit 1
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz failures: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran clean"
