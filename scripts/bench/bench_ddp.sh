#!/usr/bin/env bash
# Multi-GPU benchmark on a 2-GPU machine (GPT-2 124M, T = 1024, 32 sequences per GPU):
#   sparsek 1 GPU     `sparsek bench train` (tokens/s, peak memory)
#   sparsek train     1 GPU and `sparsek launch --nproc 2` (NCCL reducer, fp32 all-reduce), 50 steps on
#                     real shards ($DATA): tokens/s, peak memory, and the same-global-batch loss curves
#                     (1 x 32 vs 2 x 16 sequences); ZeRO-1 is not implemented on our side yet
#   PyTorch 1 GPU     scripts/bench/train_peer.py
#   PyTorch 2 GPUs    scripts/bench/ddp_peer.py: DDP (fp32 all-reduce) and DDP + ZeRO-1
#                     (ZeroRedundancyOptimizer): tokens/s, rank 0's peak memory, losses
# Writes OUT_DIR/ddp.json and OUT_DIR/ddp.md (default OUT_DIR: docs/bench). NCCL_NVLS_ENABLE=0
# (NVLink multicast off) for everything. Usage: scripts/bench/bench_ddp.sh   (from anywhere)
set -uo pipefail
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0
out="${OUT_DIR:-docs/bench}"
batch="${BATCH:-32}"
steps="${STEPS:-30}"
mkdir -p "$out"
tmp=$(mktemp -d)
bin="${SPARSEK_BIN:-./build/sparsek}"

"$bin" bench train --batch "$batch" --seq-len 1024 --steps "$steps" --out "$tmp/ours1.json" \
  || echo '{"error": "sparsek bench train failed"}' > "$tmp/ours1.json"

# sparsek through the trainer on real shards ($DATA, default the python-docs corpus of
# scripts/data/python_docs.sh), GPT-2 124M, 50 steps, no checkpoints, fp32 gradient all-reduce:
#   run1     1 GPU,  32 sequences            (the 1-GPU loss curve and tokens/s)
#   run2     2 GPUs, 16 sequences per GPU    (same global batch: loss curve vs run1)
#   run2b    2 GPUs, 32 sequences per GPU    (tokens/s and peak memory at 32 per GPU)
data="${DATA:-data/python_docs/python_docs_train_*.bin}"
common=(--set "data.train=$data" --set data.val= --set eval.every=0 --set checkpoint.every=0 --set train.max_steps=50
        --set train.seq_len=1024 --set logging.every=10 --set dist.reduce_dtype=f32 --set schedule.warmup_steps=10)
"$bin" train configs/gpt2-124m.json "${common[@]}" --set train.batch_size=32 --set checkpoint.dir="$tmp/run1" \
  > "$tmp/run1.log" 2>&1 || echo "run1 failed (see $tmp/run1.log)"
"$bin" launch --nproc 2 configs/gpt2-124m.json "${common[@]}" --set train.batch_size=16 --set checkpoint.dir="$tmp/run2" \
  > "$tmp/run2.log" 2>&1 || echo "run2 failed (see $tmp/run2.log)"
"$bin" launch --nproc 2 configs/gpt2-124m.json "${common[@]}" --set train.batch_size=32 --set checkpoint.dir="$tmp/run2b" \
  > "$tmp/run2b.log" 2>&1 || echo "run2b failed (see $tmp/run2b.log)"
cp "$tmp"/run*.log "$out/" 2>/dev/null || true
python3 - "$tmp" <<'PY'
import json, os, sys
tmp = sys.argv[1]
for name in ("run1", "run2", "run2b"):
    path = f"{tmp}/{name}/metrics.jsonl"
    recs = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    recs = [r for r in recs if "loss" in r]
    res = {"runs": name, "losses": [r["loss"] for r in recs]}
    if recs:
        res.update(tokens_per_s=recs[-1]["tokens_per_s"], peak_mem_gib=max(r.get("peak_mem_gib", 0) for r in recs),
                   step_ms=float("nan"))
    else:
        res["error"] = f"{name}: no metrics (see {name}.log)"
    json.dump(res, open(f"{tmp}/{name}.json", "w"), indent=2)
PY

PYTHONUNBUFFERED=1 python3 scripts/bench/train_peer.py --batch "$batch" --seq-len 1024 --steps "$steps" --out "$tmp/pt1.json" \
  || echo '{"error": "train_peer.py failed"}' > "$tmp/pt1.json"
PYTHONUNBUFFERED=1 python3 scripts/bench/ddp_peer.py --nproc 2 --batch "$batch" --steps "$steps" --out "$tmp/pt2.json" \
  || echo '{"error": "ddp_peer.py failed"}' > "$tmp/pt2.json"
PYTHONUNBUFFERED=1 python3 scripts/bench/ddp_peer.py --nproc 2 --zero --batch "$batch" --steps "$steps" --port 29612 \
  --out "$tmp/pt2z.json" || echo '{"error": "ddp_peer.py --zero failed"}' > "$tmp/pt2z.json"

python3 - "$tmp" "$out" "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" <<'PY'
import datetime, json, sys
tmp, out, commit = sys.argv[1:4]
r = {k: json.load(open(f"{tmp}/{k}.json")) for k in ("ours1", "run1", "run2", "run2b", "pt1", "pt2", "pt2z")}
date = datetime.date.today().isoformat()
json.dump({"date": date, "commit": commit, **r}, open(f"{out}/ddp.json", "w"), indent=2)
def row(name, x, gpus, mem_key):
    if "tokens_per_s" not in x:
        return f"| {name} | {gpus} | failed: {x.get('error', '?')} | | |"
    return f"| {name} | {gpus} | {x['tokens_per_s']:.0f} | {x['step_ms']:.1f} | {x.get(mem_key, float('nan')):.2f} |"
md = [f"# Data-parallel training: GPT-2 124M, T = 1024, {r['pt1'].get('batch', '?')} sequences per GPU", "",
      f"Date {date}, commit {commit}; NCCL_NVLS_ENABLE=0; median step after warm-up; tokens/s over all GPUs.", "",
      "| system | GPUs | tokens/s | step ms | peak GiB (rank 0) |", "|---|---|---|---|---|",
      row("sparsek (bench train, random tokens)", r["ours1"], 1, "peak_mem_gib"),
      row("sparsek train, 32/GPU (50 steps, cumulative rate)", r["run1"], 1, "peak_mem_gib"),
      row("sparsek launch, 32/GPU (50 steps, cumulative rate)", r["run2b"], 2, "peak_mem_gib"),
      row("PyTorch", r["pt1"], 1, "peak_mem_gib"), row("PyTorch DDP (fp32 all-reduce)", r["pt2"], 2, "peak_mem_gib_rank0"),
      row("PyTorch DDP + ZeRO-1", r["pt2z"], 2, "peak_mem_gib_rank0")]
if "tokens_per_s" in r["pt1"] and "tokens_per_s" in r["pt2"]:
    md += ["", f"PyTorch 2-GPU scaling: {r['pt2']['tokens_per_s'] / r['pt1']['tokens_per_s']:.2f}x of 1 GPU"]
l1, l2 = r["run1"].get("losses", []), r["run2"].get("losses", [])
if l1 and l2:
    n = min(len(l1), len(l2))
    md += ["", "Same global batch (1 GPU x 32 vs 2 GPUs x 16, fp32 all-reduce), loss by step:", "",
           "| step | 1 GPU | 2 GPUs | diff |", "|---|---|---|---|"]
    md += [f"| {i+1} | {l1[i]:.4f} | {l2[i]:.4f} | {l2[i]-l1[i]:+.4f} |" for i in range(n) if i in (0, 4, 9) or (i+1) % 10 == 0]
    md += ["", f"max |diff| over {n} steps: {max(abs(a-b) for a, b in zip(l1, l2)):.4f}"]
open(f"{out}/ddp.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
