#!/usr/bin/env bash
# Sensitivity maps and statistics (the paper's Fig. 2 and Fig. 5a, docs/results.md): FP, BitNet and
# pQuant N=1 trained with the same seed and data, then analyze_sensitivity over calibration tokens
# from the training part.
#
#   DATA=tinyshakespeare.txt scripts/experiments/sensitivity.sh
#
# Resumable: a trained model whose result JSON exists is not trained again (its checkpoint is kept
# under build/experiments/), and a finished analysis is not redone. Results (docs/results/sensitivity/):
#   <variant>.json / .log           train_lm's --json line and progress lines
#   <variant>-stats.json            analyze_sensitivity --json over every block projection
#   <variant>-effective-stats.json  the same with the effective (quantized) weights
#   init-stats.json                 a BitNet model after one step at a 1e-6 learning rate: the
#                                   initialisation's map, the reference the trained maps move from
#   maps/<variant>/<projection>.json  the figure's maps, max-pooled to 64 x 64
#   fig2_fp_vs_bitnet.png, fig5a_pquant_branches.png
# Environment (besides common.sh's): D_MODEL LAYERS HEADS D_FF R CONTEXT BATCH STEPS SEED LAYER
# (the block the figures show) CALIB (calibration tokens). SEED other than 1 writes to
# docs/results/sensitivity/seed<SEED>/ and skips the maps and figures (the statistics' spread).
# TRAIN=0 analyses models trained elsewhere instead (CKPT/{fp,bitnet,pquant}.safetensors, e.g. the
# largest size of scaling.sh: OUT=docs/results/sensitivity/largest CKPT=build/experiments/
# scaling-largest TRAIN=0 D_MODEL=256 LAYERS=8 HEADS=8 D_FF=768 STEPS=600 LAYER=3; the shape
# variables must match the checkpoints, since the initialisation's map is trained at them).
source "$(dirname "$0")/common.sh"
if [[ $SMOKE == 1 ]]; then
  OUT=build/experiments/smoke/sensitivity
  D_MODEL=32 LAYERS=2 HEADS=2 D_FF=96 R=16 CONTEXT=32 BATCH=4 STEPS=20 CALIB=1024
else
  OUT=${OUT:-docs/results/sensitivity}
  [[ ${SEED:-1} == 1 ]] || OUT=$OUT/seed$SEED
fi
D_MODEL=${D_MODEL:-128} LAYERS=${LAYERS:-4} HEADS=${HEADS:-4} D_FF=${D_FF:-384} R=${R:-32}
CONTEXT=${CONTEXT:-128} BATCH=${BATCH:-16} STEPS=${STEPS:-300} SEED=${SEED:-1}
LAYER=${LAYER:-1} CALIB=${CALIB:-8192}
[[ $SMOKE == 1 ]] && CKPT=$OUT/checkpoints
if [[ $SEED == 1 ]]; then CKPT=${CKPT:-build/experiments/sensitivity}; else CKPT=${CKPT:-build/experiments/sensitivity-s$SEED}; fi
setup train_lm analyze_sensitivity
mkdir -p "$CKPT" "$OUT/maps"

COMMON=(--d-model "$D_MODEL" --layers "$LAYERS" --heads "$HEADS" --d-ff "$D_FF" --context "$CONTEXT"
        --batch "$BATCH" --steps "$STEPS" --seed "$SEED" --threads 1)
for v in fp bitnet pquant; do
  if [[ ${TRAIN:-1} == 0 ]]; then
    [[ -e $CKPT/$v.safetensors ]] || die "TRAIN=0: no checkpoint $CKPT/$v.safetensors"
    continue
  fi
  extra=()
  [[ $v == pquant ]] && extra=(--experts 1 --r "$R")
  # A result without its checkpoint (a fresh clone) is trained again for the analysis.
  [[ -e $OUT/$v.json && ! -e $CKPT/$v.safetensors ]] && rm -f "$OUT/$v.json"
  run_train "$v" --variant "$v" "${COMMON[@]}" "${extra[@]}" --save "$CKPT/$v.safetensors"
done

# The initialisation's map (every variant draws the same fan-in uniform weights).
run_train init --variant bitnet "${COMMON[@]}" --steps 1 --lr 1e-6 --save "$CKPT/init.safetensors"

analyze() {  # analyze VARIANT WEIGHTS RESULT [extra flags]
  local v=$1 w=$2 result=$3
  shift 3
  [[ -e $result ]] && { echo "skip $(basename "$result") (done)"; return 0; }
  [[ -e $CKPT/$v.safetensors ]] || { echo "no checkpoint for $v: training failed?" >&2; return 1; }
  echo "analyze $v ($w weights) -> $result"
  nice -n "${NICE:-10}" "$ANALYZE" --model "$CKPT/$v.safetensors" --data "$DATA" \
    --calib-tokens "$CALIB" --weights "$w" --threads 1 --json "$@" >"$result.log"
  tail -n 1 "$result.log" | sed "s|$DATA|$(basename "$DATA")|g; s|$CKPT/||g" >"$result.tmp"
  mv "$result.tmp" "$result"
  rm -f "$result.log"
}

L=blocks.$LAYER
analyze init latent "$OUT/init-stats.json" --out-dir "$CKPT/maps-all/init"
for v in fp bitnet pquant; do
  analyze "$v" latent "$OUT/$v-stats.json" --out-dir "$CKPT/maps-all/$v"
  [[ $v == fp ]] || analyze "$v" effective "$OUT/$v-effective-stats.json" --out-dir "$CKPT/maps-eff/$v"
done
if [[ $SEED == 1 ]]; then
# The figures' maps (64 x 64, committed): the same layer's FFN up projection in each variant; for
# pQuant its 1-bit branch and its INT8 expert.
analyze fp latent "$OUT/maps/fp.json" --projections "$L.ffn.up,$L.attn.q" --map-size 64 --out-dir "$OUT/maps/fp"
analyze bitnet latent "$OUT/maps/bitnet.json" --projections "$L.ffn.up,$L.attn.q" --map-size 64 --out-dir "$OUT/maps/bitnet"
analyze pquant latent "$OUT/maps/pquant.json" --projections "$L.ffn.int1.up,$L.ffn.experts.0.up" --map-size 64 --out-dir "$OUT/maps/pquant"

"$PYTHON" scripts/plot_results.py heatmap --out "$OUT/fig2_fp_vs_bitnet.png" --columns 2 \
  --title "Sensitivity s_ij, FP vs BitNet ($L, d_model $D_MODEL, $STEPS steps)" \
  "$OUT/maps/fp/$L.ffn.up.json" "$OUT/maps/bitnet/$L.ffn.up.json" \
  "$OUT/maps/fp/$L.attn.q.json" "$OUT/maps/bitnet/$L.attn.q.json"
"$PYTHON" scripts/plot_results.py heatmap --out "$OUT/fig5a_pquant_branches.png" --columns 2 \
  --title "pQuant N=1: 1-bit branch vs INT8 branch ($L.ffn, $STEPS steps)" \
  "$OUT/maps/pquant/$L.ffn.int1.up.json" "$OUT/maps/pquant/$L.ffn.experts.0.up.json"
echo "figures: $OUT/fig2_fp_vs_bitnet.png $OUT/fig5a_pquant_branches.png"
fi

# Summary: mean statistics over every block projection, per variant and weight source.
"$PYTHON" - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
print(f"{'model':<28}{'projections':>12}{'mean gini':>11}{'mean top1%':>12}{'median max/med':>16}")
for path in sorted(glob.glob(os.path.join(out, "*-stats.json"))):
    s = json.load(open(path))
    p = s["projections"]
    mm = sorted(x["max_over_median"] for x in p if x["max_over_median"] is not None)
    print(f"{os.path.basename(path)[:-11]:<28}{len(p):>12}{sum(x['gini'] for x in p)/len(p):>11.4f}"
          f"{sum(x['top1pct_share'] for x in p)/len(p):>12.4f}{mm[len(mm)//2] if mm else float('nan'):>16.1f}")
PY
