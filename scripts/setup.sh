#!/usr/bin/env bash
# The README's first command: installs the build dependencies (apt), builds, and runs the main
# job. At this stage the main job is `sparsek demo`: a tiny model trained on synthetic data, on
# the GPU when one is present, else on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh "$@"
./build/sparsek info
./build/sparsek demo
