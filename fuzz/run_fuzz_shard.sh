#!/usr/bin/env bash
# Builds and runs the shard-reader fuzzer (fuzz/fuzz_shard_reader.cpp) with libFuzzer.
#   fuzz/run_fuzz_shard.sh [SECONDS]     default 60
# Compiles src/data/shard.cpp, src/util/file_io.cpp and src/util/check.cpp directly with clang++ 14
# (-fsanitize=fuzzer,address,undefined; Debian: clang-14, libclang-rt-14-dev) into $FUZZ_DIR
# (default /tmp/sparsek-fuzz-shard), seeds the corpus with valid v1/v2 shards and a few broken
# ones, and runs for SECONDS. Exit status 0 when no crash was found; a crash leaves
# $FUZZ_DIR/crash-* (reproduce: $FUZZ_DIR/fuzz_shard_reader $FUZZ_DIR/crash-...).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
dir="${FUZZ_DIR:-/tmp/sparsek-fuzz-shard}"
cxx="${CXX_FUZZ:-clang++-14}"
command -v "$cxx" >/dev/null || cxx=clang++
mkdir -p "$dir/corpus"

echo "building $dir/fuzz_shard_reader with $cxx" >&2
"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I src src/data/shard.cpp src/util/file_io.cpp src/util/check.cpp fuzz/fuzz_shard_reader.cpp -o "$dir/fuzz_shard_reader"

# Seeds: header (magic, version, count) + 1012 zero bytes + body.
seed() {  # seed NAME VERSION COUNT BODY_BYTES
  perl -e 'my ($v, $n, $b) = @ARGV; print pack("l<3", 20240520, $v, $n), "\0" x 1012, pack("C*", map { $_ % 251 } 1 .. $b)' \
    "$2" "$3" "$4" > "$dir/corpus/$1"
}
seed v1_ok 1 5 10
seed v2_ok 2 3 12
seed v1_empty 1 0 0
seed v2_big_ids 2 2 8
seed bad_size 1 5 11
seed bad_version 3 1 2
seed truncated 1 100 20
printf 'not a shard' > "$dir/corpus/garbage"

echo "fuzzing for ${seconds}s" >&2
"$dir/fuzz_shard_reader" "$dir/corpus" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
  -artifact_prefix="$dir/" 2>&1 | tee "$dir/fuzz.log" | grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|ERROR|SUMMARY|stat::" >&2
status=${PIPESTATUS[0]}
echo "log: $dir/fuzz.log" >&2
exit "$status"
