#!/usr/bin/env bash
# End-to-end training benchmark on the GPU machine: `sparsek bench train` (GPT-2 124M, T = 1024,
# batch 32 by default) and the PyTorch nanoGPT-style peer (scripts/bench/train_peer.py) in one go;
# writes OUT_DIR/train.json and OUT_DIR/train.md (default OUT_DIR: docs/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT_DIR:-docs/bench}"
batch="${BATCH:-32}"
mkdir -p "$out"
tmp=$(mktemp -d)
./build/sparsek bench train --batch "$batch" --seq-len 1024 --out "$tmp/ours.json" || echo '{"error": "sparsek bench train failed"}' > "$tmp/ours.json"
PYTHONUNBUFFERED=1 python3 scripts/bench/train_peer.py --batch "$batch" --seq-len 1024 --out "$tmp/peer.json"
python3 - "$tmp/ours.json" "$tmp/peer.json" "$out" "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" <<'PY'
import datetime, json, sys
ours, peer, out, commit = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
date = datetime.date.today().isoformat()
json.dump({"date": date, "commit": commit, "sparsek": ours, "pytorch": peer}, open(f"{out}/train.json", "w"), indent=2)
rows = ["| system | tokens/s | step ms | MFU | peak GiB | loss after steps |", "|---|---|---|---|---|---|"]
for name, r in (("sparsek", ours), ("PyTorch (compile, autocast bf16, SDPA, fused AdamW)", peer)):
    if "tokens_per_s" in r:
        rows.append(f"| {name} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | {100*r['mfu']:.1f}% | {r['peak_mem_gib']:.2f} "
                    f"| {r['final_loss']:.3f} after {r.get('steps_run', '?')} |")
    else:
        rows.append(f"| {name} | failed | | | | |")
ratio = ours.get("tokens_per_s", 0) / peer["tokens_per_s"]
md = [f"# End-to-end training: GPT-2 124M, T = {peer['seq_len']}, batch {peer['batch']}, on {peer['device']}", "",
      f"Date {date}, commit {commit}, torch {peer['torch']}; one fixed batch of random tokens trained on repeatedly "
      "(AdamW lr 6e-4, betas 0.9/0.95, weight decay 0.1, clip 1.0, no schedule; the falling loss is a sanity check "
      "that both train the same way); median step after warm-up.", ""] + rows + [
      "", f"sparsek / PyTorch tokens/s: {ratio:.2f}x"]
open(f"{out}/train.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
