#!/usr/bin/env bash
# Per-kernel GPU time of the GPT-2 124M training step (`sparsek bench train`, B 32, T 1024) and of
# the PyTorch peer's step, on the GPU machine: ncu's per-kernel durations over one timed step and
# the phase step (clocks locked: ~1.15x the real times) for ours, torch.profiler's table for the
# peer (train_peer.py --profile). The GPU machine has ncu, not nsys. CLOCKS=none runs ncu with
# --clock-control none --cache-control none (the GPU's own clocks, caches not flushed between kernels:
# durations comparable with the step's wall time).
# Writes OUT_DIR/profile-ours.txt, profile-peer.txt and the two benches' JSON (losses, grad norms).
#   scripts/bench/profile_train.sh   (BUILD, default build-gpu; OUT_DIR, default /tmp/profile-train)
set -u
cd "$(dirname "$0")/../.."
build=${BUILD:-build-gpu}
out=${OUT_DIR:-/tmp/profile-train}
mkdir -p "$out"
if command -v ncu > /dev/null; then  # one timed step + the phase step, every kernel replayed once
  steps=1 warmup=0
  cache=all; [ "${CLOCKS:-base}" = none ] && cache=none
  timeout 240 ncu --clock-control "${CLOCKS:-base}" --cache-control $cache --metrics gpu__time_duration.sum --csv --log-file "$out/ncu.csv" "$build/sparsek" bench train \
    --batch 32 --seq-len 1024 --steps $steps --warmup $warmup --out "$out/ours-profiled.json" > "$out/ncu.log" 2>&1
  python3 - "$out/ncu.csv" $((steps + warmup + 1)) "${CLOCKS:-base}" > "$out/profile-ours.txt" <<'PY'
import csv, sys, collections
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
tot, cnt = collections.defaultdict(float), collections.defaultdict(int)
for r in csv.DictReader(lines[start:]):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    v = float(r["Metric Value"].replace(",", ""))
    scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0}.get(r.get("Metric Unit", "nsecond"), 1e-6)
    name = r["Kernel Name"][:110]
    tot[name] += v * scale
    cnt[name] += 1
n = int(sys.argv[2])
clocks = "clocks locked" if sys.argv[3] == "base" else "own clocks"
print(f"per step (of {n} profiled, ncu, {clocks}): {sum(tot.values()) / n:.2f} ms of kernels")
for k in sorted(tot, key=lambda k: -tot[k])[:45]:
    print(f"{tot[k] / n:8.3f} ms {cnt[k] / n:7.1f}x  {k}")
PY
else
  echo "ncu not found" > "$out/profile-ours.txt"
fi
if [ "${PEER:-1}" = 1 ]; then  # PEER=0: ours only
  PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench/train_peer.py --batch 32 --seq-len 1024 --steps 10 --warmup 10 \
    --out "$out/peer.json" --profile "$out/profile-peer.txt" > "$out/peer.log" 2>&1
fi
echo "ours:"; head -48 "$out/profile-ours.txt"; [ "${PEER:-1}" = 1 ] && { echo "peer:"; head -40 "$out/profile-peer.txt"; }
