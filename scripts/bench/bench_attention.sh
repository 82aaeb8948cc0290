#!/usr/bin/env bash
# Runs `sparsek bench attention` and the PyTorch peers (scripts/bench/attention_peer.py: SDPA flash,
# cuDNN, FlexAttention) in one go on the GPU machine and merges them into OUT_DIR/attention.json
# and OUT_DIR/attention.md (default OUT_DIR: docs/bench). Extra arguments go to both
# (e.g. --t-max 8192 --iters 10). Needs build/sparsek built with CUDA and python3 with torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT_DIR:-docs/bench}"
mkdir -p "$out"
tmp=$(mktemp -d)
./build/sparsek bench attention --out "$tmp/ours.json" "$@"
PYTHONUNBUFFERED=1 python3 scripts/bench/attention_peer.py --out "$tmp/peer.json" "$@"
python3 scripts/bench/report_attention.py "$tmp/ours.json" "$tmp/peer.json" --json-out "$out/attention.json" \
  --md-out "$out/attention.md" --commit "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
