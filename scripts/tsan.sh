#!/usr/bin/env bash
# ThreadSanitizer run of pquant's threaded tests (kernels, layers, training, model, inference
# engine, distributed), against a oneTBB built with -fsanitize=thread from Debian's own source
# package. Debian's libtbb is not instrumented: TSan cannot see its synchronisation, so every
# parallel_for would look like a race. Nothing is suppressed.
# Usage: scripts/tsan.sh [gtest filter]       (default: every test of those binaries)
# Steps (each skipped when already done; delete build/tsan to start over):
#   1. oneTBB: `apt-get source` of the installed libtbb-dev's source package and version, through a
#      private apt configuration in build/tsan/onetbb-src/ (the machine's own Debian sources as
#      deb-src; the system's apt state is not touched, no root needed), then built with its CMake
#      option TBB_SANITIZE=thread and installed into build/tsan/onetbb/;
#   2. `cmake --preset tsan` (which points TBB_DIR there) and the threaded test binaries;
#   3. scripts/tsan_check.cpp: a race through tbb::parallel_for must be reported, the race-free
#      loop must not;
#   4. each binary run with TSAN_OPTIONS=halt_on_error=1; a report fails the script.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
filter="${1:-*}"
jobs="${PQUANT_JOBS:-2}"
build="$root/build/tsan"
tbb_prefix="$build/onetbb"
tbb_src="$build/onetbb-src"

# dpkg-dev: dpkg-source, which `apt-get source` unpacks with.
scripts/install-deps.sh dpkg-dev

if [[ ! -f $tbb_prefix/lib/cmake/TBB/TBBConfig.cmake ]]; then
  package="$(dpkg-query -W -f='${source:Package}' "libtbb-dev:$(dpkg --print-architecture)")"
  version="$(dpkg-query -W -f='${source:Version}' "libtbb-dev:$(dpkg --print-architecture)")"
  echo "tsan.sh: building $package $version with TBB_SANITIZE=thread into $tbb_prefix"
  rm -rf "$tbb_src"
  mkdir -p "$tbb_src"/apt/{lists/partial,archives/partial,sources.list.d} "$tbb_src/source"
  # The machine's Debian archives (its mirror or snapshot), as deb-src: one-line lists and deb822
  # .sources files; other vendors' repositories are left out.
  : >"$tbb_src/apt/sources.list"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    sed -n 's/^[[:space:]]*deb[[:space:]]\(.*debian.*\)/deb-src \1/p' "$f" >>"$tbb_src/apt/sources.list"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && grep -q '^URIs:.*debian' "$f" || continue
    sed 's/^Types:.*/Types: deb-src/' "$f" >"$tbb_src/apt/sources.list.d/$(basename "$f")"
  done
  apt_opts=(-o Dir::Etc::SourceList="$tbb_src/apt/sources.list"
            -o Dir::Etc::SourceParts="$tbb_src/apt/sources.list.d"
            -o Dir::State::Lists="$tbb_src/apt/lists"
            -o Dir::Cache::Archives="$tbb_src/apt/archives"
            -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
            -o Debug::NoLocking=1)
  # As root, apt would download as the user _apt, which cannot write into the build tree.
  [[ $(id -u) -eq 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" -qq update
  (cd "$tbb_src/source" && apt-get "${apt_opts[@]}" source "$package=$version")
  tbb_dir="$(find "$tbb_src/source" -mindepth 1 -maxdepth 1 -type d -name "$package-*" | head -n 1)"
  # Only libtbb: no tests, no tbbmalloc (pquant does not link it), no tbbbind (needs hwloc).
  cmake -S "$tbb_dir" -B "$tbb_src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX="$tbb_prefix" -DCMAKE_INSTALL_LIBDIR=lib -DTBB_SANITIZE=thread \
    -DTBB_TEST=OFF -DTBB_STRICT=OFF -DTBBMALLOC_BUILD=OFF -DTBB_DISABLE_HWLOC_AUTOMATIC_SEARCH=ON \
    -DTBB_ENABLE_IPO=OFF >"$tbb_src/configure.log"
  cmake --build "$tbb_src/build" -j "$jobs"
  cmake --install "$tbb_src/build" >/dev/null
fi

# The threaded tests: everything that runs TBB-parallel code, and data-parallel training on MPI.
targets=(test_kernels test_layers test_model test_training_optim test_training_trainer
         test_inference test_packed_forms test_data_parallel)
cmake --preset tsan >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# The instrumented libtbb must be the one loaded (the binaries carry its path as RUNPATH).
if [[ $(ldd "$build/tests/kernels/test_kernels") != *"$tbb_prefix/lib/libtbb"* ]]; then
  echo "tsan.sh: test_kernels does not load $tbb_prefix's libtbb" >&2
  exit 1
fi
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 ${TSAN_OPTIONS:-}"

# The toolchain first: a race through tbb::parallel_for is reported, the race-free loop is not.
check="$build/tsan_check"
if [[ ! -x $check || $root/scripts/tsan_check.cpp -nt $check ]]; then
  g++ -std=c++20 -O1 -g -fsanitize=thread -Wno-tsan -I"$tbb_prefix/include" \
    "$root/scripts/tsan_check.cpp" -o "$check" -L"$tbb_prefix/lib" -Wl,-rpath,"$tbb_prefix/lib" -ltbb
fi
if ! "$check" >"$build/tsan_check.log" 2>&1; then
  cat "$build/tsan_check.log"
  echo "tsan.sh: ThreadSanitizer reports a race-free parallel_for: is libtbb instrumented?" >&2
  exit 1
fi
if "$check" race >"$build/tsan_check_race.log" 2>&1 ||
   ! grep -q 'WARNING: ThreadSanitizer: data race' "$build/tsan_check_race.log"; then
  cat "$build/tsan_check_race.log"
  echo "tsan.sh: ThreadSanitizer missed the race in scripts/tsan_check.cpp" >&2
  exit 1
fi
echo "tsan.sh: toolchain check: the race is reported, the race-free loop is clean ($(grep -o 'threads that ran chunks: [0-9]*' "$build/tsan_check.log"))"
status=0
for t in "${targets[@]}"; do
  bin="$(find "$build/tests" -type f -name "$t" -perm -u+x | head -n 1)"
  echo "tsan.sh: $t"
  if [[ $t == test_data_parallel ]]; then
    # Two ranks over shared memory, as the distributed tests run (tests/distributed/CMakeLists.txt).
    cmd=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
         OMPI_MCA_btl_vader_single_copy_mechanism=none mpiexec -n 2 --oversubscribe
         -x TSAN_OPTIONS "$bin" --gtest_filter="$filter" --gtest_color=no)
  else
    cmd=("$bin" --gtest_filter="$filter" --gtest_color=no)
  fi
  if "${cmd[@]}" >"$build/$t.log" 2>&1; then
    grep -E '^\[  PASSED  \]' "$build/$t.log" | tail -n 1 || true
  else
    status=1
    grep -m 1 -A 40 'WARNING: ThreadSanitizer' "$build/$t.log" || tail -n 30 "$build/$t.log"
    echo "tsan.sh: $t FAILED (log $build/$t.log)"
  fi
done
[[ $status == 0 ]] && echo "tsan.sh: no ThreadSanitizer report"
exit $status
