#!/usr/bin/env bash
# Downloads a Hugging Face model directory (config.json, tokenizer.json, the safetensors weights:
# model.safetensors, or model.safetensors.index.json and every shard it lists) into DIR.
#   scripts/get_hf_model.sh NAME DIR        e.g. EleutherAI/pythia-160m data/hf/pythia-160m
# Uses huggingface-cli when installed, else curl from https://huggingface.co/NAME/resolve/main/.
# Never used by tests (they use the committed fixtures). See docs/IMPORT.md.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAME DIR   (e.g. EleutherAI/pythia-70m data/hf/pythia-70m)" >&2; exit 2; }
name="$1"
dir="$2"
mkdir -p "$dir"
if command -v huggingface-cli >/dev/null; then
  huggingface-cli download "$name" config.json tokenizer.json '*.safetensors' model.safetensors.index.json \
    --local-dir "$dir" || true  # a pattern that matches nothing is not an error
else
  base="https://huggingface.co/$name/resolve/main"
  get() {  # get FILE [optional]
    if curl -fL --retry 3 -o "$dir/$1.part" "$base/$1"; then mv "$dir/$1.part" "$dir/$1"
    else rm -f "$dir/$1.part"; [ "${2:-}" = optional ] || { echo "$0: cannot download $base/$1" >&2; exit 1; }; fi
  }
  get config.json
  get tokenizer.json optional
  if get model.safetensors.index.json optional && [ -f "$dir/model.safetensors.index.json" ]; then
    for shard in $(python3 -c 'import json,sys; print("\n".join(sorted(set(json.load(open(sys.argv[1]))["weight_map"].values()))))' \
                   "$dir/model.safetensors.index.json"); do
      get "$shard"
    done
  else
    get model.safetensors
  fi
fi
[ -f "$dir/config.json" ] || { echo "$0: $dir/config.json missing" >&2; exit 1; }
if [ ! -f "$dir/model.safetensors" ] && [ ! -f "$dir/model.safetensors.index.json" ]; then
  echo "$0: $name has no safetensors weights (only pytorch_model.bin?): convert with transformers, " \
       "from_pretrained(...).save_pretrained(DIR, safe_serialization=True)" >&2
  exit 1
fi
echo "$dir: $(ls "$dir" | tr '\n' ' ')"
