# vcpkg overlay port for pquant, built from this source checkout:
#   vcpkg install pquant --overlay-ports=<pquant>/ports
# (manifest mode: list "pquant" in your vcpkg.json and pass --overlay-ports, or set
# VCPKG_OVERLAY_PORTS). For a registry, replace SOURCE_PATH with vcpkg_from_github(...).
#
# Header-only: one release configure and install, no debug tree, nothing under lib/.
# tests/packaging/vcpkg_port.cmake performs the same configure -> install -> fixup -> relocate ->
# find_package sequence with plain CMake, since the vcpkg tool itself is not available in CI.
set(VCPKG_BUILD_TYPE release)
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DPQUANT_BUILD_TESTS=OFF
        -DPQUANT_BUILD_EXAMPLES=OFF
        -DPQUANT_BUILD_BENCHMARKS=OFF
)
vcpkg_cmake_install()
# pquant installs its config to share/cmake/pquant; vcpkg wants it in share/pquant.
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/pquant)
vcpkg_fixup_pkgconfig()

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
