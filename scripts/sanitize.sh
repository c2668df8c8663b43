#!/usr/bin/env bash
# The whole test suite under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer:
# the dev preset (GCC, Debug, -fsanitize=address,undefined, UB not recoverable) with the examples
# and the distributed tests, in build/dev. Extra arguments go to ctest (e.g. -R io, -j 2).
# Usage: scripts/sanitize.sh [ctest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh clang

# Pinned here, whatever another command cached in build/dev.
cmake --preset dev -DPQUANT_BUILD_TESTS=ON -DPQUANT_BUILD_EXAMPLES=ON -DPQUANT_WITH_MPI=ON >/dev/null
cmake --build --preset dev
# A sanitizer report ends the process with a non-zero status, so it fails its test.
export UBSAN_OPTIONS="print_stacktrace=1 ${UBSAN_OPTIONS:-}"
ctest --preset dev --timeout 1800 --no-tests=error "$@"
