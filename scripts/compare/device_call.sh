#!/bin/bash
# One device call of a comparison grid (docs/COMPARE.md, "Splitting a grid over device sessions"):
#   scripts/compare/device_call.sh GRID OUT_DIR MINUTES [sparsek compare options...]
# runs `sparsek compare GRID --max-minutes MINUTES ...` (binary: $SPARSEK, default build-gpu/sparsek),
# then packs the grid's state WITHOUT checkpoints (cell.json, metrics.jsonl, results.*, grid.json)
# into $OUT/<name>-state.tgz, which comes back from the device machine (a few hundred kB). Unpack
# it here with `tar xzf <files_at>/<name>-state.tgz` in the repository root and carry OUT_DIR on the
# next session's calls, so its finished cells are skipped. Exits with sparsek's status.
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 GRID OUT_DIR MINUTES [sparsek compare options...]" >&2
  exit 2
fi
grid=$1 out_dir=$2 minutes=$3
shift 3
bin=${SPARSEK:-build-gpu/sparsek}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$bin" compare "$grid" --max-minutes "$minutes" "$@"
rc=$?
"$bin" compare "$grid" --list "$@" 2>/dev/null | grep -v "not selected" || true
if [ -n "${OUT:-}" ] && [ -d "$out_dir" ]; then
  tar czf "$OUT/$(basename "$out_dir")-state.tgz" --exclude='step_*' --exclude='.tmp-*' --exclude='.del-*' \
    --exclude='.lock' --exclude='latest' "$out_dir"
  ls -la "$OUT"
fi
exit $rc
