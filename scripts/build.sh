#!/usr/bin/env bash
# Configures and builds sparsek into build/ (or $SPARSEK_BUILD_DIR). Extra arguments go to cmake,
# e.g. scripts/build.sh -DSPARSEK_CUDA=OFF for a CPU-only build. SPARSEK_BUILD_TARGET=sparsek
# builds only that target (the quickstart: no test binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SPARSEK_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)" ${SPARSEK_BUILD_TARGET:+--target "$SPARSEK_BUILD_TARGET"}
