#!/usr/bin/env bash
# Builds and runs pquant's whole test suite (Release, GCC), then compiles every public header
# alone with clang++ -Werror. The suite ends with ctest's summary line.
# Sanitizers: `cmake --preset dev && cmake --build --preset dev && ctest --preset dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh clang

# The release preset pins PQUANT_BUILD_TESTS=ON and the ctest preset fails on zero tests, so nothing
# another command cached in a build folder can turn this into a run that tests nothing.
cmake --preset release -DPQUANT_BUILD_TESTS=ON >/dev/null
cmake --build --preset release
cmake --preset clang-headers >/dev/null
cmake --build --preset clang-headers
ctest --preset release --timeout 900 --no-tests=error
