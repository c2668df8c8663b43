#!/usr/bin/env bash
# ctest: `mpirun -n 2 train_lm --distributed` against one-process train_lm on the same global batch.
#  - two runs at 2 ranks end at the same validation loss, bit for bit (fixed reduction order);
#  - they are within BOUND nats of the one-process run (docs/distributed.md);
#  - rank 0 alone prints: as many progress lines as one process, one JSON line;
#  - a checkpoint written at 2 ranks resumes in one process and ends within BOUND as well;
#  - a bad --save target ends the whole job with an error naming the flag, no hang.
# Usage: train_lm_distributed.sh TRAIN_LM WORK_DIR BOUND MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
train_lm=$1 work=$2 bound=$3
shift 3
mpirun=("$@")
mkdir -p "$work"
ckpt=$work/distributed.ckpt
rm -f "$ckpt"

args=(--variant pquant --experts 1 --r 16 --d-model 32 --layers 2 --heads 2 --d-ff 64 --context 32
      --batch 8 --steps 30 --warmup 3 --corpus-bytes 60000 --threads 1 --log-every 5 --json)
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2" | tail -n 1; }
fail() { echo "FAILED: $*" >&2; exit 1; }

one=$("$train_lm" "${args[@]}")
two_a=$("${mpirun[@]}" -n 2 "$train_lm" "${args[@]}" --distributed)
two_b=$("${mpirun[@]}" -n 2 "$train_lm" "${args[@]}" --distributed)
"${mpirun[@]}" -n 2 "$train_lm" "${args[@]}" --distributed --stop-at 15 --save "$ckpt" >/dev/null
resumed=$("$train_lm" "${args[@]}" --resume "$ckpt")

v_one=$(field val_loss "$one")
v_a=$(field val_loss "$two_a")
v_b=$(field val_loss "$two_b")
v_r=$(field val_loss "$resumed")
echo "val_loss: 1 process $v_one | 2 ranks $v_a, again $v_b | 2 ranks to step 15, 1 process on: $v_r"
echo "all-reduce per step at 2 ranks: $(field allreduce_ms_per_step "$two_a") ms"
[[ -n $v_one && -n $v_a && -n $v_b && -n $v_r ]] || fail "a run printed no val_loss"
[[ $(field ranks "$two_a") == 2 && $(field ranks "$one") == 1 ]] || fail "'ranks' in the JSON"
[[ $v_a == "$v_b" ]] || fail "two runs at 2 ranks differ: $v_a vs $v_b"
within() { awk -v a="$1" -v b="$2" -v t="$bound" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < t) }'; }
within "$v_a" "$v_one" || fail "2 ranks ($v_a) vs 1 process ($v_one): not within $bound"
within "$v_r" "$v_one" || fail "resumed at another rank count ($v_r) vs 1 process ($v_one): not within $bound"
count() { grep -c "$1" <<<"$2" || true; }
[[ $(count '^step ' "$two_a") == "$(count '^step ' "$one")" ]] || fail "progress lines from more than rank 0"
[[ $(count '^{' "$two_a") == 1 ]] || fail "JSON lines from more than rank 0"
rc=0
err=$(timeout 120 "${mpirun[@]}" -n 2 "$train_lm" "${args[@]}" --stop-at 2 --distributed \
      --save "$work/missing/dir/x.ckpt" 2>&1 >/dev/null) || rc=$?
[[ $rc != 0 && $rc != 124 ]] || fail "an unwritable --save at 2 ranks: exit code $rc (124: hung)"
grep -q "\-\-save.*x.ckpt" <<<"$err" || fail "an unwritable --save at 2 ranks: $err"
echo "PASSED (bound $bound nats)"
