#!/usr/bin/env bash
# Installs the Debian packages sparsek builds with, and python3-matplotlib for scripts/plot_metrics.py
# (needs root or sudo; skips what is present).
# The CUDA toolkit is not installed here: with /usr/local/cuda/bin/nvcc present the build adds
# the CUDA backend, without it the build is CPU-only.
set -euo pipefail
pkgs=(cmake ninja-build g++ nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libutf8proc-dev
      python3-matplotlib)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[sparsek] installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
