#!/usr/bin/env bash
# Builds the tokenizer parity corpus: ~1.5 MB of real English technical text (reStructuredText
# sources of the Python documentation, from Debian's python3.11-doc package) copied into
# DEST (default data/corpora/python-docs-sample, git-ignored), with MANIFEST.sha256.
#
#   scripts/data/make_parity_sample.sh [DEST] [--install]
#
# Selection (deterministic for a given package version): a fixed list of files with much
# non-ASCII text first, then every 7th file of the sorted list of all _sources/**/*.txt, until the
# total reaches 1,500,000 bytes. The fixture tests/data/fixtures/gpt2_parity.json records each
# file's sha256; the parity test skips (and says so) files whose bytes differ.
# --install: apt-get install python3.11-doc when it is missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="data/corpora/python-docs-sample"
install=0
for a in "$@"; do
  case "$a" in
    --install) install=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "make_parity_sample.sh: unknown option '$a'" >&2; exit 2 ;;
    *) dest="$a" ;;
  esac
done
src=/usr/share/doc/python3.11/html/_sources
expected_version="3.11.2-6+deb12u9"
if [ ! -d "$src" ]; then
  if [ $install -eq 1 ]; then
    apt-get install -y python3.11-doc >/dev/null
  else
    echo "make_parity_sample.sh: $src is missing: apt-get install python3.11-doc (or pass --install)" >&2
    exit 1
  fi
fi
version="$(dpkg-query -W -f='${Version}' python3.11-doc 2>/dev/null || echo unknown)"
if [ "$version" != "$expected_version" ]; then
  echo "make_parity_sample.sh: warning: python3.11-doc is $version, the fixture was made from" \
       "$expected_version; files that differ are skipped by the parity test" >&2
fi

preferred=(howto/unicode.rst.txt library/codecs.rst.txt library/unicodedata.rst.txt
           library/re.rst.txt library/string.rst.txt library/stdtypes.rst.txt
           tutorial/introduction.rst.txt whatsnew/3.0.rst.txt)
mapfile -t all < <(cd "$src" && find . -name '*.txt' -type f | sed 's|^\./||' | LC_ALL=C sort)
list=()
declare -A seen=()
for f in "${preferred[@]}"; do [ -f "$src/$f" ] && { list+=("$f"); seen[$f]=1; }; done
for ((i = 0; i < ${#all[@]}; i += 7)); do
  f="${all[$i]}"
  [ -n "${seen[$f]:-}" ] || { list+=("$f"); seen[$f]=1; }
done

rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
total=0
: > "$dest.tmp/MANIFEST.sha256"
for f in "${list[@]}"; do
  [ "$total" -ge 1500000 ] && break
  mkdir -p "$dest.tmp/$(dirname "$f")"
  cp "$src/$f" "$dest.tmp/$f"
  total=$((total + $(stat -c %s "$src/$f")))
  (cd "$dest.tmp" && sha256sum "$f") >> "$dest.tmp/MANIFEST.sha256"
done
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest: $(wc -l < "$dest/MANIFEST.sha256") files, $total bytes (python3.11-doc $version)"
