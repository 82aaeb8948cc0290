#!/usr/bin/env bash
# Corpus linux_docs: the Documentation/ tree of Linux 6.1 (Debian's linux-source-6.1 tarball,
# ~140 MB download): every text file (reStructuredText, plain text, YAML device-tree bindings,
# scripts; binary files such as images dropped), ~44 MB in ~8,870 files, extracted to
# data/corpora/linux_docs, tokenized with GPT-2 into data/linux_docs/ (shards + manifest); the
# manifest is copied (UPDATE_DOCS_MANIFEST=1) to docs/data/manifests/linux_docs.json.
#   scripts/data/linux_docs.sh      (root, for apt-get, when the package is missing)
# Environment: see scripts/data/common.sh (SPARSEK, THREADS, SHARD_TOKENS).
# shellcheck source=scripts/data/common.sh
source "$(dirname "$0")/common.sh"

tarball="$(linux_tarball)"
ensure_tools
dest=data/corpora/linux_docs
log "extracting $LINUX_TOP/Documentation from $tarball -> $dest"
rm -rf "$dest"
mkdir -p "$dest"
tar -xJf "$tarball" -C "$dest" --strip-components=2 "$LINUX_TOP/Documentation"
remove_binary_files "$dest"
log "$(find "$dest" -type f | wc -l) text files, $(du -sb "$dest" | cut -f1) bytes"
prepare_corpus linux_docs "$dest"
