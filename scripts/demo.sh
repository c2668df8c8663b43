#!/usr/bin/env bash
# pquant's main job: builds the examples and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cmake --preset release -DPQUANT_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target quickstart
build/release/examples/quickstart
