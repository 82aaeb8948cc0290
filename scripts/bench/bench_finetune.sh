#!/usr/bin/env bash
# Fine-tuning throughput on the GPU machine (issue "Hugging Face import", must-show 3): sparsek's
# training step on the Pythia-160m shapes (configs/pythia-160m.json: parallel residual, rotary 25%,
# untied embeddings) against transformers' GPTNeoXForCausalLM (scripts/bench/finetune_peer.py: SDPA,
# bf16 autocast, fused AdamW), in one go, at T = 2048 (batch 16) and T = 8192 (batch 4): 32,768
# tokens per step everywhere. Ours runs full attention at both lengths and sparsek + window
# (k 512, window 256) at 8192. Writes OUT_DIR/finetune.json and OUT_DIR/finetune.md
# (default OUT_DIR: docs/bench). Needs build/sparsek with CUDA and python3 with torch + transformers.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT_DIR:-docs/bench}"
steps="${STEPS:-20}"
mkdir -p "$out"
tmp=$(mktemp -d)
ours() {  # name batch T extra-sets...
  local name=$1 b=$2 t=$3; shift 3
  local sets=(--set "model.block_size=$t")
  for s in "$@"; do sets+=(--set "$s"); done
  ./build/sparsek bench train --config configs/pythia-160m.json "${sets[@]}" --batch "$b" --seq-len "$t" \
    --steps "$steps" --warmup 5 --out "$tmp/$name.json" || echo '{"error": "failed"}' > "$tmp/$name.json"
}
ours ours_full_2048 16 2048
ours ours_full_8192 4 8192
ours ours_sparsek_8192 4 8192 attention.kind=sparsek attention.k=512 attention.window=256
for cfg in "16 2048" "4 8192"; do
  set -- $cfg
  PYTHONUNBUFFERED=1 python3 scripts/bench/finetune_peer.py --batch "$1" --seq-len "$2" --steps "$steps" \
    --out "$tmp/peer_$2.json" || echo '{"error": "failed"}' > "$tmp/peer_$2.json"
done
python3 - "$tmp" "$out" "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" <<'PY'
import datetime, json, sys
tmp, out, commit = sys.argv[1:4]
r = {n: json.load(open(f"{tmp}/{n}.json")) for n in
     ("ours_full_2048", "ours_full_8192", "ours_sparsek_8192", "peer_2048", "peer_8192")}
date = datetime.date.today().isoformat()
json.dump({"date": date, "commit": commit, "runs": r}, open(f"{out}/finetune.json", "w"), indent=2)
peer = r["peer_2048"] if "device" in r["peer_2048"] else r["peer_8192"]
rows = ["| T | system | attention | batch | tokens/s | step ms | peak GiB | vs transformers tokens/s | target |",
        "|---|---|---|---|---|---|---|---|---|"]
def row(T, name, attn, x, ref, target):
    if "tokens_per_s" not in x:
        rows.append(f"| {T} | {name} | {attn} | | failed | | | | {target} |"); return
    ratio = f"{x['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref and "tokens_per_s" in ref else ""
    rows.append(f"| {T} | {name} | {attn} | {x['batch']} | {x['tokens_per_s']:.0f} | {x['step_ms']:.1f} | "
                f"{x['peak_mem_gib']:.2f} | {ratio} | {target} |")
for T in (2048, 8192):
    p = r[f"peer_{T}"]
    row(T, "transformers", "SDPA (full)", p, None, "")
    row(T, "sparsek", "full (fused flash)", r[f"ours_full_{T}"], p, ">= 1.5x, lower peak memory")
    if T == 8192:
        row(T, "sparsek", "sparsek k 512 + window 256", r["ours_sparsek_8192"], p, ">= 2.5x")
md = [f"# Fine-tuning throughput: Pythia-160m shapes on {peer.get('device', '?')}", "",
      f"Date {date}, commit {commit}, torch {peer.get('torch', '?')}, transformers {peer.get('transformers', '?')}. "
      "Random weights and one fixed batch of random tokens (throughput does not depend on the values); "
      "median step time after 5 warm-up steps; 32,768 tokens per step. Peer: GPTNeoXForCausalLM, SDPA, bf16 "
      "autocast, fused AdamW, no torch.compile. Ours: `sparsek bench train --config configs/pythia-160m.json` "
      "(bf16 parameters, fp32 AdamW masters). Command: `scripts/bench/bench_finetune.sh`.", ""] + rows
open(f"{out}/finetune.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
