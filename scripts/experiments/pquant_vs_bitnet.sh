#!/usr/bin/env bash
# pQuant vs BitNet on tinyshakespeare at d_model 256 (6 layers, 4 heads, D_ff 768, r 64, context
# 128, batch 16, LR 3e-3, warm-up 50, two-phase schedule, 1 thread): paired runs (same seed = same
# initialisation stream and data order) that move one training choice at a time.
#
#   DATA=path/to/tinyshakespeare.txt scripts/experiments/pquant_vs_bitnet.sh [REGEX]
#
# Runs every planned run whose name matches REGEX (default: all), in plan order. Resumable: a run
# whose JSON result exists is skipped, and a run another instance of this script is working on
# (lock directory) is skipped too, so two instances can share the plan. Results:
#   docs/results/pquant_vs_bitnet/<name>.json   train_lm's --json line (raw)
#   docs/results/pquant_vs_bitnet/<name>.log    its progress lines (loss curve, alpha/beta)
# Environment: DATA (required), BUILD (default build/release), NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/release}
BIN=$BUILD/examples/train_lm/train_lm
OUT=docs/results/pquant_vs_bitnet
FILTER=${1:-.}
[[ -n "${DATA:-}" && -r "${DATA:-}" ]] || {
  echo "pquant_vs_bitnet.sh: set DATA to a readable text file (tinyshakespeare)" >&2; exit 2; }
[[ -x $BIN ]] || { echo "pquant_vs_bitnet.sh: build train_lm first ($BIN)" >&2; exit 2; }
mkdir -p "$OUT"
# A private copy of the binary: rebuilding train_lm during a long plan does not change its runs.
RUNBIN=$(mktemp "${TMPDIR:-/tmp}/train_lm.XXXXXX")
cp "$BIN" "$RUNBIN"
chmod +x "$RUNBIN"
CURLOCK=
trap 'rm -f "$RUNBIN"; [[ -n $CURLOCK ]] && rmdir "$CURLOCK" 2>/dev/null; true' EXIT
trap 'exit 143' TERM INT

COMMON=(--d-model 256 --layers 6 --heads 4 --d-ff 768 --context 128 --batch 16 --lr 3e-3
        --warmup 50 --schedule two-phase --threads 1 --data "$DATA" --json)
BITNET=(--variant bitnet)
PQ1=(--variant pquant --experts 1 --r 64)
PQ4=(--variant pquant --experts 4 --r 64)

# name|variant array|steps|seed|extra flags. Names: <variant>-<steps>-s<seed>-<choice>. pQuant runs
# name their branch scales (the default is alpha = beta = 1.0; "uniform"/"normal" runs and
# "a2b02" start from the paper's 2.0 / 0.2), so every run reproduces whatever the defaults are.
PLAN=(
  # Direction at 300 steps: fan-in uniform (default) vs fan-in normal.
  "pq1-300-s1-uniform|PQ1|300|1|--fan-in uniform --alpha-init 2 --beta-init 0.2"
  "pq1-300-s1-normal|PQ1|300|1|--fan-in normal --alpha-init 2 --beta-init 0.2"
  "bitnet-300-s1-uniform|BITNET|300|1|--fan-in uniform"
  "bitnet-300-s1-normal|BITNET|300|1|--fan-in normal"
  # Seed spread at 300 steps.
  "pq1-300-s2-uniform|PQ1|300|2|--fan-in uniform --alpha-init 2 --beta-init 0.2"
  "bitnet-300-s2-uniform|BITNET|300|2|--fan-in uniform"
  # The branch scales at step 0 (alpha / beta; the 1-bit branch's beta shrinks from 0.2 in training).
  "pq1-300-s1-a2b1|PQ1|300|1|--alpha-init 2 --beta-init 1"
  "pq1-300-s1-a1b1|PQ1|300|1|--alpha-init 1 --beta-init 1"
  # Decisive, 1000 steps: alpha = beta = 1.0 (the default) against BitNet, three seeds each. The
  # first two are the regression pair (printed last).
  "pq1-1000-s1-a1b1|PQ1|1000|1|--alpha-init 1 --beta-init 1"
  "bitnet-1000-s1-uniform|BITNET|1000|1|--fan-in uniform"
  "pq4-1000-s1-a1b1|PQ4|1000|1|--alpha-init 1 --beta-init 1"
  "pq1-1000-s2-a1b1|PQ1|1000|2|--alpha-init 1 --beta-init 1"
  "bitnet-1000-s2-uniform|BITNET|1000|2|--fan-in uniform"
  "pq4-1000-s2-a1b1|PQ4|1000|2|--alpha-init 1 --beta-init 1"
  "pq1-1000-s3-a1b1|PQ1|1000|3|--alpha-init 1 --beta-init 1"
  "bitnet-1000-s3-uniform|BITNET|1000|3|--fan-in uniform"
  "pq4-1000-s3-a1b1|PQ4|1000|3|--alpha-init 1 --beta-init 1"
  # The paper's 2.0 / 0.2 at 1000 steps (pQuant N=1 seeds 1-2 and N=4 seed 1 were measured
  # before these names existed: docs/results/pquant_vs_bitnet/README.md).
  "pq1-1000-s1-a2b02|PQ1|1000|1|--alpha-init 2 --beta-init 0.2"
  "pq4-1000-s1-a2b02|PQ4|1000|1|--alpha-init 2 --beta-init 0.2"
  "pq1-1000-s1-normal|PQ1|1000|1|--fan-in normal"
  "bitnet-1000-s1-normal|BITNET|1000|1|--fan-in normal"
  # The independent implementation's choices that train_lm's defaults do not make: Q, K, V fused
  # with one 1-bit scale, phase 2 ending at 0.04 x peak, N(0, 1/fan_in) weights and (pQuant) the
  # paper's 2.0 / 0.2 ("indep"); with its block pre-norm in series as well ("indep-bn"); the
  # block pre-norm alone on top of the defaults ("bn").
  "pq1-1000-s1-indep|PQ1|1000|1|--alpha-init 2 --beta-init 0.2 --fan-in normal --fused-qkv --phase2-end 0.04"
  "bitnet-1000-s1-indep|BITNET|1000|1|--fan-in normal --fused-qkv --phase2-end 0.04"
  "pq1-1000-s1-bn|PQ1|1000|1|--alpha-init 1 --beta-init 1 --block-norm"
  "bitnet-1000-s1-bn|BITNET|1000|1|--block-norm"
  "pq1-1000-s1-indep-bn|PQ1|1000|1|--alpha-init 2 --beta-init 0.2 --fan-in normal --fused-qkv --phase2-end 0.04 --block-norm"
  "bitnet-1000-s1-indep-bn|BITNET|1000|1|--fan-in normal --fused-qkv --phase2-end 0.04 --block-norm"
  # The peak learning rate every variant did best at in the scaling sweep (docs/results.md).
  "pq1-1000-s1-lr1e-2|PQ1|1000|1|--alpha-init 1 --beta-init 1 --lr 1e-2"
  "bitnet-1000-s1-lr1e-2|BITNET|1000|1|--lr 1e-2"
)

run_one() {
  local name=$1 arr=$2 steps=$3 seed=$4 extra=$5
  local json=$OUT/$name.json lock=$OUT/.lock.$name
  [[ -e $json ]] && { echo "skip $name (done)"; return; }
  mkdir "$lock" 2>/dev/null || { echo "skip $name (running elsewhere)"; return; }
  CURLOCK=$lock
  local -n variant=$arr
  local -a flags
  read -r -a flags <<<"$extra"
  echo "run  $name: train_lm ${variant[*]} --steps $steps --seed $seed ${flags[*]}"
  local t0=$SECONDS
  if nice -n "${NICE:-10}" "$RUNBIN" "${COMMON[@]}" "${variant[@]}" --steps "$steps" --seed "$seed" \
      "${flags[@]}" >"$OUT/$name.log.tmp" 2>&1; then
    # The results name the data file, not where it was on the machine that ran them.
    local base
    base=$(basename "$DATA")
    tail -n 1 "$OUT/$name.log.tmp" | sed "s|$DATA|$base|g" >"$json.tmp"
    sed '$d' "$OUT/$name.log.tmp" | sed "s|$DATA|$base|g" >"$OUT/$name.log"
    rm -f "$OUT/$name.log.tmp"
    mv "$json.tmp" "$json"
    echo "done $name in $((SECONDS - t0)) s: $(grep -o '"val_ppl":[0-9.]*' "$json")"
  else
    echo "FAILED $name (see $OUT/$name.log.tmp)" >&2
  fi
  rmdir "$lock"
  CURLOCK=
}

for entry in "${PLAN[@]}"; do
  IFS='|' read -r name arr steps seed extra <<<"$entry"
  [[ $name =~ $FILTER ]] || continue
  run_one "$name" "$arr" "$steps" "$seed" "$extra"
done

# Summary: every result so far, and the regression pair (pQuant N=1 / BitNet, 1000 steps, seed 1,
# defaults). Expected range: docs/results/pquant_vs_bitnet/README.md.
echo "results (validation perplexity over the held-out tail):"
for j in "$OUT"/*.json; do
  [[ -e $j ]] || continue
  printf '  %-28s %s\n' "$(basename "$j" .json)" "$(grep -o '"val_ppl":[0-9.]*' "$j" | cut -d: -f2)"
done
pq=$OUT/pq1-1000-s1-a1b1.json bn=$OUT/bitnet-1000-s1-uniform.json
if [[ -e $pq && -e $bn ]]; then
  awk -v a="$(grep -o '"val_ppl":[0-9.]*' "$pq" | cut -d: -f2)" \
      -v b="$(grep -o '"val_ppl":[0-9.]*' "$bn" | cut -d: -f2)" \
      'BEGIN { printf "regression pair: pQuant N=1 / BitNet = %.4f (%+.1f%%)\n", a / b, 100 * (a / b - 1) }'
fi
