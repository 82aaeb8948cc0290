#!/usr/bin/env bash
# One device call for the SparseK kernels (docs/perf-notes.md, "SparseK kernels v3"): the CUDA
# SparseK tests (selection, forward, backward against the CPU reference), `sparsek bench attention
# --sparsek-only` once per variant in $VARIANTS (each "NAME" or "NAME:ENV=VALUE[,ENV=VALUE]": the
# environment switches of the opt-in kernels), ncu's duration of every kernel launch of one case
# (the selection, forward and backward kernels told apart), and, with PROFILE_FULL=1, ncu's full
# section set for one launch of the SparseK forward and backward kernels (stall reasons, occupancy,
# memory). Everything lands in ONE archive, $OUT/sparsek-kernels.tgz, plus a summary printed last.
#   scripts/bench/sparsek_kernels_call.sh [LIMIT_SECONDS]
# Settings: VARIANTS (default "default"), SK_T_MIN / SK_T_MAX (default 16384 / 32768), SK_K, SK_W
# (default 512 / 512), PROFILE_T (default 16384; empty: no profile), TESTS (gtest filter, default
# '*Cuda*'; empty: no tests).
set -u
cd "$(dirname "$0")/../.."
source scripts/bench/device_call_common.sh sparsek-kernels "${1:-540}"
variants=${VARIANTS:-default}
tmin=${SK_T_MIN:-16384}
tmax=${SK_T_MAX:-32768}
kk=${SK_K:-512}
ww=${SK_W:-512}
filter=${TESTS-*Cuda*}
if [ -n "$filter" ]; then
  timeout 240 "$build/tests/test_attention_sparsek" --gtest_filter="$filter" > "$out/tests.txt" 2>&1
  echo "sparsek tests rc=$? left $(left)"
  grep -E "^\[  (FAILED|PASSED) |Failure|tests ran" "$out/tests.txt" | head -20
fi
for spec in $variants; do
  [ "$(left)" -gt 60 ] || break
  name=${spec%%:*}
  envs=()
  [ "$spec" != "$name" ] && IFS=, read -r -a envs <<< "${spec#*:}"
  env "${envs[@]}" timeout 150 "$build/sparsek" bench attention --sparsek-only --sparsek-k "$kk" --sparsek-window "$ww" \
    --sparsek-t-min "$tmin" --t-max "$tmax" --out "$out/ab-$name.json" > "$out/ab-$name.log" 2>&1
  echo "bench $name rc=$? left $(left)"
done
rows=()
for spec in $variants; do name=${spec%%:*}; [ -f "$out/ab-$name.json" ] && rows+=("$name=$out/ab-$name.json"); done
python3 scripts/bench/sparsek_ab_rows.py --header "${rows[@]}"
pt=${PROFILE_T-16384}
if [ -n "$pt" ] && command -v ncu > /dev/null && [ "$(left)" -gt 90 ]; then
  first=${variants%% *}
  envs=()
  [ "$first" != "${first%%:*}" ] && IFS=, read -r -a envs <<< "${first#*:}"
  env "${envs[@]}" timeout 150 ncu --clock-control none --cache-control all --metrics gpu__time_duration.sum --csv \
    --log-file "$out/ncu-durations.csv" "$build/sparsek" bench attention --sparsek-only --sparsek-k "$kk" \
    --sparsek-window "$ww" --sparsek-t-min "$pt" --t-max "$pt" --iters 1 --out "$out/ncu-bench.json" > "$out/ncu-durations.log" 2>&1
  echo "ncu durations rc=$? left $(left)"
  python3 scripts/bench/ncu_durations.py "$out/ncu-durations.csv" --strip-args --name-width 80 --max-launches 12 \
    --title "ncu durations in ms per launch (launch order; the bench's warm-up and timed runs)" | tee "$out/durations.txt"
  if [ "${PROFILE_FULL:-0}" = 1 ] && [ "$(left)" -gt 120 ]; then
    env "${envs[@]}" timeout $(( $(left) - 40 )) ncu --clock-control none --set full \
      -k regex:'sparsek_(forward|backward)_kernel' -c 2 "$build/sparsek" bench attention --sparsek-only --sparsek-k "$kk" \
      --sparsek-window "$ww" --sparsek-t-min "$pt" --t-max "$pt" --iters 1 --out "$out/ncu-full-bench.json" \
      > "$out/ncu-full.txt" 2>&1
    echo "ncu full rc=$? left $(left)"
  fi
fi
tar czf "${OUT:-/tmp}/sparsek-kernels.tgz" -C "${OUT:-/tmp}" sparsek-kernels
echo "archive ${OUT:-/tmp}/sparsek-kernels.tgz left $(left)"
