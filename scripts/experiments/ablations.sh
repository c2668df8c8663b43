#!/usr/bin/env bash
# Ablations at one size (d_model 128, 4 layers, D_ff 384; docs/results.md): pQuant's branch scales
# at step 0, N = 1, 2, 4, 8 experts at equal active parameters, the INT8 width r, two-phase vs
# cosine schedule; and what the logs show: learned alpha/beta per layer (the paper's Table 7),
# tokens per expert, and the flip ratio of the 1-bit signs over training.
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
  SIZE=(--d-model 128 --layers 4 --heads 4 --d-ff 384 --context 128 --batch 16)
fi
STEPS=${STEPS:-600} LR=${LR:-3e-3} R=${R:-32}
setup train_lm
COMMON=("${SIZE[@]}" --steps "$STEPS" --lr "$LR" --seed 1 --threads 1 --log-every $((STEPS / 20)))

# name|label|flags
PLAN=(
  "bitnet|bitnet|--variant bitnet"
  "pq1|pquant-n1|--variant pquant --experts 1 --r $R"
  "pq1-a2b02|pquant-n1 alpha 2.0, beta 0.2 at init (the paper's)|--variant pquant --experts 1 --r $R --alpha-init 2 --beta-init 0.2"
  "pq2|pquant-n2|--variant pquant --experts 2 --r $R"
  "pq4|pquant-n4|--variant pquant --experts 4 --r $R"
  "pq8|pquant-n8|--variant pquant --experts 8 --r $R"
  "pq1-r$((R / 2))|pquant-n1 r/2|--variant pquant --experts 1 --r $((R / 2))"
  "pq1-r$((R * 2))|pquant-n1 2r|--variant pquant --experts 1 --r $((R * 2))"
  "pq1-cosine|pquant-n1 cosine|--variant pquant --experts 1 --r $R --schedule cosine"
  "bitnet-cosine|bitnet cosine|--variant bitnet --schedule cosine"
)
for entry in "${PLAN[@]}"; do
  IFS='|' read -r name label extra <<<"$entry"
  [[ $name =~ $FILTER ]] || continue
  read -r -a flags <<<"$extra"
  LABEL=$label run_train "$name" "${flags[@]}" "${COMMON[@]}"
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
    row = {k: j.get(k) for k in ("run", "label", "val_loss", "val_ppl", "params_total", "params_active", "experts", "r")}
    log = os.path.join(out, name + ".log")
    last = None
    for line in open(log) if os.path.exists(log) else []:
        m = re.match(r"step\s+(\d+)/", line)
        if not m:
            continue
        last = line
        f = re.search(r"\| flip ([0-9.]+)%", line)
        if f:
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
