#!/usr/bin/env bash
# A/B of the SparseK selection pass on the GPU machine: `sparsek bench attention --sparsek-only`
# (k 512, w 512, T 4k-32k) once per variant "BINARY:ENV=VALUE[,ENV=VALUE]" (BINARY a path; ENV
# empty for none), printing select / forward kernel / fwd+bwd ms per T. Writes $OUT/select-ab-N.json.
#   scripts/bench/sparsek_select_ab.sh VARIANT [VARIANT ...]
set -u
out=${OUT:-/tmp/select-ab}
mkdir -p "$out"
n=0
for spec in "$@"; do
  n=$((n + 1))
  bin=${spec%%:*}
  envs=()
  [ -n "${spec#*:}" ] && IFS=, read -r -a envs <<< "${spec#*:}"
  env "${envs[@]}" timeout 90 "$bin" bench attention --sparsek-only --sparsek-k 512 --sparsek-window 512 \
    --sparsek-t-min 4096 --t-max 32768 --out "$out/select-ab-$n.json" > "$out/select-ab-$n.log" 2>&1
  header=(); [ $n = 1 ] && header=(--header)
  python3 "$(dirname "$0")/sparsek_ab_rows.py" "${header[@]}" "$spec=$out/select-ab-$n.json"
done
