#!/usr/bin/env bash
# Crash test of train_lm's checkpoints: kills train_lm with SIGKILL at random moments of a run that
# saves after every step (--save-every 1), then checks that
#   - the checkpoint left behind is a complete one (train_lm --resume accepts it), old or new;
#   - resuming from it ends bit-identically to an uninterrupted run: same final val_loss and a
#     final checkpoint byte-identical to the uninterrupted run's (weights, moments, counters, RNG);
#   - the partial temp files a kill leaves next to it (*.tmp.*) are removed by the next save.
# Usage: scripts/crash_test.sh [trials (default 20)] [train_lm binary]
# Builds train_lm (release preset) when no binary is given. Exit 0 when every trial passes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
trials="${1:-20}"
tl="${2:-}"
if [[ -z $tl ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target train_lm >/dev/null
  tl="$root/build/release/examples/train_lm/train_lm"
fi
work="$root/build/crash_test"
rm -rf "$work"
mkdir -p "$work"

args=(--variant pquant --experts 2 --r 8 --d-model 32 --layers 2 --heads 2 --d-ff 64 --context 32
      --batch 4 --steps 30 --warmup 3 --corpus-bytes 60000 --seed 7 --threads 1 --json
      --save-every 1)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }

echo "crash_test: reference run (uninterrupted)"
start=$(date +%s%N)
ref_out=$("$tl" "${args[@]}" --save "$work/ref.ckpt")
ref_ms=$(( ($(date +%s%N) - start) / 1000000 ))
ref_loss=$(field val_loss "$(tail -n 1 <<<"$ref_out")")
echo "crash_test: reference val_loss $ref_loss, run time ${ref_ms} ms"

failures=0 killed_mid=0 no_ckpt=0 stale_seen=0
for ((i = 1; i <= trials; i++)); do
  dir="$work/trial$i"
  mkdir -p "$dir"
  ck="$dir/run.ckpt"
  delay_ms=$(( RANDOM * 32768 + RANDOM ))
  delay_ms=$(( delay_ms % (ref_ms * 9 / 10 + 1) ))
  "$tl" "${args[@]}" --save "$ck" >"$dir/killed.log" 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -9 "$pid" 2>/dev/null || true
  st=0
  wait "$pid" 2>/dev/null || st=$?
  how="ended before the kill"
  if [[ $st == 137 ]]; then killed_mid=$((killed_mid + 1)); how="killed after ${delay_ms} ms"; fi
  stale=$(find "$dir" -name 'run.ckpt.tmp.*' | wc -l)
  stale_seen=$((stale_seen + stale))
  if [[ ! -e $ck ]]; then
    # Killed before the first save completed: no checkpoint (and nothing to resume) is correct.
    no_ckpt=$((no_ckpt + 1))
    resume=()
    what="no checkpoint yet"
  else
    resume=(--resume "$ck")
    what="checkpoint"
  fi
  if ! out=$("$tl" "${args[@]}" "${resume[@]}" --save "$ck" 2>"$dir/resume.err"); then
    echo "crash_test: trial $i: FAIL: resume from the $what left by a kill after ${delay_ms} ms failed:"
    cat "$dir/resume.err"
    failures=$((failures + 1))
    continue
  fi
  at=$(sed -n 's/^resumed from .* at step \([0-9]*\)$/\1/p' <<<"$out")
  loss=$(field val_loss "$(tail -n 1 <<<"$out")")
  same=different
  cmp -s "$ck" "$work/ref.ckpt" && same=byte-identical
  left=$(find "$dir" -name 'run.ckpt.tmp.*' | wc -l)
  verdict=ok
  if [[ $loss != "$ref_loss" || $same != byte-identical || $left != 0 ]]; then
    verdict=FAIL
    failures=$((failures + 1))
  fi
  echo "crash_test: trial $i: $how, $what${at:+ at step $at}, ${stale} temp file(s) left by the kill, ${left} after the resumed run; val_loss $loss, final checkpoint $same to the uninterrupted one: $verdict"
done
echo "crash_test: $trials trials, $killed_mid killed by SIGKILL before the run ended, $no_ckpt before the first checkpoint, $stale_seen inside a save (a partial temp file left, which the next save must remove); failures: $failures"
[[ $failures == 0 ]]
