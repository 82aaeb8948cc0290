# shellcheck shell=bash
# Shared helpers for the corpus scripts (scripts/data/{python_docs,linux_docs,linux_code}.sh);
# sourced, not run. Each corpus script: installs its Debian package if missing, extracts text to
# data/corpora/NAME (git-ignored), runs `sparsek prepare` with the GPT-2 tokenizer into data/NAME/
# and, with UPDATE_DOCS_MANIFEST=1, copies the manifest to docs/data/manifests/NAME.json (the
# committed record; off by default so that a user's or the quickstart's rebuild does not rewrite a
# tracked file with its own commit and paths).
#
# Environment:
#   SPARSEK        the binary (default build/sparsek; built with scripts/build.sh when missing)
#   THREADS        encoder threads (default: all cores)
#   SHARD_TOKENS   tokens per shard (default 100000000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SPARSEK="${SPARSEK:-build/sparsek}"
TOKENIZER_DIR="data/tokenizers/gpt2"

log() { echo "[$(basename "$0")] $*" >&2; }

# ensure_package PKG: apt-get install PKG unless dpkg says it is installed (needs root).
ensure_package() {
  local pkg="$1"
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "package $pkg is missing; run as root (apt-get install $pkg)"
    exit 1
  fi
  log "installing $pkg (apt-get)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >/dev/null
  fi
}

# ensure_tools: the sparsek binary and the GPT-2 tokenizer files.
ensure_tools() {
  if [ ! -x "$SPARSEK" ]; then
    log "$SPARSEK not found; building (scripts/build.sh)"
    scripts/build.sh
  fi
  if [ ! -f "$TOKENIZER_DIR/encoder.json" ] || [ ! -f "$TOKENIZER_DIR/vocab.bpe" ]; then
    scripts/get_gpt2_tokenizer.sh "$TOKENIZER_DIR"
  fi
}

# prepare_corpus NAME [prepare args and inputs...]: shards + manifest in data/NAME; with
# UPDATE_DOCS_MANIFEST=1 the manifest is also copied to docs/data/manifests/NAME.json.
prepare_corpus() {
  local name="$1"
  shift
  local args=(--tokenizer "$TOKENIZER_DIR" --out "data/$name" --name "$name")
  [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
  [ -n "${SHARD_TOKENS:-}" ] && args+=(--shard-tokens "$SHARD_TOKENS")
  log "$SPARSEK prepare ${args[*]} $*"
  "$SPARSEK" prepare "${args[@]}" "$@"
  if [ "${UPDATE_DOCS_MANIFEST:-0}" = 1 ]; then
    mkdir -p docs/data/manifests
    cp "data/$name/${name}_manifest.json" "docs/data/manifests/$name.json"
    log "manifest: docs/data/manifests/$name.json (UPDATE_DOCS_MANIFEST=1)"
  else
    log "manifest: data/$name/${name}_manifest.json (UPDATE_DOCS_MANIFEST=1 also copies it to docs/data/manifests/)"
  fi
}

# The kernel sources of Debian's linux-source-6.1 (installed when missing): prints the tarball.
export LINUX_TOP="linux-source-6.1"  # the tarball's top directory
linux_tarball() {
  ensure_package linux-source-6.1
  local t=/usr/src/linux-source-6.1.tar.xz
  [ -f "$t" ] || { log "$t not found after installing linux-source-6.1"; exit 1; }
  echo "$t"
}

# remove_binary_files DIR: deletes files grep considers binary (e.g. images), and empty files.
remove_binary_files() {
  find "$1" -type f -print0 | xargs -0 -r grep -LIZ -e . -- | xargs -0 -r rm -f --
}
