#!/usr/bin/env bash
# Corpus linux_code: C sources and headers (*.c, *.h) of Linux 6.1 (Debian's linux-source-6.1
# tarball): the core kernel, memory management, filesystems, networking (stack and drivers),
# block layer, crypto, lib, IPC, init, io_uring, security and include/ (~272 MB in ~17,000
# files, over 100M GPT-2 tokens), extracted to data/corpora/linux_code/<subsystem>, tokenized
# with GPT-2 into data/linux_code/ (shards + manifest); with UPDATE_DOCS_MANIFEST=1 the manifest is copied to
# docs/data/manifests/linux_code.json.
#   scripts/data/linux_code.sh      (root, for apt-get, when the package is missing)
# Environment: see scripts/data/common.sh (SPARSEK, THREADS, SHARD_TOKENS).
# shellcheck source=scripts/data/common.sh
source "$(dirname "$0")/common.sh"

# In this order (each one walked recursively, files sorted by path).
SUBSYSTEMS=(kernel mm fs net drivers/net block crypto lib ipc init io_uring security include)

tarball="$(linux_tarball)"
ensure_tools
dest=data/corpora/linux_code
log "extracting *.c and *.h of ${SUBSYSTEMS[*]} from $tarball -> $dest"
rm -rf "$dest"
mkdir -p "$dest"
patterns=()
for s in "${SUBSYSTEMS[@]}"; do patterns+=("$LINUX_TOP/$s/*.[ch]"); done
tar -xJf "$tarball" -C "$dest" --strip-components=1 --wildcards "${patterns[@]}"
log "$(find "$dest" -type f | wc -l) files, $(du -sb "$dest" | cut -f1) bytes"
inputs=()
for s in "${SUBSYSTEMS[@]}"; do inputs+=("$dest/$s"); done
prepare_corpus linux_code --glob '*.c' --glob '*.h' "${inputs[@]}"
