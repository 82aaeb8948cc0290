#!/usr/bin/env bash
# Per-kernel GPU time of the fused attention (`sparsek bench attention --no-sparsek`, 65,536 tokens)
# on the GPU machine: ncu's duration of every launch (the GPU's own clocks, L2 flushed before each
# kernel) at one T and head dim, listed per kernel in launch order (the bench runs the full case,
# then the sliding window; warm-up and timed runs alike), so that the backward's prepare, main and
# finish-dQ kernels can be told apart per case. Writes OUT_DIR/profile-attention-D<D>-T<T>.txt.
#   scripts/bench/profile_attention.sh D T [T ...]   (BUILD, default build-gpu; OUT_DIR, default
#                                                   /tmp/profile-attention)
set -u
cd "$(dirname "$0")/../.."
build=${BUILD:-build-gpu}
out=${OUT_DIR:-/tmp/profile-attention}
mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu not found" | tee "$out/profile-attention.txt"; exit 1; }
D=$1
shift
for t in "$@"; do
  timeout 200 ncu --clock-control none --cache-control all --metrics gpu__time_duration.sum --csv \
    --log-file "$out/ncu-D$D-T$t.csv" "$build/sparsek" bench attention --no-sparsek --head-dims "$D" --t-min "$t" \
    --t-max "$t" --iters 1 --out "$out/bench-D$D-T$t.json" > "$out/ncu-D$D-T$t.log" 2>&1
  python3 scripts/bench/ncu_durations.py "$out/ncu-D$D-T$t.csv" --strip-args --name-width 70 \
    --title "attention, hd $D, T $t: ncu durations in ms per launch, in launch order" > "$out/profile-attention-D$D-T$t.txt"
  cat "$out/profile-attention-D$D-T$t.txt"
done
