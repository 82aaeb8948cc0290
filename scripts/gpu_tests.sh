#!/usr/bin/env bash
# Every test binary of a CUDA build, on the GPU machine, in one go: the CUDA tests (which skip on
# the CI machine) and the CPU ones. Binaries from $BUILD/tests (default build-gpu; carry them
# packed: `tar czf gpu-carry/tests.tgz build-gpu/tests/test_* build-gpu/runtime-libs`, ~48 MB).
# Runs up to $JOBS binaries at once (default 4), each with a time limit of $EACH seconds (default
# 300); writes one log per binary and a summary into ONE archive, $OUT/gpu-tests.tgz (a device call
# returns at most 8 files), and prints the summary last.
#   scripts/gpu_tests.sh [GTEST_FILTER]
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build-gpu}
filter=${1:-*}
out=${OUT:-/tmp}/gpu-tests
mkdir -p "$out"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/device.txt" 2>&1
else
  echo "no nvidia-smi: no GPU here (the CUDA tests skip)" > "$out/device.txt"
fi
ls "$build"/tests/test_* 2>/dev/null | grep -v '\.cmake$' | grep -v '_include\|_tests' > "$out/binaries.txt"
run_one() {
  local bin=$1 out=$2 filter=$3 each=$4
  local name; name=$(basename "$bin")
  timeout "$each" "$bin" --gtest_filter="$filter" --gtest_brief=1 > "$out/$name.log" 2>&1
  local rc=$?
  local passed failed skipped
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$out/$name.log" | grep -oE '[0-9]+$')
  skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+ test' "$out/$name.log" | grep -oE '[0-9]+')
  failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$out/$name.log")
  echo "$name rc=$rc failed=$failed passed=${passed:-0} skipped=${skipped:-0}" >> "$out/summary.txt"
  grep '^\[  FAILED  \] [A-Za-z]' "$out/$name.log" | sort -u >> "$out/failures.txt"
  return 0
}
export -f run_one
: > "$out/summary.txt"; : > "$out/failures.txt"
xargs -P "${JOBS:-4}" -I{} bash -c 'run_one "$@"' _ {} "$out" "$filter" "${EACH:-300}" < "$out/binaries.txt"
cat "$out/device.txt"
sort "$out/summary.txt"
echo "failures:"; sort -u "$out/failures.txt" | head -40
bad=$(grep -cv 'rc=0 failed=0 ' "$out/summary.txt")
tar czf "${OUT:-/tmp}/gpu-tests.tgz" -C "$(dirname "$out")" "$(basename "$out")"
rm -rf "$out"
[ "$bad" -eq 0 ]
