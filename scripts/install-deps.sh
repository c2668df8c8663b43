#!/usr/bin/env bash
# Installs the Debian 12 packages pquant's build needs, if any are missing, then the Python
# environment of the tools/*.py scripts (.venv, see below). Downloads nothing else.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

packages=(g++ cmake make pkg-config libhwy-dev libtbb-dev nlohmann-json3-dev libcli11-dev googletest libgtest-dev libbenchmark-dev libopenmpi-dev openmpi-bin python3 python3-venv python3-torch python3-numpy "$@")
# The sensitivity analysis (Eigen), the figures (matplotlib) and the BPE tokenizer (SentencePiece).
packages+=(libeigen3-dev python3-matplotlib python3-sentencepiece libsentencepiece-dev)
# clang (scripts/test.sh asks for it) also builds the libFuzzer targets: their runtime is a package
# of its own.
[[ " $* " == *" clang "* ]] && packages+=(libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# tools/*.py (Hugging Face checkpoints, GGUF) run with .venv/bin/python: Debian's python3 with its
# CPU torch and numpy (--system-site-packages) plus safetensors and gguf, which Debian does not
# package, pinned, from PyPI. The test suite does not need them: the tests that do skip, saying so.
setup_venv() {
  local root venv
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/.venv"
  "$venv/bin/python" -c "import torch, numpy, safetensors, gguf" 2>/dev/null && return 0
  echo "pquant: creating $venv (safetensors, gguf from PyPI)"
  /usr/bin/python3 -m venv --system-site-packages "$venv" &&
    "$venv/bin/pip" install -q "safetensors==0.4.5" "gguf==0.17.1" ||
    echo "pquant: warning: $venv is incomplete; the tools/*.py scripts and their tests need it" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  setup_venv
  exit 0
fi

echo "pquant: installing missing Debian packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "pquant: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
setup_venv
