#!/usr/bin/env bash
# Installs the Debian 12 packages pquant's build needs, if any are missing. Downloads nothing else.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

packages=(g++ cmake make pkg-config libhwy-dev libtbb-dev nlohmann-json3-dev libcli11-dev googletest libgtest-dev libbenchmark-dev libopenmpi-dev openmpi-bin python3 python3-venv "$@")
# The sensitivity analysis (Eigen), the figures (matplotlib) and the BPE tokenizer (SentencePiece).
packages+=(libeigen3-dev python3-matplotlib python3-sentencepiece libsentencepiece-dev)
# clang (scripts/test.sh asks for it) also builds the libFuzzer targets: their runtime is a package
# of its own.
[[ " $* " == *" clang "* ]] && packages+=(libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "pquant: installing missing Debian packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "pquant: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
