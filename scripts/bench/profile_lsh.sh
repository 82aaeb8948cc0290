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
    python3 - "$out/ncu-T$t.csv" "$t" > "$out/profile-lsh-T$t.txt" <<'PY'
import csv, sys, collections
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
tot, cnt = collections.defaultdict(float), collections.defaultdict(int)
for r in csv.DictReader(lines[start:]):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    v = float(r["Metric Value"].replace(",", ""))
    scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0}.get(r.get("Metric Unit", "nsecond"), 1e-6)
    name = r["Kernel Name"][:100]
    tot[name] += v * scale
    cnt[name] += 1
print(f"LSH attention, T {sys.argv[2]}: ncu durations (own clocks, L2 flushed per kernel), mean ms per launch")
for k in sorted(tot, key=lambda k: -tot[k] / cnt[k]):
    print(f"{tot[k] / cnt[k]:8.4f} ms x{cnt[k]:4d}  {k}")
PY
    cat "$out/profile-lsh-T$t.txt"
  done
done
