#!/usr/bin/env bash
# The whole test suite under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer:
# the dev preset (GCC, Debug, -fsanitize=address,undefined, UB not recoverable) with the examples
# and the distributed tests, in build/dev. A sanitizer report ends the process with a non-zero
# status, so it fails its test.
# Usage: scripts/sanitize.sh [ctest arguments, e.g. -j 2]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh clang

# Pinned here, whatever another command cached in build/dev.
cmake --preset dev -DPQUANT_BUILD_TESTS=ON -DPQUANT_BUILD_EXAMPLES=ON -DPQUANT_WITH_MPI=ON >/dev/null
cmake --build --preset dev
export UBSAN_OPTIONS="print_stacktrace=1 ${UBSAN_OPTIONS:-}"
# Open MPI never frees what MPI_Init allocates; scripts/lsan-mpi.supp names its libraries. They
# have no frame pointers, so only the slow unwinder gives those leaks stacks that reach them: the
# distributed tests run with it, separately (it would slow every other test down).
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan-mpi.supp ${LSAN_OPTIONS:-}"
status=0
ctest --preset dev --timeout 1800 --no-tests=error -E '^distributed\.' "$@" || status=1
ASAN_OPTIONS="fast_unwind_on_malloc=0 ${ASAN_OPTIONS:-}" \
  ctest --preset dev --timeout 1800 --no-tests=error -R '^distributed\.' "$@" || status=1
exit $status
