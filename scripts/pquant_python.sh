#!/usr/bin/env bash
# Prints the Python interpreter pquant's scripts use: $PQUANT_PYTHON if set, else the project's
# .venv (scripts/install-deps.sh; it sees Debian's python3-matplotlib and python3-sentencepiece),
# else Debian's /usr/bin/python3, else python3 on PATH.
#   "$(scripts/pquant_python.sh)" scripts/plot_results.py ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PQUANT_PYTHON:-}" ]; then
  echo "$PQUANT_PYTHON"
elif [ -x "$root/.venv/bin/python" ]; then
  echo "$root/.venv/bin/python"
elif [ -x /usr/bin/python3 ]; then
  echo /usr/bin/python3
else
  command -v python3 || { echo "pquant: no Python 3 found (run scripts/install-deps.sh)" >&2; exit 1; }
fi
