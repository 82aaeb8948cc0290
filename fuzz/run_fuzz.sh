#!/usr/bin/env bash
# Builds and runs the tokenizer fuzz targets with libFuzzer + AddressSanitizer + UBSan.
#
#   fuzz/run_fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET ...]
#
# Targets: fuzz_gpt2_files (encoder.json + vocab.bpe reader), fuzz_hf_json (tokenizer.json
# reader), fuzz_roundtrip (encode/decode of arbitrary bytes). They are compiled with clang++
# (Debian clang 14; the fuzzer runtime is in libclang-rt-14-dev) straight from the src/ files
# they need, not through CMake, into $SPARSEK_FUZZ_DIR (default build-fuzz/). Seed corpora are
# made from tests/data/fixtures (and data/tokenizers/gpt2 when present) and kept, growing, in
# $SPARSEK_FUZZ_DIR/corpus/<target>; crash inputs land in $SPARSEK_FUZZ_DIR/artifacts/.
# Exit status: 0 when no target found a crash, 1 otherwise (the last lines say which).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_gpt2_files fuzz_hf_json fuzz_roundtrip)
out="${SPARSEK_FUZZ_DIR:-build-fuzz}"
mkdir -p "$out/obj" "$out/artifacts"
cxx="${CXX_FUZZ:-clang++}"
command -v "$cxx" >/dev/null || { echo "run_fuzz.sh: $cxx not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -I"$root" -I"$root/src" -DSPARSEK_SOURCE_DIR="\"$root\"")
srcs=(src/util/check.cpp src/data/pretokenize.cpp src/data/bpe_model.cpp src/data/bpe_files.cpp
      src/data/bpe_sha256.cpp src/data/tokenizer.cpp)
objs=()
for s in "${srcs[@]}"; do
  o="$out/obj/$(basename "${s%.cpp}").o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ src/data/tokenizer.h -nt "$o" ]; then
    echo "compiling $s"
    "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o"
  fi
  objs+=("$o")
done
for t in "${targets[@]}"; do
  [ -f "fuzz/$t.cpp" ] || { echo "run_fuzz.sh: no target fuzz/$t.cpp" >&2; exit 2; }
  echo "linking $t"
  "$cxx" "${flags[@]}" -fsanitize=fuzzer "fuzz/$t.cpp" "${objs[@]}" -lutf8proc -o "$out/$t"
done

# Seed corpora.
fix=tests/data/fixtures
mkdir -p "$out/corpus/fuzz_gpt2_files" "$out/corpus/fuzz_hf_json" "$out/corpus/fuzz_roundtrip"
python3 - "$fix" "$out/corpus" <<'EOF'
import json, os, sys
fix, corpus = sys.argv[1], sys.argv[2]
tiny = json.load(open(os.path.join(fix, "tiny_tokenizer.json"), encoding="utf-8"))
def put(target, name, data):
    with open(os.path.join(corpus, target, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
# tokenizer.json seeds: the fixture and small variants.
put("fuzz_hf_json", "tiny", json.dumps(tiny, ensure_ascii=False))
v = json.loads(json.dumps(tiny)); v["model"]["merges"] = [m.split(" ") for m in v["model"]["merges"]]
put("fuzz_hf_json", "pairs", json.dumps(v, ensure_ascii=False))
v = json.loads(json.dumps(tiny)); v["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
v["normalizer"] = None; v["model"]["ignore_merges"] = True
put("fuzz_hf_json", "bytelevel", json.dumps(v, ensure_ascii=False))
v = json.loads(json.dumps(tiny)); v["model"]["merges"] = v["model"]["merges"][:20]
v["added_tokens"].append({"id": 418, "content": "<mask>", "lstrip": True, "rstrip": True, "normalized": True, "special": True})
put("fuzz_hf_json", "strip", json.dumps(v, ensure_ascii=False))
# GPT-2 format seeds: encoder.json NUL vocab.bpe.
enc = dict(tiny["model"]["vocab"]); enc["<|endoftext|>"] = len(enc)
put("fuzz_gpt2_files", "tiny", json.dumps(enc, ensure_ascii=False) + "\0#version: 0.2\n" + "\n".join(tiny["model"]["merges"]) + "\n")
put("fuzz_gpt2_files", "small", json.dumps(enc, ensure_ascii=False) + "\0" + "\n".join(tiny["model"]["merges"][:5]))
# Round-trip seeds: lines of the torture text.
text = open(os.path.join(fix, "tokenizer_torture.txt"), "rb").read()
for i, line in enumerate(text.split(b"\n")[:60]):
    put("fuzz_roundtrip", "line%02d" % i, line)
put("fuzz_roundtrip", "invalid", b"a\xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 <|endoftext|>\xcc\xb8 cafe\xcc\x81")
EOF

status=0
summary=()
for t in "${targets[@]}"; do
  extra=()
  case "$t" in
    fuzz_hf_json) extra=(-dict=fuzz/json.dict -max_len=16384) ;;
    fuzz_gpt2_files) extra=(-dict=fuzz/json.dict -max_len=16384) ;;
    fuzz_roundtrip) extra=(-max_len=4096) ;;
  esac
  echo "=== $t: $secs s ==="
  log="$out/$t.log"
  set +e
  "$out/$t" "$out/corpus/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t-" "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  tail -n 15 "$log" | grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done|ERROR|SUMMARY" || true
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
  if [ $rc -ne 0 ]; then
    status=1
    summary+=("$t: FAILED (exit $rc), see $log and $out/artifacts/")
  else
    summary+=("$t: ok, $runs runs in ${secs} s, corpus $(ls "$out/corpus/$t" | wc -l) inputs")
  fi
done
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit $status
