#!/usr/bin/env bash
# Builds and runs the safetensors-reader fuzzer (fuzz/fuzz_safetensors.cpp) with libFuzzer.
#   fuzz/run_fuzz_safetensors.sh [SECONDS]     default 120
# Compiles the reader (src/io/safetensors.cpp, src/util/check.cpp) instrumented with clang++ 14
# (-fsanitize=fuzzer,address,undefined; Debian: clang-14, libclang-rt-14-dev) and links the rest
# (tensors) from an existing CPU build's libsparsek_core.a ($SPARSEK_BUILD_DIR, default build-cpu) into $FUZZ_DIR (default /tmp/sparsek-fuzz-safetensors), seeds the corpus with
# valid files and the malformed kinds the tests use, and runs for SECONDS. Exit status 0 when no
# crash was found; a crash leaves $FUZZ_DIR/crash-* (reproduce: $FUZZ_DIR/fuzz_safetensors FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
dir="${FUZZ_DIR:-/tmp/sparsek-fuzz-safetensors}"
cxx="${CXX_FUZZ:-clang++-14}"
command -v "$cxx" >/dev/null || cxx=clang++
mkdir -p "$dir/corpus"

echo "building $dir/fuzz_safetensors with $cxx" >&2
"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I src \
  fuzz/fuzz_safetensors.cpp src/io/safetensors.cpp src/util/check.cpp \
  "${SPARSEK_BUILD_DIR:-build-cpu}/libsparsek_core.a" -lspdlog -lfmt -lpthread -o "$dir/fuzz_safetensors"

python3 - "$dir/corpus" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
def st(header, data=b""):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
seeds = {
    "ok": st({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F16", "shape": [1, 2], "data_offsets": [8, 12]}}, bytes(12)),
    "empty": st({}),
    "hole": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)),
    "overlap": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)),
    "dtype": st({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
    "zip": b"PK\x03\x04" + bytes(40), "pickle": b"\x80\x02}q\x00." + bytes(20),
    "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 12\n",
}
for k, v in seeds.items():
    open(os.path.join(d, k), "wb").write(v)
PY

echo "fuzzing for ${seconds}s" >&2
"$dir/fuzz_safetensors" "$dir/corpus" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  -dict=fuzz/json.dict -artifact_prefix="$dir/" 2>&1 | tee "$dir/fuzz.log" | grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|ERROR|SUMMARY|stat::" >&2
status=${PIPESTATUS[0]}
echo "log: $dir/fuzz.log" >&2
exit "$status"
