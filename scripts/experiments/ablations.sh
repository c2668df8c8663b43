#!/usr/bin/env bash
# Ablations at one size (d_model 96, 3 layers, D_ff 288, 0.41M parameters; docs/results.md):
# pQuant's branch scales (learned from two inits, or fixed), N = 1, 2, 4, 8 experts at equal
# active parameters, the INT8 width r, two-phase vs cosine schedule; BitNet with naive mixed
# precision (5% largest |w| in FP32), per-row and group-64 1-bit scales, and a two-centroid k-means
# row codebook; FP and BitNet b1.58 for the ordering; seeds 2 and 3 of BitNet and pQuant N=1 for
# the seed-to-seed spread. And what the logs show: learned alpha/beta per layer (the paper's
# Table 7), tokens per expert, and the flip ratio of the 1-bit signs over training.
#
#   DATA=tinyshakespeare.txt scripts/experiments/ablations.sh [REGEX]
#
# Runs every planned run whose name matches REGEX (default: all). Resumable (common.sh). Results:
# docs/results/ablations/<name>.json / .log, summary.json (the table), flips.jsonl and
# fig_flip_ratio.png. Environment (besides common.sh's): STEPS (default 600), LR (default 3e-3).
source "$(dirname "$0")/common.sh"
FILTER=${1:-.}
if [[ $SMOKE == 1 ]]; then
  OUT=build/experiments/smoke/ablations
  SIZE=(--d-model 32 --layers 2 --heads 2 --d-ff 96 --context 32 --batch 2)
  STEPS=20 R=8
else
  OUT=${OUT:-docs/results/ablations}
  SIZE=(--d-model 96 --layers 3 --heads 3 --d-ff 288 --context 128 --batch 16)
fi
STEPS=${STEPS:-600} LR=${LR:-3e-3} R=${R:-24}
setup train_lm
COMMON=("${SIZE[@]}" --steps "$STEPS" --lr "$LR" --seed 1 --threads 1 --log-every $((STEPS / 20)))

# name|label|flags (after the common flags: a run's own --seed or --lr wins)
# pQuant runs start from the paper's alpha = 2.0, beta = 0.2 (train_lm's default is 1 / 1) unless
# the run says otherwise: the table compares inits against it.
A2="--alpha-init 2 --beta-init 0.2"
PQ1="--variant pquant --experts 1 --r $R $A2"
PQ1_FIXED="--variant pquant-fixed-scales --experts 1 --r $R $A2"
PLAN=(
  "bitnet|bitnet|--variant bitnet"
  "pq1|pquant-n1|$PQ1"
  "fp|fp|--variant fp"
  "bitnet158|bitnet158|--variant bitnet158"
  "pq1-fixed-a1b1|pquant-n1 alpha=beta=1 fixed|$PQ1_FIXED --alpha-init 1 --beta-init 1"
  "pq1-a1b1|pquant-n1 alpha=beta=1 at init|$PQ1 --alpha-init 1 --beta-init 1"
  "pq1-fixed|pquant-n1 alpha=2 beta=0.2 fixed|$PQ1_FIXED"
  "bitnet-keep5|bitnet 5% largest FP32|--variant bitnet-keep5"
  "bitnet-keep1.3|bitnet 1.3% largest FP32 (pQuant N=1's bits)|--variant bitnet-keep1.3"
  "bitnet-row|bitnet per-row scales|--variant bitnet-row"
  "bitnet-group64|bitnet group-64 scales|--variant bitnet-group64"
  "bitnet-kmeans|bitnet k-means 2 centroids per row|--variant bitnet-kmeans"
  "bitnet-s2|bitnet|--variant bitnet --seed 2"
  "pq1-s2|pquant-n1|$PQ1 --seed 2"
  "bitnet-s3|bitnet|--variant bitnet --seed 3"
  "pq1-s3|pquant-n1|$PQ1 --seed 3"
  "pq2|pquant-n2|--variant pquant --experts 2 --r $R $A2"
  "pq4|pquant-n4|--variant pquant --experts 4 --r $R $A2"
  "pq8|pquant-n8|--variant pquant --experts 8 --r $R $A2"
  "pq1-r$((R / 2))|pquant-n1 r/2|--variant pquant --experts 1 --r $((R / 2)) $A2"
  "pq1-r$((R * 2))|pquant-n1 2r|--variant pquant --experts 1 --r $((R * 2)) $A2"
  "pq1-cosine|pquant-n1 cosine|$PQ1 --schedule cosine"
  "bitnet-cosine|bitnet cosine|--variant bitnet --schedule cosine"
)
for entry in "${PLAN[@]}"; do
  IFS='|' read -r name label extra <<<"$entry"
  [[ $name =~ $FILTER ]] || continue
  read -r -a flags <<<"$extra"
  LABEL=$label run_train "$name" "${COMMON[@]}" "${flags[@]}"
done

# The table, learned alpha/beta per layer, expert usage and the flip ratio, from the results and
# the progress lines ("| flip F% | alpha/beta a/b ... | experts% [..] ...").
"$PYTHON" - "$OUT" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
rows, flips = [], []
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[:-5]
    if name == "summary":
        continue
    j = json.load(open(path))
    row = {k: j.get(k) for k in ("run", "label", "variant", "val_loss", "val_ppl", "params_total", "params_active", "experts", "r", "lr")}
    log = os.path.join(out, name + ".log")
    last = None
    for line in open(log) if os.path.exists(log) else []:
        m = re.match(r"step\s+(\d+)/", line)
        if not m:
            continue
        last = line
        f = re.search(r"\| flip ([0-9.]+)%", line)
        if f and not re.search(r"-s\d+$", name):  # seed 1 only: one curve per label
            flips.append({"label": j.get("label", name), "step": int(m.group(1)), "flip_percent": float(f.group(1))})
    if last:
        ab = re.search(r"\| alpha/beta ((?:\s*[0-9.]+/[0-9.]+)+)", last)
        if ab:
            pairs = [p.split("/") for p in ab.group(1).split()]
            row["alpha"] = [float(a) for a, _ in pairs]
            row["beta"] = [float(b) for _, b in pairs]
        ex = re.findall(r"\[([0-9 ]+)\]", last.split("experts%")[1]) if "experts%" in last else []
        if ex:
            row["expert_percent_last_window"] = [[int(v) for v in e.split()] for e in ex]
    rows.append(row)
json.dump(rows, open(os.path.join(out, "summary.json.tmp"), "w"), indent=1)
os.replace(os.path.join(out, "summary.json.tmp"), os.path.join(out, "summary.json"))
with open(os.path.join(out, "flips.jsonl.tmp"), "w") as f:
    for x in flips:
        f.write(json.dumps(x) + "\n")
os.replace(os.path.join(out, "flips.jsonl.tmp"), os.path.join(out, "flips.jsonl"))
print(f"{'run':<16}{'val loss':>10}{'val ppl':>9}{'params':>9}  alpha / beta per layer")
for r in rows:
    ab = " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(r.get("alpha", []), r.get("beta", [])))
    print(f"{r['run']:<16}{r['val_loss']:>10.4f}{r['val_ppl']:>9.3f}{r['params_total']:>9}  {ab}")
PY
if [[ -s $OUT/flips.jsonl ]]; then
  "$PYTHON" scripts/plot_results.py lines --out "$OUT/fig_flip_ratio.png" --x step --y flip_percent \
    --group label --ylabel "1-bit signs flipped since the previous report (%)" \
    --title "Flip ratio over training ($STEPS steps)" "$OUT/flips.jsonl"
  echo "figure: $OUT/fig_flip_ratio.png"
fi
