#!/usr/bin/env bash
# The main demo (proposal for scripts/demo.sh): trains a small pQuant model and the BitNet
# baseline with the same budget (same sizes, steps, batch, LR schedule, data and seed) on the
# corpus train_lm generates itself, then prints both validation perplexities side by side.
# Usage: demo.sh [path/to/train_lm] [extra train_lm options...]
# Budget: about 2 x 2 minutes on 2 cores.
set -euo pipefail
BIN=${1:-build/release/examples/train_lm/train_lm}
shift || true
if [[ ! -x "$BIN" ]]; then
  echo "demo.sh: train_lm not found at '$BIN' (build the train_lm target first)" >&2
  exit 1
fi
COMMON=(--d-model 96 --layers 3 --heads 4 --d-ff 288 --r 32 --context 64 --batch 16
        --steps 400 --warmup 40 --lr 3e-3 --seed 1 --corpus-bytes 400000 --json "$@")

field() {  # field NAME JSON -> value
  sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"
}

declare -A PPL TPS PARAMS ACTIVE
for v in bitnet pquant; do
  extra=()
  [[ $v == pquant ]] && extra=(--experts 4)
  echo "=== training $v ==="
  out=$("$BIN" --variant "$v" "${extra[@]}" "${COMMON[@]}" | tee /dev/stderr | tail -n 1)
  PPL[$v]=$(field val_ppl "$out")
  TPS[$v]=$(field train_tokens_per_s "$out")
  PARAMS[$v]=$(field params_total "$out")
  ACTIVE[$v]=$(field params_active "$out")
done

echo
echo "Validation perplexity on the held-out tail of the generated corpus (same budget):"
printf '%-28s %12s %14s %14s %12s\n' model val_ppl params_total params_active tokens/s
printf '%-28s %12.3f %14s %14s %12.0f\n' "BitNet (1-bit)" "${PPL[bitnet]}" "${PARAMS[bitnet]}" \
  "${ACTIVE[bitnet]}" "${TPS[bitnet]}"
printf '%-28s %12.3f %14s %14s %12.0f\n' "pQuant (N=4 experts, r=32)" "${PPL[pquant]}" \
  "${PARAMS[pquant]}" "${ACTIVE[pquant]}" "${TPS[pquant]}"
