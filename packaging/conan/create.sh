#!/usr/bin/env bash
# Runs `conan create` on pquant's recipe offline, against the system's Highway, oneTBB and
# nlohmann-json, and
# checks what the recipe promises. Called by the ctest test `packaging.conan_create`.
#
# Usage: packaging/conan/create.sh [WORK_DIR] [ROUTE ...]
#   WORK_DIR  scratch folder (default: build/packaging/conan); holds the Conan cache (CONAN_HOME),
#             a venv with Conan if none is installed, and a copy of the recipe's sources, so
#             nothing is written to ~/.conan2 or into the source tree.
#   ROUTE     platform: profiles/offline, [platform_requires] maps highway/onetbb/nlohmann_json to
#                       the system packages; pquant's build modules find hwy::hwy, TBB::tbb and
#                       nlohmann_json::nlohmann_json.
#             wrappers: profiles/offline-wrappers, highway/onetbb/nlohmann_json are the local stand-in recipes
#                       in recipes/ with ConanCenter's CMake names, consumed through CMakeDeps.
#             Default: both.
# Environment: CXX picks the compiler (default: the system's c++); PQUANT_CONAN a Conan 2 to use;
# PQUANT_CMAKE the cmake to use (default: cmake on PATH).
# Exit status: 0 pass, 77 Conan is missing and cannot be installed (no python3 with venv or pip),
# anything else a failure.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$src/build/packaging/conan}
shift || true
routes=("$@")
[ ${#routes[@]} -gt 0 ] || routes=(platform wrappers)
mkdir -p "$work"
work=$(cd "$work" && pwd)
log() { echo "pquant conan: $*"; }

# A private Conan cache for this run only. Set before the first conan command: even
# `conan --version` creates the cache folder it points to (~/.conan2 by default).
export CONAN_HOME=$work/home
rm -rf "$CONAN_HOME"

# --- Conan 2: PQUANT_CONAN, then one on PATH, then a venv in WORK_DIR (installed from PyPI once).
is_conan2() { "$1" --version 2>/dev/null | grep -Eq 'version 2\.'; }
conan=""
if [ -n "${PQUANT_CONAN:-}" ]; then
  is_conan2 "$PQUANT_CONAN" || { echo "PQUANT_CONAN=$PQUANT_CONAN is not Conan 2" >&2; exit 1; }
  conan=$PQUANT_CONAN
elif command -v conan >/dev/null && is_conan2 conan; then
  conan=$(command -v conan)
elif [ -x "$work/venv/bin/conan" ] && is_conan2 "$work/venv/bin/conan"; then
  conan=$work/venv/bin/conan
else
  if ! command -v python3 >/dev/null; then
    echo "pquant conan: SKIPPED: Conan 2 is not installed and there is no python3 to install it" >&2
    exit 77
  fi
  log "installing Conan 2 from PyPI into $work/venv"
  rm -rf "$work/venv"
  if ! python3 -m venv "$work/venv" >/dev/null 2>&1; then
    echo "pquant conan: SKIPPED: Conan 2 is not installed and python3 cannot create a venv to install" \
         "it in (Debian: apt-get install python3-venv; or pip install conan)" >&2
    exit 77
  fi
  # PyPI is part of the build's contract (like Debian's archive): failing to reach it is a failure.
  "$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "conan>=2,<3" ||
    { echo "pquant conan: FAILED to install Conan 2 from PyPI with pip (is PyPI reachable?)" >&2; exit 1; }
  conan=$work/venv/bin/conan
fi
log "using $("$conan" --version) ($conan)"

# --- The default profile of the private cache: this machine's compiler (CXX) and settings.
"$conan" profile detect >/dev/null 2>&1
"$conan" remote disable "*" >/dev/null 2>&1 || true   # offline: never ask ConanCenter

# --- The recipe's sources, copied so that test_package's build folder stays out of the tree.
stage=$work/src
rm -rf "$stage"
mkdir -p "$stage/packaging"
cp -R "$src/conanfile.py" "$src/include" "$src/test_package" "$stage/"
cp -R "$src/packaging/conan" "$stage/packaging/"
for f in "$src"/LICENSE*; do [ -e "$f" ] && cp "$f" "$stage/"; done
rm -rf "$stage/test_package/build" "$stage/test_package/CMakeUserPresets.json"

# --- The system's versions, as the profiles' [platform_requires] and the stand-ins declare them.
modversion() { pkg-config --modversion "$1" 2>/dev/null || echo "$2"; }
export PQUANT_HWY_VERSION=${PQUANT_HWY_VERSION:-$(modversion libhwy 1.0.3)}
export PQUANT_TBB_VERSION=${PQUANT_TBB_VERSION:-$(modversion tbb 2021.8.0)}
export PQUANT_JSON_VERSION=${PQUANT_JSON_VERSION:-$(modversion nlohmann_json 3.11.2)}
log "system Highway $PQUANT_HWY_VERSION, oneTBB $PQUANT_TBB_VERSION, nlohmann-json $PQUANT_JSON_VERSION"

# pquant's own CMakeLists (add_subdirectory) and its installed config, with Highway, oneTBB and
# nlohmann-json from Conan's CMakeDeps under ConanCenter's names (`highway`, `TBB`, `nlohmann_json`)
# and Debian's `hwy` hidden: cmake/pquantDependencies.cmake must accept Highway as `highway` too.
cmake_with_conan_deps() {
  local deps=$work/deps cmake=${PQUANT_CMAKE:-cmake} step
  log "[wrappers] pquant's CMakeLists and installed config with Conan's 'highway', 'TBB' and 'nlohmann_json' packages"
  rm -rf "$deps" "$work/cd-sub" "$work/cd-prefix" "$work/cd-find"
  "$conan" install --requires="highway/$PQUANT_HWY_VERSION" --requires="onetbb/$PQUANT_TBB_VERSION" \
    --requires="nlohmann_json/$PQUANT_JSON_VERSION" -pr:a "$profile" -g CMakeDeps -g CMakeToolchain --output-folder "$deps" "${common[@]}" \
    >"$work/deps.log" 2>&1 || { cat "$work/deps.log"; exit 1; }
  local args=(-G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_TOOLCHAIN_FILE=$deps/conan_toolchain.cmake"
              -DCMAKE_DISABLE_FIND_PACKAGE_hwy=ON "-DPQUANT_SOURCE_DIR=$src" "-DCONAN_DEPS_DIR=$deps")
  for step in add_subdirectory find_package; do
    local bin=$work/cd-$([ $step = add_subdirectory ] && echo sub || echo find) o=$work/cd-$step.log
    { "$cmake" -S "$src/tests/packaging/conan_deps" -B "$bin" "${args[@]}" -DPQUANT_CONSUMER_MODE=$step \
        "-DPQUANT_PREFIX=$work/cd-prefix" &&
      "$cmake" --build "$bin" -j 2 && "$bin/consumer"; } >"$o" 2>&1 ||
      { cat "$o"; echo "pquant conan: [wrappers] $step consumer with Conan's highway FAILED" >&2; exit 1; }
    grep -E "pquant \($step\): (Highway|nlohmann_json) from |^test_package: " "$o"
    # The add_subdirectory build also installs pquant: the prefix the find_package consumer uses.
    if [ $step = add_subdirectory ]; then
      "$cmake" --install "$bin" --prefix "$work/cd-prefix" >>"$o" 2>&1 || { cat "$o"; exit 1; }
    fi
  done
}

version=$(sed -n 's/.*kVersionString = "\([^"]*\)".*/\1/p' "$src/include/pquant/version.hpp")
common=(-nr -c tools.build:jobs=2 -c tools.cmake.cmaketoolchain:generator="Unix Makefiles")

for route in "${routes[@]}"; do
  case "$route" in
    platform) profile=$stage/packaging/conan/profiles/offline ;;
    wrappers)
      profile=$stage/packaging/conan/profiles/offline-wrappers
      log "[wrappers] creating the stand-in highway/$PQUANT_HWY_VERSION, onetbb/$PQUANT_TBB_VERSION" \
          "and nlohmann_json/$PQUANT_JSON_VERSION"
      "$conan" create "$stage/packaging/conan/recipes/highway" --version "$PQUANT_HWY_VERSION" "${common[@]}" \
        -pr:a "$profile" >"$work/wrappers-highway.log" 2>&1 || { cat "$work/wrappers-highway.log"; exit 1; }
      "$conan" create "$stage/packaging/conan/recipes/onetbb" --version "$PQUANT_TBB_VERSION" "${common[@]}" \
        -pr:a "$profile" >"$work/wrappers-onetbb.log" 2>&1 || { cat "$work/wrappers-onetbb.log"; exit 1; }
      "$conan" create "$stage/packaging/conan/recipes/nlohmann_json" --version "$PQUANT_JSON_VERSION" "${common[@]}" \
        -pr:a "$profile" >"$work/wrappers-nlohmann_json.log" 2>&1 ||
        { cat "$work/wrappers-nlohmann_json.log"; exit 1; }
      ;;
    *) echo "unknown route '$route' (platform|wrappers)" >&2; exit 2 ;;
  esac

  log "[$route] conan create (profile $(basename "$profile"))"
  out=$work/create-$route.log
  if ! "$conan" create "$stage" -pr:a "$profile" "${common[@]}" >"$out" 2>&1; then
    cat "$out"
    echo "pquant conan: [$route] conan create FAILED" >&2
    exit 1
  fi
  grep -E '^test_package: ' "$out"
  grep -q "^test_package: .*: ok$" "$out" || { cat "$out"; echo "no passing test_package line" >&2; exit 1; }
  # With [platform_requires] CMakeDeps generates nothing for the dependencies: the build modules
  # must have been used. With packaged dependencies they must not.
  if [ "$route" = platform ]; then
    grep -q "Including build module from .*pquant-system-highway.cmake" "$out" &&
      grep -q "Including build module from .*pquant-system-onetbb.cmake" "$out" &&
      grep -q "Including build module from .*pquant-system-nlohmann_json.cmake" "$out" ||
      { cat "$out"; echo "platform route: pquant's build modules were not included" >&2; exit 1; }
  else
    ! grep -q "Including build module from .*pquant-system-" "$out" ||
      { cat "$out"; echo "wrappers route: build modules included for packaged dependencies" >&2; exit 1; }
    grep -q "Component target declared 'highway::hwy'" "$out" ||
      { cat "$out"; echo "wrappers route: highway::hwy did not come from CMakeDeps" >&2; exit 1; }
    grep -q "Target declared 'nlohmann_json::nlohmann_json'" "$out" ||
      { cat "$out"; echo "wrappers route: nlohmann_json::nlohmann_json did not come from CMakeDeps" >&2; exit 1; }
    cmake_with_conan_deps
  fi
done

# (The installs below write their generator scripts into --output-folder, not the current folder.)
# --- Header-only: package_id is cleared, so one binary serves every configuration.
pkgs=$("$conan" list "pquant/$version:*" 2>/dev/null | grep -oE '\b[0-9a-f]{40}\b' | sort -u | tr '\n' ' ')
pkgs=${pkgs% }
log "package ids: $pkgs"
[ "$pkgs" = "da39a3ee5e6b4b0d3255bfef95601890afd80709" ] ||
  { echo "expected the single empty-info package id (package_id cleared), got: $pkgs" >&2; exit 1; }

# The same binary is found for another configuration (Debug, clang's settings) without building.
if ! "$conan" install --requires="pquant/$version" -pr:a "$stage/packaging/conan/profiles/offline" \
     -s build_type=Debug -s compiler=clang -s compiler.version=14 -s compiler.libcxx=libstdc++11 -s compiler.cppstd=20 \
     --build=never --output-folder "$work/other-config" "${common[@]}" >"$work/other-config.log" 2>&1; then
  cat "$work/other-config.log"; echo "no reusable pquant binary for a Debug/clang configuration" >&2; exit 1
fi
log "Debug/clang configuration reuses the same package: ok"

# --- C++20 is validated: a C++17 consumer is refused with a clear reason.
if "$conan" install --requires="pquant/$version" -pr:a "$stage/packaging/conan/profiles/offline" \
     -s compiler.cppstd=17 --output-folder "$work/cppstd17" "${common[@]}" >"$work/cppstd17.log" 2>&1; then
  cat "$work/cppstd17.log"; echo "a C++17 consumer was accepted" >&2; exit 1
fi
reason=$(grep -m1 "pquant/$version: Invalid: .*(20)" "$work/cppstd17.log") ||
  { cat "$work/cppstd17.log"; echo "C++17 refusal does not say why" >&2; exit 1; }
log "C++17 consumer refused: $reason"
log "all checks passed (${routes[*]})"
