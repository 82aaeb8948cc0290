#!/usr/bin/env bash
# One device call that checks and measures a CUDA build (what a session's ~30 device-minutes are
# for), steps in order of value, each skipped when the time left (LIMIT_SECONDS, default 540)
# cannot hold it:
#   1. tests: every CUDA test of the carried test binaries (scripts/gpu_tests.sh, filter
#      'Cuda*:*FlashAttention*:*Cuda*'); the wgmma forward's tests first, alone: when they fail,
#      the steps below measure with SPARSEK_FLASH_FWD=mma (and its tile-error map is printed); the
#      other tests run with the rest and do not gate;
#   2. attention: `sparsek bench attention` (hd 64 and 128) + attention_peer.py +
#      report_attention.py -> attention.{md,json};
#   3. LSH: scripts/bench/bench_lsh.sh --iters 10 (ours, SDPA flash, HF) -> lsh.{md,json};
#   4. SparseK: the issue-6 shape (k 512, w 0 and 512, T 4k-32k) + SDPA flash -> attention-sparsek.{md,json};
#   5. train: scripts/bench/bench_train.sh (GPT-2 124M vs the PyTorch peer) -> train.{md,json};
#   5b. train_f32 (not in the default STEPS): the peer's step in fp32 (its loss trajectory);
#   2b. attn_ab (not in the default STEPS): an A/B of two attention kernel choices, ours only, twice
#      in alternation: AB_A and AB_B (environment assignments, default SPARSEK_FLASH_EXP2=accurate vs
#      SPARSEK_FLASH_EXP2=ftz): `bench attention` at AB_HEAD_DIMS (default 64; fwd and fwd+bwd ms)
#      and, unless AB_TRAIN=0, `bench train` (step ms) -> attn-ab-*.json and a table;
#   6. finetune (not in the default STEPS): scripts/bench/bench_finetune.sh (Pythia-160m shapes vs
#      transformers) -> finetune.{md,json}.
# STEPS (comma-separated, default tests,attention,lsh,sparsek,train) picks the steps. SESSION_FWD
# (default auto) is the SPARSEK_FLASH_FWD of the attention and train steps; when the wgmma forward's
# tests fail they use mma instead.
# Binaries from $BUILD (default build-gpu; carry sparsek, runtime-libs and tests/test_* packed).
# Everything lands in ONE archive, $OUT/session.tgz (a device call returns at most 8 files); a
# summary is printed last. SPARSEK_COMMIT names the commit in the reports.
#   scripts/bench/device_session_call.sh [LIMIT_SECONDS]
set -u
cd "$(dirname "$0")/../.."
source scripts/bench/device_call_common.sh session "${1:-540}"
commit=${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

# (kept in `selected` and unset: bench_finetune.sh reads its own STEPS, the timed step count)
selected=",${STEPS:-tests,attention,lsh,sparsek,train},"
unset STEPS
step() { [[ $selected == *",$1,"* ]]; }

# 1. Tests.
fwd=${SESSION_FWD:-auto}
if step tests; then
wgmma_ok=yes
if ! timeout 60 "$build/tests/test_attention" --gtest_filter='*WgmmaForward*:*EachForwardKernel*' > "$out/forward-kernel-tests.txt" 2>&1; then
  wgmma_ok=no; fwd=mma
fi
echo "wgmma forward tests: $([ $wgmma_ok = yes ] && echo passed || echo FAILED) (left $(left) s)"
[ $wgmma_ok = yes ] || grep -E -A7 'differs from|differ from Q|Trace|T [0-9]+ window' "$out/forward-kernel-tests.txt" | grep -v '^--$' | head -70
JOBS=${JOBS:-8} EACH=110 OUT="$out" timeout 130 bash scripts/gpu_tests.sh 'Cuda*:*FlashAttention*:*Cuda*' > "$out/gpu-tests.txt" 2>&1
echo "gpu tests rc=$? (left $(left) s)"; grep -E 'rc=|failures' "$out/gpu-tests.txt" | head -12
fi

# 2. Attention (full, sliding window) against SDPA flash / cuDNN / FlexAttention.
if step attention && [ "$(left)" -gt 200 ]; then
  SPARSEK_FLASH_FWD=$fwd timeout 90 "$build/sparsek" bench attention --no-sparsek --head-dims 64,128 \
    --out "$out/attention-ours.json" > "$out/attention-ours.log" 2>&1
  PYTHONUNBUFFERED=1 timeout 180 python3 scripts/bench/attention_peer.py --out "$out/attention-peer.json" \
    > "$out/attention-peer.log" 2>&1
  python3 scripts/bench/report_attention.py "$out/attention-ours.json" "$out/attention-peer.json" \
    --json-out "$out/attention.json" --md-out "$out/attention.md" --commit "$commit (forward: $fwd)" > /dev/null 2>&1
  echo "attention done (left $(left) s)"; grep -E '^\| 64 ' "$out/attention.md" | head -12
fi

# 2b. Two attention kernel choices against each other (ours only; alternating runs).
if step attn_ab && [ "$(left)" -gt 150 ]; then
  echo "A: ${AB_A:=SPARSEK_FLASH_EXP2=accurate}  B: ${AB_B:=SPARSEK_FLASH_EXP2=ftz}"
  for run in 1 2; do
    for variant in A B; do
      if [ $variant = A ]; then assign=$AB_A; else assign=$AB_B; fi
      env $assign timeout 45 "$build/sparsek" bench attention --no-sparsek --head-dims "${AB_HEAD_DIMS:-64}" \
        --out "$out/attn-ab-$variant-$run.json" > "$out/attn-ab-$variant-$run.log" 2>&1
      [ "${AB_TRAIN:-1}" = 0 ] || env $assign timeout 45 "$build/sparsek" bench train \
        --out "$out/attn-ab-train-$variant-$run.json" > "$out/attn-ab-train-$variant-$run.log" 2>&1
    done
  done
  python3 - "$out" <<'PY'
import json, sys, glob, collections
out = sys.argv[1]
rows = collections.defaultdict(dict)
for f in sorted(glob.glob(f"{out}/attn-ab-[AB]-*.json")):
    name = f.rsplit("attn-ab-", 1)[1][:-5]
    for r in json.load(open(f))["results"]:
        rows[(r["kind"], r["head_dim"], r["T"])][name] = (r["fwd_ms"], r["fwd_bwd_ms"])
cols = sorted({c for v in rows.values() for c in v})
print("| kind | D | T | " + " | ".join(f"{c} fwd / fwd+bwd ms" for c in cols) + " |")
for (kind, D, T), v in sorted(rows.items()):
    print(f"| {kind} | {D} | {T} | " + " | ".join("%.3f / %.3f" % v[c] if c in v else "-" for c in cols) + " |")
for f in sorted(glob.glob(f"{out}/attn-ab-train-*.json")):
    try:
        print(f.rsplit("/", 1)[1], "step ms", round(json.load(open(f))["step_ms"], 2))
    except Exception as e:
        print(f.rsplit("/", 1)[1], "failed", e)
PY
  echo "attn_ab done (left $(left) s)"
fi

# 3. LSH against SDPA flash and the Hugging Face layer.
if step lsh && [ "$(left)" -gt 130 ]; then
  OUT_DIR="$out" SPARSEK_COMMIT="$commit" timeout 120 scripts/bench/bench_lsh.sh --iters 10 > "$out/lsh.log" 2>&1
  echo "lsh rc=$? (left $(left) s)"; tail -6 "$out/lsh.log"
fi

# 4. SparseK at the issue's shape against SDPA flash.
if step sparsek && [ "$(left)" -gt 150 ]; then
  timeout 100 "$build/sparsek" bench attention --sparsek-only --head-dims 64 --sparsek-k 512 --sparsek-window 0,512 --sparsek-t-min 4096 \
    --t-max 32768 --iters 3 --out "$out/sparsek-ours.json" > "$out/sparsek-ours.log" 2>&1
  PYTHONUNBUFFERED=1 timeout 60 python3 scripts/bench/attention_peer.py --head-dims 64 --systems sdpa_flash --t-min 4096 \
    --t-max 32768 --iters 5 --out "$out/sparsek-peer.json" > "$out/sparsek-peer.log" 2>&1
  python3 scripts/bench/report_attention.py "$out/sparsek-ours.json" "$out/sparsek-peer.json" \
    --json-out "$out/attention-sparsek.json" --md-out "$out/attention-sparsek.md" --commit "$commit" > /dev/null 2>&1
  echo "sparsek done (left $(left) s)"; grep -E '^\| 64 \| 12 ' "$out/attention-sparsek.md" | head -8
fi

# 5. End-to-end training step against the PyTorch nanoGPT-style peer.
if step train && [ "$(left)" -gt 110 ]; then
  SPARSEK_FLASH_FWD=$fwd OUT_DIR="$out" SPARSEK_COMMIT="$commit" timeout $(( $(left) - 15 )) scripts/bench/bench_train.sh \
    > "$out/train.log" 2>&1
  echo "train rc=$? (left $(left) s)"; tail -4 "$out/train.log"
  python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
for k in ("sparsek", "pytorch"):
    l = r[k].get("losses", [])
    if l: print(k, "losses", [round(l[i], 3) for i in (0, 1, 2, 5, 10, 20, len(l) - 1)])' "$out/train.json" 2>/dev/null
fi

# 5b. (not in the default STEPS) The peer's training step in fp32 (no autocast): its loss
# trajectory without bf16 rounding, next to the bf16 ones of step 5. (Ours in fp32 is no
# comparison on CUDA: f32 attention there runs on the CPU reference, far too slow for 124M.)
if step train_f32 && [ "$(left)" -gt 120 ]; then
  PYTHONUNBUFFERED=1 timeout $(( $(left) - 15 )) python3 scripts/bench/train_peer.py --fp32 --batch 32 --seq-len 1024 \
    --out "$out/train-f32-peer.json" > "$out/train-f32-peer.log" 2>&1
  echo "train f32 peer rc=$? (left $(left) s)"
  python3 -c 'import json,sys
r = json.load(open(sys.argv[1])); l = r["losses"]
print("peer fp32", r.get("step_ms"), "ms, losses", [round(l[i], 3) for i in (0, 1, 2, 5, 10, 20, len(l) - 1)])' \
    "$out/train-f32-peer.json" 2>/dev/null
fi

# 6. Fine-tuning step (Pythia-160m shapes) against transformers.
if step finetune && [ "$(left)" -gt 150 ]; then
  SPARSEK_FLASH_FWD=$fwd OUT_DIR="$out" SPARSEK_COMMIT="$commit" timeout $(( $(left) - 15 )) scripts/bench/bench_finetune.sh \
    > "$out/finetune.log" 2>&1
  echo "finetune rc=$? (left $(left) s)"; grep -E '^\| [0-9]' "$out/finetune.md" 2>/dev/null
fi

tar czf "${OUT:-/tmp}/session.tgz" -C "$(dirname "$out")" "$(basename "$out")"
rm -rf "$out"
