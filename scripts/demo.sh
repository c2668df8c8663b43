#!/usr/bin/env bash
# pquant's main job, end to end:
#  1. quantize one matrix with every quantizer (error and bits per weight);
#  2. train a small pQuant model (N=4 INT8 experts) and the BitNet baseline with the same budget
#     (sizes, steps, batch, LR schedule, data, seed) on a corpus train_lm generates itself, and print
#     both validation perplexities side by side;
#  3. export the pQuant model to a packed .safetensors file and generate text from it, with decode
#     speed and the file size next to what the FP32 model would need.
# Extra arguments go to both train_lm runs (e.g. --data FILE to train on your own text).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cmake --preset demo >/dev/null
cmake --build --preset demo --target quickstart train_lm generate
bin=build/demo/examples
out=build/demo/run
mkdir -p "$out"

echo "== 1. quantizers on a 512x1024 Gaussian matrix"
"$bin/quickstart"

common=(--d-model 96 --layers 3 --heads 4 --d-ff 288 --r 32 --context 64 --batch 16
        --steps 400 --warmup 40 --lr 3e-3 --seed 1 --corpus-bytes 400000 --log-every 100 --json "$@")
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }

declare -A ppl tps params active
for variant in bitnet pquant; do
  extra=()
  [[ $variant == pquant ]] && extra=(--experts 4 --save "$out/pquant.checkpoint.safetensors")
  echo
  echo "== 2. training $variant (${common[*]:0:20})"
  summary=$("$bin/train_lm/train_lm" --variant "$variant" "${extra[@]}" "${common[@]}" | tee /dev/stderr | tail -n 1)
  ppl[$variant]=$(field val_ppl "$summary")
  tps[$variant]=$(field train_tokens_per_s "$summary")
  params[$variant]=$(field params_total "$summary")
  active[$variant]=$(field params_active "$summary")
done

echo
echo "Validation perplexity on the held-out tail (last 10%) of the corpus, same training budget:"
printf '%-28s %10s %14s %14s %12s\n' model val_ppl params_total params_active train_tok/s
printf '%-28s %10.3f %14s %14s %12.0f\n' "BitNet (1-bit everywhere)" "${ppl[bitnet]}" \
  "${params[bitnet]}" "${active[bitnet]}" "${tps[bitnet]}"
printf '%-28s %10.3f %14s %14s %12.0f\n' "pQuant (N=4 experts, r=32)" "${ppl[pquant]}" \
  "${params[pquant]}" "${active[pquant]}" "${tps[pquant]}"

echo
echo "== 3. export the pQuant model (latent weights dropped, 1-bit packed 8 per byte) and generate"
"$bin/generate/generate" --export "$out/pquant.checkpoint.safetensors" --model "$out/pquant.safetensors" \
  --prompt "The " --tokens 200 --temperature 0.8 --top-k 40 --seed 1 --json
