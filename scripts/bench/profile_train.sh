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
  clocks="clocks locked"; [ "${CLOCKS:-base}" = base ] || clocks="own clocks"
  python3 scripts/bench/ncu_durations.py "$out/ncu.csv" --layout per-step --steps $((steps + warmup + 1)) --name-width 110 \
    --title "ncu, $clocks" > "$out/profile-ours.txt"
else
  echo "ncu not found" > "$out/profile-ours.txt"
fi
if [ "${PEER:-1}" = 1 ]; then  # PEER=0: ours only
  PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench/train_peer.py --batch 32 --seq-len 1024 --steps 10 --warmup 10 \
    --out "$out/peer.json" --profile "$out/profile-peer.txt" > "$out/peer.log" 2>&1
fi
echo "ours:"; head -48 "$out/profile-ours.txt"; [ "${PEER:-1}" = 1 ] && { echo "peer:"; head -40 "$out/profile-peer.txt"; }
