#!/usr/bin/env bash
# Cross-builds pquant's kernel and layer tests for aarch64 (Debian's g++-aarch64-linux-gnu and the
# :arm64 dev packages) and runs them under qemu-aarch64-static, once on a NEON-only CPU and once
# per SVE vector length, so every Highway target the CPU offers is compared with the scalar
# references. Installs what is missing (root or sudo). See docs/platforms.md.
# Usage: scripts/test-aarch64.sh [--no-install]    (build folder: build/aarch64)
# The CPU models are PQUANT_TEST_CPUS in cmake/toolchains/aarch64-linux-gnu.cmake.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    *) echo "test-aarch64.sh: unknown argument '$arg' (expected --no-install)" >&2; exit 2 ;;
  esac
done

now() { date +%s; }
t0=$(now)

# --- 1. Packages: the cross compiler, qemu-user and the arm64 builds of the libraries. ---
install_packages() {
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "test-aarch64.sh: need root or sudo to install $*" >&2
      exit 1
    fi
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo_cmd[@]}" dpkg --add-architecture arm64
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@"
}
packages=(cmake make g++-aarch64-linux-gnu qemu-user-static nlohmann-json3-dev
          libhwy-dev:arm64 libtbb-dev:arm64 libgtest-dev:arm64)
if [ "$install" -eq 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test-aarch64.sh: installing ${missing[*]}"
    install_packages "${missing[@]}"
  fi
fi
t_install=$(( $(now) - t0 ))

# --- 2. Configure and build only the kernel and layer tests (and the dispatch TU they link). ---
build=build/aarch64
t1=$(now)
cmake -S . -B "$build" --toolchain cmake/toolchains/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DPQUANT_BUILD_TESTS=ON -DPQUANT_BUILD_EXAMPLES=OFF \
  -DPQUANT_BUILD_BENCHMARKS=OFF -DPQUANT_INSTALL=OFF -U PQUANT_TEST_CPUS >/dev/null
targets=(test_kernels test_kernels_static test_layers test_layers_static)
cmake --build "$build" --target "${targets[@]}" -j2
t_build=$(( $(now) - t1 ))

# --- 3. Run them under qemu, one ctest label per CPU model (PQUANT_TEST_CPUS). ---
# Each test is named <suite>.<test>/<SIMD target>.<cpu> for the per-target suites; a CPU run
# passes only if every test passed and the SIMD targets that CPU must offer were all exercised.
# The NEON code does not depend on the SVE vector length, so the SVE CPUs skip its repeats
# (`ctest -L aarch64` runs every registered test).
declare -A expect=(
  [neon]="NEON"
  [sve128]="SVE SVE2 SVE2_128"
  [sve256]="SVE SVE2 SVE_256"
  [sve2048]="SVE SVE2"
)
cpus=$(sed -n 's/^PQUANT_TEST_CPUS:[A-Z]*=//p' "$build/CMakeCache.txt")
logdir="$build/aarch64-logs"
mkdir -p "$logdir"
summary=()
status=0
total_passed=0
total_failed=0
t2=$(now)
IFS=';' read -r -a entries <<<"$cpus"
for entry in "${entries[@]}"; do
  name=${entry%%=*}
  model=${entry#*=}
  label="aarch64-$name"
  log="$logdir/$name.log"
  s0=$(now)
  echo "== $label: qemu-aarch64-static -cpu $model"
  skip=()
  [ "$name" = neon ] || skip=(-E "/NEON( +# GetParam\(\) = [0-9]+)?\.${name}\$")
  rc=0
  ctest --test-dir "$build" -L "^${label}\$" "${skip[@]}" --no-tests=error --output-on-failure \
    -j2 --timeout 900 >"$log" 2>&1 || rc=$?
  secs=$(( $(now) - s0 ))
  grep -E "tests passed|No tests were found" "$log" || tail -n 5 "$log"
  passed=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$log" || true)
  failed=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception|Not Run)' "$log" ||
           true)
  # The SIMD targets seen in the parameterised test names, with how many tests ran on each.
  seen=$(grep -oE "/[A-Z0-9_]+( +# GetParam\(\) = [0-9]+)?\.${name} +\.+ +Passed" "$log" |
         sed -E "s|^/([A-Z0-9_]+).*|\1|" | sort | uniq -c |
         awk '{printf "%s%s:%s", sep, $2, $1; sep=" "}')
  missing=""
  for t in ${expect[$name]:-}; do
    grep -qE "(^| )$t:" <<<"$seen" || missing+=" $t"
  done
  verdict=ok
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ] || [ -n "$missing" ]; then
    verdict=FAILED
    status=1
  fi
  total_passed=$(( total_passed + passed ))
  total_failed=$(( total_failed + failed ))
  summary+=("$(printf '%-7s %-22s %5s passed %3s failed %5ss  targets: %s%s  %s' "$name" "$model" \
    "$passed" "$failed" "$secs" "${seen:-none}" "${missing:+  MISSING:$missing}" "$verdict")")
done
t_run=$(( $(now) - t2 ))

echo
echo "aarch64 summary (kernel and layer tests vs the scalar references; logs in $logdir)"
printf '  %s\n' "${summary[@]}"
echo "times: install ${t_install}s, build ${t_build}s, run ${t_run}s, total $(( $(now) - t0 ))s"
[ "$status" -eq 0 ] || echo "aarch64: FAILED (a CPU model above is not ok; its log has the details)"
echo "aarch64: $total_passed passed, $total_failed failed"
exit "$status"
