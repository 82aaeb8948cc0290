#!/usr/bin/env bash
# Per-kernel GPU time of LSH attention (`sparsek bench lsh`, 65,536 tokens, 12 x 64, n_hashes 2,
# chunk 128) on the GPU machine: ncu's duration of every launch (the GPU's own clocks, L2 flushed
# before each kernel), summarised per kernel as mean ms per launch and launch count, one table per
# T. What the phase breakdown of `bench lsh` cannot say: which kernel inside a phase takes the
# time, and how much of a phase is host gap rather than kernel.
# Writes OUT_DIR/profile-lsh-T<T>.txt (and the ncu CSVs).
#   scripts/bench/profile_lsh.sh [T ...]   (default 4096 32768; BUILD, default build-gpu; OUT_DIR,
#                                          default /tmp/profile-lsh)
set -u
cd "$(dirname "$0")/../.."
build=${BUILD:-build-gpu}
out=${OUT_DIR:-/tmp/profile-lsh}
mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu not found" | tee "$out/profile-lsh.txt"; exit 1; }
for T in "${@:-4096 32768}"; do
  for t in $T; do
    timeout 200 ncu --clock-control none --cache-control all --metrics gpu__time_duration.sum --csv \
      --log-file "$out/ncu-T$t.csv" "$build/sparsek" bench lsh --t-min "$t" --t-max "$t" --iters 1 \
      --out "$out/bench-T$t.json" > "$out/ncu-T$t.log" 2>&1
    python3 scripts/bench/ncu_durations.py "$out/ncu-T$t.csv" --layout mean \
      --title "LSH attention, T $t: ncu durations (own clocks, L2 flushed per kernel), mean ms per launch" > "$out/profile-lsh-T$t.txt"
    cat "$out/profile-lsh-T$t.txt"
  done
done
