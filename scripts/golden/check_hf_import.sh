#!/usr/bin/env bash
# GPU machine: builds sparsek if needed and runs scripts/golden/check_hf_import.py (Pythia-70m/160m
# and GPT-2 124M shaped random models: import, logits vs transformers in fp32 and bf16, export and
# reload). Usage: scripts/golden/check_hf_import.sh OUT_DIR   (SPARSEK_BIN overrides build/sparsek)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:?usage: $0 OUT_DIR}"
bin="${SPARSEK_BIN:-build/sparsek}"
[ -x "$bin" ] || scripts/build.sh
python3 scripts/golden/check_hf_import.py "$out" --sparsek "$bin"
