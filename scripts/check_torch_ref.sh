#!/usr/bin/env bash
# Optional check (needs PyTorch and safetensors; not part of the test suite): train_lm and its
# PyTorch re-implementation, tools/pquant_torch_ref.py, take the same 30 steps of a small pQuant
# N=1, pQuant N=4 and BitNet model from the same step-0 checkpoint on the same batches. Fails when
# a step's loss differs by more than 0.02, the mean difference exceeds 0.003 (a systematic
# divergence) or alpha/beta end more than 1% apart. Float summation order alone gives differences
# of about 0.008 at most and 0.001 on average (docs/results/pquant_vs_bitnet/README.md).
#
#   DATA=path/to/tinyshakespeare.txt [PYTHON=.venv/bin/python] scripts/check_torch_ref.sh
# Environment: DATA (required), BUILD (default build/release), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build/release}/examples/train_lm/train_lm
PYTHON=${PYTHON:-.venv/bin/python}
[[ -n "${DATA:-}" && -r "${DATA:-}" ]] || {
  echo "check_torch_ref.sh: set DATA to a readable text file (tinyshakespeare)" >&2; exit 2; }
[[ -x $BIN ]] || { echo "check_torch_ref.sh: build train_lm first ($BIN)" >&2; exit 2; }
"$PYTHON" -c "import torch, safetensors" 2>/dev/null || {
  echo "check_torch_ref.sh: $PYTHON cannot import torch and safetensors" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/check_torch_ref.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STEPS=30
SMALL=(--d-model 64 --layers 2 --heads 2 --d-ff 192 --context 64 --batch 8 --lr 3e-3 --warmup 5
       --schedule two-phase --threads 1 --steps 100 --seed 1 --data "$DATA" --log-every 1)
status=0
for entry in "pq1|--variant pquant --experts 1 --r 16" "pq4|--variant pquant --experts 4 --r 16" \
             "bitnet|--variant bitnet"; do
  name=${entry%%|*}
  read -r -a flags <<<"${entry#*|}"
  "$BIN" "${SMALL[@]}" "${flags[@]}" --save-init "$WORK/$name.init" --stop-at "$STEPS" \
      --save "$WORK/$name.end" >"$WORK/$name.log"
  echo "$name:"
  "$PYTHON" tools/pquant_torch_ref.py --init "$WORK/$name.init" --data "$DATA" --steps "$STEPS" \
      --lib-log "$WORK/$name.log" --compare "$WORK/$name.end" --check | tail -n 1 || status=1
done
exit $status
