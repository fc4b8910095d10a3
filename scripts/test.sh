#!/usr/bin/env bash
# Runs every test on a fresh machine: set-up (dependencies, default model, build), the CTest suite
# (unit, kernels, golden, e2e) in parallel, then each libFuzzer target for a bounded time.
#
#   bash scripts/test.sh
#   FUZZ_SECONDS=0 bash scripts/test.sh    # skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

FETCH_TEST_MODELS=1 bash scripts/setup.sh
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 900

if [ "${FUZZ_SECONDS:-60}" != "0" ]; then
  bash scripts/run_fuzzers.sh build-fuzz
fi
echo "test.sh: all tests passed"
