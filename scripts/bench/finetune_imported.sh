#!/usr/bin/env bash
# GPU-machine check (issue "Hugging Face import", must-show 4): fine-tune an IMPORTED Hugging Face
# checkpoint with sparsek attention (k 512 + window 256) at 8192 tokens and show that the loss falls.
#   1. transformers writes a Pythia-160m-shaped GPTNeoXForCausalLM with save_pretrained (safetensors).
#      Where the real EleutherAI/pythia-160m directory is present (HF_DIR=..., from
#      scripts/get_hf_model.sh) it is used instead; the GPU machine has no network, so by default the
#      weights are transformers' random initialisation.
#   2. `sparsek train configs/finetune-pythia160m-sparsek.json` with model.init_from = hf:DIR on
#      the python_docs shards (scripts/data/python_docs.sh; GPT-2 token ids, all < Pythia's vocabulary),
#      STEPS steps (default 60) of 2 x 8192 tokens, constant learning rate after 10 warm-up steps.
#      Each step's batch is new text (3.5M training tokens, 16k per step), so the training loss is
#      measured on tokens the model has not been trained on yet.
#   3. Pass when the mean loss of the last 10 steps is below that of the first 10 (printed).
# Writes OUT_DIR/finetune_imported.json, .md and the run's metrics.jsonl (default OUT_DIR: docs/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT_DIR:-docs/bench}"
steps="${STEPS:-60}"
mkdir -p "$out"
work=$(mktemp -d)
hf="${HF_DIR:-}"
if [ -z "$hf" ]; then
  hf="$work/pythia-160m-shaped"
  python3 - "$hf" <<'PY'
import sys, torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
torch.manual_seed(0)
cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048,
                    use_parallel_residual=True, tie_word_embeddings=False, hidden_act="gelu")
GPTNeoXForCausalLM(cfg).save_pretrained(sys.argv[1])
print("wrote", sys.argv[1])
PY
fi
./build/sparsek train configs/finetune-pythia160m-sparsek.json \
  --set "model.init_from=hf:$hf" \
  --set "data.train=data/python_docs/python_docs_train_*.bin" --set "data.val=data/python_docs/python_docs_val_*.bin" \
  --set "data.tokenizer=data/tokenizers/gpt2" \
  --set "train.max_steps=$steps" --set schedule.kind=constant --set schedule.warmup_steps=10 \
  --set eval.every=0 --set eval.at_start=false --set checkpoint.every=0 \
  --set "checkpoint.dir=$work/run" --set logging.every=5 --set logging.metrics_file=metrics.jsonl 2>&1 | tee "$work/train.log"
cp "$work/run/metrics.jsonl" "$out/finetune_imported_metrics.jsonl"
python3 - "$work/run/metrics.jsonl" "$out" "$hf" "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" <<'PY'
import datetime, json, sys
path, out, hf, commit = sys.argv[1:5]
recs = [json.loads(l) for l in open(path) if '"loss"' in l]
losses = [r["loss"] for r in recs]
first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
tps = [r.get("tokens_per_s") for r in recs if r.get("tokens_per_s")]
res = {"date": datetime.date.today().isoformat(), "commit": commit, "hf_dir": hf, "steps": len(losses),
       "first10_mean_loss": first, "last10_mean_loss": last, "loss_falls": last < first, "losses": losses,
       "median_tokens_per_s": sorted(tps)[len(tps) // 2] if tps else None}
json.dump(res, open(f"{out}/finetune_imported.json", "w"), indent=2)
md = (f"# Fine-tuning an imported checkpoint with sparsek attention at 8192\n\nDate {res['date']}, commit {commit}; "
      f"model from `{hf}` imported with model.init_from = hf:DIR; configs/finetune-pythia160m-sparsek.json "
      f"(k 512, window 256, batch 2 x 8192) on python_docs; command: `scripts/bench/finetune_imported.sh`.\n\n"
      f"| steps | mean loss, first 10 | mean loss, last 10 | loss falls | median tokens/s |\n|---|---|---|---|---|\n"
      f"| {len(losses)} | {first:.3f} | {last:.3f} | {res['loss_falls']} | {res['median_tokens_per_s']} |\n")
open(f"{out}/finetune_imported.md", "w").write(md)
print(md)
sys.exit(0 if res["loss_falls"] else 1)
PY
