#!/usr/bin/env bash
# Runs pquant's libFuzzer targets (tests/fuzz/fuzz_<target>.cpp), built with clang++
# -fsanitize=fuzzer,address,undefined.
# Usage: scripts/fuzz.sh [target|all] [budget]      budget: N runs, or Ns seconds (default 60s)
#        scripts/fuzz.sh --build-only [target|all]  (what the CMake build calls)
# Targets: model_loader, checkpoint, config. Each run starts from the seed corpus in
# tests/fuzz/corpus/<target>/ (read, never written) plus a work corpus in the build folder that keeps
# what earlier runs found. Crash reproducers are written to the build folder and the script fails.
# Options (before the target): --out DIR (build folder, default build/fuzz), --jobs N (parallel
# fuzzing processes, default 1). Exits 77 (ctest's "skipped") when clang++ or its libFuzzer
# runtime (Debian: clang, libclang-rt-14-dev) is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build/fuzz"
build_only=0
jobs=1
while [[ $# -gt 0 && $1 == --* ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    *) echo "fuzz.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
all_targets=(model_loader checkpoint config)
target="${1:-all}"
budget="${2:-60s}"
if [[ $target == all ]]; then
  targets=("${all_targets[@]}")
elif [[ " ${all_targets[*]} " == *" $target "* ]]; then
  targets=("$target")
else
  echo "fuzz.sh: unknown target '$target' (expected one of: all ${all_targets[*]})" >&2
  exit 2
fi
if [[ $budget =~ ^[0-9]+s$ ]]; then
  limit=(-max_total_time="${budget%s}")
elif [[ $budget =~ ^[0-9]+$ ]]; then
  limit=(-runs="$budget")
else
  echo "fuzz.sh: budget '$budget' must be a number of runs (2000) or of seconds (600s)" >&2
  exit 2
fi

cxx="${PQUANT_FUZZ_CXX:-clang++}"
# Static dispatch: the kernels compiled inline for the baseline target (no separate dispatch unit).
flags=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -DPQUANT_STATIC_DISPATCH -I"$root/include" -I"$root/examples/train_lm")
libs=(-ltbb -lhwy)
mkdir -p "$out"
out="$(cd "$out" && pwd)"
probe="$out/probe"
if ! command -v "$cxx" >/dev/null ||
   ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
     "$cxx" -x c++ -fsanitize=fuzzer - -o "$probe" 2>/dev/null; then
  echo "fuzz.sh: SKIPPED: no $cxx with libFuzzer (install the Debian packages clang and libclang-rt-14-dev)"
  [[ $build_only == 1 ]] && exit 0
  exit 77
fi

for t in "${targets[@]}"; do
  src="$root/tests/fuzz/fuzz_$t.cpp" bin="$out/fuzz_$t"
  # Rebuild when the target or any header it may include is newer than the binary.
  if [[ ! -x $bin ]] || [[ -n $(find "$src" "$root/include" "$root/examples/train_lm" -newer "$bin" -name '*.[ch]pp' -print -quit) ]]; then
    echo "fuzz.sh: building fuzz_$t"
    "$cxx" "${flags[@]}" "$src" -o "$bin.new" "${libs[@]}"
    mv "$bin.new" "$bin"
  fi
done
[[ $build_only == 1 ]] && exit 0

status=0
for t in "${targets[@]}"; do
  work="$out/corpus_$t" artifacts="$out/crashes_$t/"
  mkdir -p "$work" "$artifacts"
  echo "fuzz.sh: fuzz_$t ${limit[*]} (seed corpus tests/fuzz/corpus/$t, log $out/fuzz_$t.log)"
  # -rss_limit_mb / -malloc_limit_mb: an input that makes the parser ask for more than 2 GiB is a
  # finding (every allocation must be bounded by what the file holds). -timeout: a hang is one too.
  args=("${limit[@]}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20 -print_final_stats=1
        -artifact_prefix="$artifacts" "$work" "$root/tests/fuzz/corpus/$t")
  if [[ $jobs -gt 1 ]]; then args=(-jobs="$jobs" -workers="$jobs" "${args[@]}"); fi
  if (cd "$out" && "$out/fuzz_$t" "${args[@]}") >"$out/fuzz_$t.log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' "$out/fuzz_$t.log" | tail -n 2
    echo "fuzz.sh: fuzz_$t: no crash"
  else
    status=1
    tail -n 40 "$out/fuzz_$t.log"
    echo "fuzz.sh: fuzz_$t: FAILED (reproducer in $artifacts, full log $out/fuzz_$t.log)"
  fi
done
exit $status
