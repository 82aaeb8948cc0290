#!/usr/bin/env bash
# Corpus python_docs: the reStructuredText sources of the Python 3.11 documentation (Debian's
# python3.11-doc: /usr/share/doc/python3.11/html/_sources, ~500 *.rst.txt files, ~11 MB),
# copied to data/corpora/python_docs, tokenized with GPT-2 into data/python_docs/ (shards +
# manifest); with UPDATE_DOCS_MANIFEST=1 the manifest is copied to docs/data/manifests/python_docs.json.
#   scripts/data/python_docs.sh      (root, for apt-get, when the package is missing)
# Environment: see scripts/data/common.sh (SPARSEK, THREADS, SHARD_TOKENS).
# shellcheck source=scripts/data/common.sh
source "$(dirname "$0")/common.sh"

ensure_package python3.11-doc
ensure_tools
src=/usr/share/doc/python3.11/html/_sources
dest=data/corpora/python_docs
[ -d "$src" ] || { log "$src not found after installing python3.11-doc"; exit 1; }
log "copying $src -> $dest"
rm -rf "$dest"
mkdir -p "$dest"
cp -a "$src/." "$dest/"
find "$dest" -name '*.gz' -exec gunzip -f {} +   # in case a package version compresses some
prepare_corpus python_docs --glob '*.rst.txt' --glob '*.rst' "$dest"
