#!/usr/bin/env bash
# Runs `sparsek bench lsh` and the PyTorch peers (scripts/bench/lsh_peer.py: SDPA flash full causal
# attention, Hugging Face LSHSelfAttention) in one go on the GPU machine and merges them into
# OUT_DIR/lsh.json and OUT_DIR/lsh.md (default OUT_DIR: docs/bench). Extra arguments go to both
# (e.g. --t-max 16384 --iters 10). Needs build/sparsek built with CUDA, python3 with torch and
# transformers (HF is skipped with an error row if the import fails).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT_DIR:-docs/bench}"
mkdir -p "$out"
tmp=$(mktemp -d)
./build/sparsek bench lsh --out "$tmp/ours.json" "$@"
PYTHONUNBUFFERED=1 python3 scripts/bench/lsh_peer.py --out "$tmp/peer.json" "$@"
python3 scripts/bench/report_lsh.py "$tmp/ours.json" "$tmp/peer.json" --json-out "$out/lsh.json" \
  --md-out "$out/lsh.md" --commit "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
cat "$out/lsh.md"
