#!/usr/bin/env bash
# One device call for the attention backward kernels (docs/perf-notes.md, "Attention backward on
# wgmma"): the flash parity tests (every backward kernel and the wgmma forward at hd 64), `sparsek
# bench attention` once per backward kernel (SPARSEK_FLASH_BWD) and once with the wgmma forward, the PyTorch peers, the merged report for one kernel
# ($REPORT_KERNEL, default auto: the default dispatch, which serves hd 128 too), and the end-to-end training benchmark (default kernel). Binaries from $BUILD (default build-gpu): sparsek
# and tests/test_attention. Everything lands in ONE archive, $OUT/attention-kernels.tgz (a device
# call returns at most 8 files), plus a summary table printed last.
#   scripts/bench/attention_kernels_call.sh [LIMIT_SECONDS]
set -u
cd "$(dirname "$0")/../.."
source scripts/bench/device_call_common.sh attention-kernels "${1:-540}"
timeout 200 "$build/tests/test_attention" --gtest_filter='*Flash*' > "$out/flash-tests.txt" 2>&1
rc=$?
echo "flash tests rc=$rc left $(left)"
grep -E "^\[  (FAILED|PASSED) |Failure|rel_l2" "$out/flash-tests.txt" | head -20
report=${REPORT_KERNEL:-auto}
kernels="mma wgmma wgmma_keysplit wgmma_pipelined wgmma_pipelined_keysplit"
case " $kernels " in *" $report "*) ;; *) kernels="$report $kernels" ;; esac
for k in $kernels; do
  [ "$(left)" -gt 60 ] || break
  dims=64  # the report's kernel at both head dims (its table has both), the others at hd 64 only
  [ "$k" = "$report" ] && dims=64,128  # an explicit wgmma choice at hd 128 is an error
  SPARSEK_FLASH_BWD=$k timeout 120 "$build/sparsek" bench attention --no-sparsek --head-dims $dims \
    --out "$out/ours-$k.json" > "$out/ours-$k.log" 2>&1
  echo "bench $k rc=$? left $(left)"
done
# The wgmma forward (SPARSEK_FLASH_FWD=wgmma) with the default backward.
if [ "$(left)" -gt 60 ]; then
  SPARSEK_FLASH_FWD=wgmma timeout 120 "$build/sparsek" bench attention --no-sparsek --head-dims 64 --out "$out/ours-fwd-wgmma.json" \
    > "$out/ours-fwd-wgmma.log" 2>&1
  echo "bench fwd wgmma rc=$? left $(left)"
fi
python3 - "$out" $kernels <<'PY'
import json, os, sys
out, kernels = sys.argv[1], sys.argv[2:]
runs = {}
for k in kernels:
    f = f"{out}/ours-{k}.json"
    if os.path.exists(f):
        runs[k] = {(r["kind"], r["head_dim"], r["T"]): r["fwd_bwd_ms"] for r in json.load(open(f))["results"]}
f = f"{out}/ours-fwd-wgmma.json"
fw = {(r["kind"], r["head_dim"], r["T"]): r["fwd_ms"] for r in json.load(open(f))["results"]} if os.path.exists(f) else {}
fm = {}
if os.path.exists(f"{out}/ours-mma.json"):
    fm = {(r["kind"], r["head_dim"], r["T"]): r["fwd_ms"] for r in json.load(open(f"{out}/ours-mma.json"))["results"]}
print("fwd ms at hd 64: mma.sync | wgmma (SPARSEK_FLASH_FWD)")
for key in sorted(fw):
    if key[1] == 64:
        print(f"{key[0]} {key[2]} | {fm.get(key, float('nan')):.3f} | {fw[key]:.3f}")
print("fwd+bwd ms at hd 64 per backward kernel (SPARSEK_FLASH_BWD)")
print("kind T | " + " | ".join(runs))
for key in sorted(next(iter(runs.values()), {})):
    if key[1] == 64:
        print(f"{key[0]} {key[2]} | " + " | ".join(f"{runs[k].get(key, float('nan')):.3f}" for k in runs))
PY
if [ "$(left)" -gt 150 ]; then
  PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench/attention_peer.py --out "$out/peer.json" > "$out/peer.log" 2>&1
  echo "peer rc=$? left $(left)"
  python3 scripts/bench/report_attention.py "$out/ours-$report.json" "$out/peer.json" --json-out "$out/attention.json" \
    --md-out "$out/attention.md" --commit "${SPARSEK_COMMIT:-unknown}" > /dev/null 2>&1
fi
if [ "$(left)" -gt 90 ]; then
  OUT_DIR="$out" timeout $(( $(left) - 10 )) scripts/bench/bench_train.sh > "$out/train.log" 2>&1
  echo "train bench rc=$? left $(left)"; tail -4 "$out/train.log"
fi
tar czf "${OUT:-/tmp}/attention-kernels.tgz" -C "$(dirname "$out")" "$(basename "$out")"
rm -rf "$out"
exit $rc
