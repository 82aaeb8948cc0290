#!/usr/bin/env bash
# Runs `sparsek bench ops` and the PyTorch peer (scripts/bench/ops_peer.py) in one go on the GPU
# machine and merges them: OUT_DIR/ops.json and OUT_DIR/ops.md (default OUT_DIR: docs/bench).
# Needs build/sparsek built with CUDA, and python3 with torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-docs/bench}"
mkdir -p "$out"
tmp=$(mktemp -d)
./build/sparsek bench ops --out "$tmp/ours.json"
PYTHONUNBUFFERED=1 python3 scripts/bench/ops_peer.py --out "$tmp/peer.json"
python3 scripts/bench/report_ops.py "$tmp/ours.json" "$tmp/peer.json" --json-out "$out/ops.json" --md-out "$out/ops.md" \
  --commit "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
