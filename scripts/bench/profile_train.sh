#!/usr/bin/env bash
# Per-kernel GPU time of the GPT-2 124M training step (`sparsek bench train`, B 32, T 1024) and of
# the PyTorch peer's step, on the GPU machine: nsys's kernel summary over a few steps (divided by
# the step count it ran; ncu's per-kernel durations when nsys is absent) for ours, torch.profiler's table for the peer (train_peer.py --profile).
# Writes OUT_DIR/profile-ours.txt, profile-peer.txt and the two benches' JSON (losses, grad norms).
#   scripts/bench/profile_train.sh   (BUILD, default build-gpu; OUT_DIR, default /tmp/profile-train)
set -u
cd "$(dirname "$0")/../.."
build=${BUILD:-build-gpu}
out=${OUT_DIR:-/tmp/profile-train}
mkdir -p "$out"
steps=3 warmup=2  # + 1 phase step: 6 steps under the profiler
if command -v nsys > /dev/null; then
  timeout 150 nsys profile -t cuda -o "$out/ours" --force-overwrite true "$build/sparsek" bench train --batch 32 \
    --seq-len 1024 --steps $steps --warmup $warmup --out "$out/ours-profiled.json" > "$out/nsys.log" 2>&1
  nsys stats -q -r cuda_gpu_kern_sum -f csv "$out/ours.nsys-rep" > "$out/kern.csv" 2>> "$out/nsys.log"
  python3 - "$out/kern.csv" $((steps + warmup + 1)) > "$out/profile-ours.txt" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n = int(sys.argv[2])
tot = sum(float(r["Total Time (ns)"]) for r in rows) / n / 1e6
print(f"per step (of {n} profiled): {tot:.2f} ms of kernels")
for r in sorted(rows, key=lambda r: -float(r["Total Time (ns)"]))[:45]:
    print(f'{float(r["Total Time (ns)"]) / n / 1e6:8.3f} ms {int(r["Instances"]) / n:7.1f}x  {r["Name"][:110]}')
PY
elif command -v ncu > /dev/null; then  # one timed step + the phase step, every kernel replayed once
  steps=1 warmup=0
  timeout 240 ncu --metrics gpu__time_duration.sum --csv --log-file "$out/ncu.csv" "$build/sparsek" bench train \
    --batch 32 --seq-len 1024 --steps $steps --warmup $warmup --out "$out/ours-profiled.json" > "$out/ncu.log" 2>&1
  python3 - "$out/ncu.csv" $((steps + warmup + 1)) > "$out/profile-ours.txt" <<'PY'
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
print(f"per step (of {n} profiled, ncu, clocks locked): {sum(tot.values()) / n:.2f} ms of kernels")
for k in sorted(tot, key=lambda k: -tot[k])[:45]:
    print(f"{tot[k] / n:8.3f} ms {cnt[k] / n:7.1f}x  {k}")
PY
else
  echo "neither nsys nor ncu found" > "$out/profile-ours.txt"
fi
if [ "${PEER:-1}" = 1 ]; then  # PEER=0: ours only
  PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench/train_peer.py --batch 32 --seq-len 1024 --steps 10 --warmup 10 \
    --out "$out/peer.json" --profile "$out/profile-peer.txt" > "$out/peer.log" 2>&1
fi
echo "ours:"; head -48 "$out/profile-ours.txt"; [ "${PEER:-1}" = 1 ] && { echo "peer:"; head -40 "$out/profile-peer.txt"; }
