#!/bin/bash
# The fine-tuning comparison of issue 11 in one device call (docs/COMPARE.md, "The fine-tuning
# comparison"):
#   scripts/compare/finetune_call.sh MINUTES [sparsek compare options for step 3...]
#   1. `sparsek compare configs/compare/finetune-pretrain.json`: a Pythia-shaped 6 x 384 model
#      pretrained with full attention at T = 2048 (one cell; skipped when done);
#   2. `sparsek export` of its checkpoint to runs/compare/finetune-pretrain/hf (a Hugging Face
#      directory; skipped when present);
#   3. `sparsek compare configs/compare/finetune.json --max-minutes MINUTES`: that model fine-tuned at
#      T = 8192 with each attention kind, evaluated before (eval.at_start) and after.
# Binary: $SPARSEK (default build-gpu/sparsek). The grids' states (no checkpoints, no weights) are
# packed into $OUT/finetune-state.tgz when $OUT is set. Exits with the first failing step's status.
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 MINUTES [sparsek compare options...]" >&2
  exit 2
fi
minutes=$1
shift
bin=${SPARSEK:-build-gpu/sparsek}
pre=configs/compare/finetune-pretrain.json ft=configs/compare/finetune.json
pre_dir=runs/compare/finetune-pretrain ft_dir=runs/compare/finetune
hf_dir=$pre_dir/hf
pack() {
  if [ -n "${OUT:-}" ]; then
    local dirs=()
    for d in "$pre_dir" "$ft_dir"; do [ -d "$d" ] && dirs+=("$d"); done
    [ ${#dirs[@]} -gt 0 ] && tar czf "$OUT/finetune-state.tgz" --exclude='step_*' --exclude='.tmp-*' \
      --exclude='.del-*' --exclude='.lock' --exclude='latest' --exclude='hf' "${dirs[@]}"
  fi
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== step 1: pretraining ($pre)"
"$bin" compare "$pre" || { rc=$?; pack; exit $rc; }
if [ ! -f "$hf_dir/model.safetensors" ]; then
  echo "== step 2: export -> $hf_dir"
  "$bin" export "$pre_dir/cells/full_T2048_s1/run" "$hf_dir" || { rc=$?; pack; exit $rc; }
fi
echo "== step 3: fine-tuning ($ft)"
"$bin" compare "$ft" --max-minutes "$minutes" "$@"
rc=$?
"$bin" compare "$ft" --list "$@" 2>/dev/null | grep -v "not selected" || true
pack
exit $rc
