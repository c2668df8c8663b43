#!/usr/bin/env bash
# Scaling curves (the paper's Fig. 4, docs/results.md): final validation loss against parameters
# for FP, BitNet, BitNet b1.58, pQuant N=1 and N=4 (N=8 at the two largest sizes), the same token
# budget at every size (STEPS x BATCH x CONTEXT), each variant at its best learning rate from a
# sweep of three values at the two smallest sizes, carried over to the larger ones; seeds 2 and 3
# at size S3 give the seed-to-seed spread.
#
#   DATA=tinyshakespeare.txt scripts/experiments/scaling.sh [sweep|main|spread|plot|all]
#
# Resumable (common.sh): finished runs are skipped, so a killed study continues where it stopped.
# Results: docs/results/scaling/<label>-<size>-lr<lr>-s<seed>.json / .log, best_lr.json,
# points.jsonl (the figure's points) and fig4_scaling.png. The largest size's FP, BitNet and pQuant
# N=1 models (seed 1) are also saved, as build/experiments/scaling-largest/{fp,bitnet,pquant}
# .safetensors, for the sensitivity figures at that size (sensitivity.sh with CKPT set there and
# TRAIN=0, docs/results.md).
# Environment (besides common.sh's): STEPS (default 600), BATCH (16), CONTEXT (128).
source "$(dirname "$0")/common.sh"
STAGE=${1:-all}
if [[ $SMOKE == 1 ]]; then
  OUT=build/experiments/smoke/scaling
  STEPS=10 BATCH=2 CONTEXT=32
  SIZES=("S1 32 1 2 96" "S2 48 1 2 144")
else
  OUT=${OUT:-docs/results/scaling}
  # name d_model layers heads d_ff: about 0.14M, 0.41M, 0.92M, 3.0M and 7.0M parameters (byte
  # vocabulary; the embedding and head are 2 x 256 x d_model of them). A 10.8M size (320/8/960)
  # does not fit the study's budget at this token count (docs/results.md, "Budget"); SIZES_EXTRA=1
  # adds it.
  SIZES=("S1 64 2 2 192" "S2 96 3 3 288" "S3 128 4 4 384" "S4 192 6 6 576" "S5 256 8 8 768")
  [[ ${SIZES_EXTRA:-0} == 1 ]] && SIZES+=("S6 320 8 8 960")
fi
STEPS=${STEPS:-600} BATCH=${BATCH:-16} CONTEXT=${CONTEXT:-128}
setup train_lm

# label -> train_lm flags (pQuant's r is added per size: d_ff / 12, about 5% of the FFN in INT8
# per expert as in the paper's configurations; branch scales from alpha = beta = 1, the default,
# named so the runs reproduce whatever the default becomes).
declare -A FLAGS=([fp]="--variant fp" [bitnet]="--variant bitnet" [bitnet158]="--variant bitnet158"
                  [pquant-n1]="--variant pquant --experts 1 --alpha-init 1 --beta-init 1"
                  [pquant-n4]="--variant pquant --experts 4 --alpha-init 1 --beta-init 1"
                  [pquant-n8]="--variant pquant --experts 8 --alpha-init 1 --beta-init 1")
# At the smallest size every variant did best at the top of a grid one step lower (FP 3e-4..3e-3,
# the others 1e-3..1e-2; docs/results.md), so the grid starts one step higher.
declare -A LRS=([fp]="1e-3 3e-3 1e-2" [bitnet]="3e-3 1e-2 3e-2" [bitnet158]="3e-3 1e-2 3e-2"
                [pquant-n1]="3e-3 1e-2 3e-2" [pquant-n4]="3e-3 1e-2 3e-2" [pquant-n8]="3e-3 1e-2 3e-2")
LABELS=(fp bitnet bitnet158 pquant-n1 pquant-n4)

# The checkpoints of the largest size's seed-1 models that sensitivity.sh analyses.
LARGEST_CKPT=${LARGEST_CKPT:-build/experiments/scaling-largest}
[[ $SMOKE == 1 ]] && LARGEST_CKPT=$OUT/checkpoints
declare -A SENSITIVITY_NAME=([fp]=fp [bitnet]=bitnet [pquant-n1]=pquant)

train() {  # train LABEL SIZE-ENTRY LR SEED
  local label=$1 lr=$3 seed=$4
  local -a s flags
  read -r -a s <<<"$2"
  read -r -a flags <<<"${FLAGS[$label]}"
  [[ $label == pquant-* ]] && flags+=(--r $((s[4] / 12)))
  if [[ $2 == "${SIZES[-1]}" && $seed == 1 && -n ${SENSITIVITY_NAME[$label]:-} ]]; then
    mkdir -p "$LARGEST_CKPT"
    flags+=(--save "$LARGEST_CKPT/${SENSITIVITY_NAME[$label]}.safetensors")
  fi
  LABEL=$label run_train "$label-${s[0]}-lr$lr-s$seed" "${flags[@]}" --d-model "${s[1]}" \
    --layers "${s[2]}" --heads "${s[3]}" --d-ff "${s[4]}" --context "$CONTEXT" --batch "$BATCH" \
    --steps "$STEPS" --lr "$lr" --seed "$seed" --threads 1
}

sweep() {  # the smallest size first: its runs are complete before the second size's begin
  local label size lr
  for size in "${SIZES[@]:0:2}"; do
    for label in "${LABELS[@]}"; do
      for lr in ${LRS[$label]}; do train "$label" "$size" "$lr" 1; done
    done
  done
}

# The sweep's best learning rate per label (as its flag is spelled in the run names): lowest mean
# validation loss over the two smallest sizes.
best_lrs() {
  "$PYTHON" - "$OUT" "${SIZES[0]%% *}" "${SIZES[1]%% *}" <<'PY' >"$OUT/best_lr.json.tmp"
import glob, json, os, re, sys
out, s1, s2 = sys.argv[1:4]
runs = {}
for p in glob.glob(os.path.join(out, "*-s1.json")):
    j = json.load(open(p))
    label = j.get("label", "")
    m = re.fullmatch(r"(S\d+)-lr(.+)-s1", j["run"][len(label) + 1:])  # <label>-<size>-lr<lr>-s<seed>
    if m and m.group(1) in (s1, s2):
        runs.setdefault(label, {}).setdefault(m.group(2), []).append(j["val_loss"])
best = {l: min((sum(v) / len(v), lr) for lr, v in d.items() if len(v) == 2)[1]
        for l, d in runs.items() if any(len(v) == 2 for v in d.values())}
print(json.dumps(best, sort_keys=True))
PY
  mv "$OUT/best_lr.json.tmp" "$OUT/best_lr.json"
  echo "best learning rates: $(cat "$OUT/best_lr.json")"
}

lr_of() {  # the best learning rate of a label
  local lr
  lr=$("$PYTHON" -c "import json; print(json.load(open('$OUT/best_lr.json')).get('$1', ''))")
  [[ -n $lr ]] || die "no finished sweep for $1 (run the sweep stage first)"
  echo "$lr"
}

main_runs() {
  local label size i lr
  best_lrs
  for label in "${LABELS[@]}"; do
    lr=$(lr_of "$label")
    for size in "${SIZES[@]:2}"; do train "$label" "$size" "$lr" 1; done
  done
  if [[ ${#SIZES[@]} -ge 4 ]]; then  # N=8 at the two largest sizes, at pQuant N=4's rate
    lr=$(lr_of pquant-n4)
    for size in "${SIZES[@]: -2}"; do train pquant-n8 "$size" "$lr" 1; done
  fi
}

spread() {  # seeds 2 and 3 at the third size (or the last one in the smoke configuration)
  local label seed lr size=${SIZES[2]:-${SIZES[-1]}}
  best_lrs
  for label in "${LABELS[@]}"; do
    lr=$(lr_of "$label")
    for seed in 2 3; do train "$label" "$size" "$lr" "$seed"; done
  done
}

plot() {
  best_lrs
  # The figure's points: each label's best-rate seed-1 runs at every size (N=8 at N=4's rate).
  "$PYTHON" - "$OUT" <<'PY' >"$OUT/points.jsonl.tmp"
import glob, json, os, sys
out = sys.argv[1]
best = json.load(open(os.path.join(out, "best_lr.json")))
best["pquant-n8"] = best.get("pquant-n4")
for p in sorted(glob.glob(os.path.join(out, "*-s1.json"))):
    j = json.load(open(p))
    label = j.get("label", "")
    if best.get(label) is not None and j["run"].endswith(f"-lr{best[label]}-s1"):
        print(json.dumps({k: j[k] for k in ("label", "run", "params_total", "params_active", "val_loss", "val_ppl", "lr", "steps")}))
PY
  mv "$OUT/points.jsonl.tmp" "$OUT/points.jsonl"
  "$PYTHON" scripts/plot_results.py lines --out "$OUT/fig4_scaling.png" --x params_total --y val_loss \
    --group label --logx --xlabel "parameters (total)" --ylabel "validation loss (nats per byte)" \
    --title "Scaling: $STEPS steps x $BATCH x $CONTEXT tokens at every size" "$OUT/points.jsonl"
  echo "figure: $OUT/fig4_scaling.png"
}

case $STAGE in
  sweep) sweep ;;
  main) main_runs ;;
  spread) spread ;;
  plot) plot ;;
  all) sweep; main_runs; spread; plot ;;
  *) die "unknown stage '$STAGE' (sweep, main, spread, plot or all)" ;;
esac
