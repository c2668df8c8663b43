# Tests the vcpkg overlay port (ports/pquant) as far as possible without the vcpkg tool:
#  1. vcpkg.json is valid JSON with the fields vcpkg requires, the right name and version, and the
#     dependencies the portfile relies on; `usage` exists; the portfile calls the helpers we emulate.
#  2. The portfile's sequence with plain CMake: configure with the portfile's OPTIONS, install into a
#     packages folder, vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/pquant) (emulated: move the
#     config to share/pquant and apply its prefix correction), then copy the tree to another prefix,
#     delete the original and the build folder, and build and run consumers against the copy:
#     find_package(pquant) and pkg-config.
# The install tree must be relocatable: no absolute path of the build machine in any installed file
# (checked before the fixup, which would hide them), nothing under lib/, no debug/ tree.
#
# cmake -DPQUANT_SOURCE_DIR=... -DWORK_DIR=... -DCONSUMER_COMPILER=... -DCONSUMER_GENERATOR=... -P vcpkg_port.cmake
cmake_minimum_required(VERSION 3.21)
foreach(v PQUANT_SOURCE_DIR WORK_DIR CONSUMER_COMPILER CONSUMER_GENERATOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "vcpkg_port.cmake: -D${v}=... is required")
  endif()
endforeach()
set(port "${PQUANT_SOURCE_DIR}/ports/pquant")

function(fail)
  string(JOIN "" msg ${ARGN})
  message(FATAL_ERROR "vcpkg port: ${msg}")
endfunction()

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message("${out}${err}")
    fail("${step} failed (${rc})")
  endif()
  set(run_output "${out}${err}" PARENT_SCOPE)
endfunction()

# ---------------------------------------------------------------- 1. manifest, usage, portfile
file(READ "${PQUANT_SOURCE_DIR}/include/pquant/version.hpp" version_hpp)
if(NOT version_hpp MATCHES "kVersionString = \"([^\"]+)\"")
  fail("cannot read kVersionString from include/pquant/version.hpp")
endif()
set(project_version "${CMAKE_MATCH_1}")
# The version exists twice in the source (CMake's project() and version.hpp, which Conan's recipe
# reads); every package must carry the same one.
file(READ "${PQUANT_SOURCE_DIR}/CMakeLists.txt" top_cmake)
if(NOT top_cmake MATCHES "project\\(pquant[ \t\r\n]+VERSION[ \t]+([0-9.]+)")
  fail("cannot read project(pquant VERSION ...) from CMakeLists.txt")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL project_version)
  fail("CMakeLists.txt says version ${CMAKE_MATCH_1}, include/pquant/version.hpp says ${project_version}")
endif()

file(READ "${port}/vcpkg.json" manifest)
string(JSON type ERROR_VARIABLE err TYPE "${manifest}")
if(err OR NOT type STREQUAL "OBJECT")
  fail("vcpkg.json is not a JSON object: ${err}")
endif()

# Fields vcpkg accepts in a port manifest; an unknown one is an error for vcpkg.
set(known_fields name version version-semver version-date version-string port-version maintainers
  summary description homepage documentation license supports dependencies default-features
  features builtin-baseline overrides vcpkg-configuration "$schema")
string(JSON nfields LENGTH "${manifest}")
math(EXPR last "${nfields} - 1")
set(version_fields "")
foreach(i RANGE ${last})
  string(JSON key MEMBER "${manifest}" ${i})
  if(NOT key IN_LIST known_fields AND NOT key MATCHES "^\\$")
    fail("vcpkg.json has a field vcpkg does not know: '${key}'")
  endif()
  if(key MATCHES "^version")
    list(APPEND version_fields "${key}")
  endif()
endforeach()

string(JSON name ERROR_VARIABLE err GET "${manifest}" name)
if(err OR NOT name STREQUAL "pquant")
  fail("vcpkg.json: 'name' must be \"pquant\" (the port folder's name), got '${name}'")
endif()
list(LENGTH version_fields nversions)
if(NOT nversions EQUAL 1)
  fail("vcpkg.json needs exactly one of version/version-semver/version-date/version-string, "
       "got: ${version_fields}")
endif()
string(JSON version GET "${manifest}" ${version_fields})
if(NOT version STREQUAL project_version)
  fail("vcpkg.json ${version_fields} '${version}' differs from pquant's version ${project_version}")
endif()
string(JSON description ERROR_VARIABLE err GET "${manifest}" description)
if(err OR description STREQUAL "")
  fail("vcpkg.json: 'description' is required")
endif()

# dependencies: plain names or {"name": ..., "host": ...} objects.
string(JSON ndeps ERROR_VARIABLE err LENGTH "${manifest}" dependencies)
if(err)
  fail("vcpkg.json: 'dependencies' array is missing")
endif()
math(EXPR last "${ndeps} - 1")
set(deps "")
set(host_deps "")
foreach(i RANGE ${last})
  string(JSON dtype TYPE "${manifest}" dependencies ${i})
  if(dtype STREQUAL "STRING")
    string(JSON dname GET "${manifest}" dependencies ${i})
    list(APPEND deps "${dname}")
  else()
    string(JSON dname GET "${manifest}" dependencies ${i} name)
    string(JSON dhost ERROR_VARIABLE err GET "${manifest}" dependencies ${i} host)
    if(NOT err AND dhost)
      list(APPEND host_deps "${dname}")
    else()
      list(APPEND deps "${dname}")
    endif()
  endif()
endforeach()
foreach(d highway tbb nlohmann-json)
  if(NOT d IN_LIST deps)
    fail("vcpkg.json: dependency '${d}' is missing (have: ${deps})")
  endif()
endforeach()
foreach(d vcpkg-cmake vcpkg-cmake-config)
  if(NOT d IN_LIST host_deps)
    fail("vcpkg.json: the portfile uses ${d}; it must be a host dependency (have: ${host_deps})")
  endif()
endforeach()

if(NOT EXISTS "${port}/usage")
  fail("ports/pquant/usage is missing")
endif()
file(READ "${port}/usage" usage)
if(NOT usage MATCHES "find_package\\(pquant CONFIG REQUIRED\\)" OR NOT usage MATCHES "pquant::pquant")
  fail("usage must show find_package(pquant CONFIG REQUIRED) and pquant::pquant")
endif()

file(READ "${port}/portfile.cmake" portfile)
foreach(call vcpkg_cmake_configure vcpkg_cmake_install "vcpkg_cmake_config_fixup\\(CONFIG_PATH share/cmake/pquant\\)"
        vcpkg_fixup_pkgconfig "set\\(VCPKG_BUILD_TYPE release\\)")
  if(NOT portfile MATCHES "${call}")
    fail("portfile.cmake no longer calls ${call}: update this test to match it")
  endif()
endforeach()
# The portfile's configure OPTIONS, used verbatim below.
if(NOT portfile MATCHES "vcpkg_cmake_configure\\(([^)]*)\\)")
  fail("cannot find vcpkg_cmake_configure(...) in portfile.cmake")
endif()
string(REGEX MATCHALL "-D[A-Za-z0-9_]+=[^ \t\r\n)]+" port_options "${CMAKE_MATCH_1}")
message(STATUS "manifest ok: ${name} ${version}, deps ${deps}, host deps ${host_deps}")
message(STATUS "portfile configure options: ${port_options}")

# ---------------------------------------------------------------- 2. configure -> install
set(build "${WORK_DIR}/buildtree")
set(packages "${WORK_DIR}/packages/pquant_x64-linux")
set(installed "${WORK_DIR}/installed/x64-linux")
file(REMOVE_RECURSE "${WORK_DIR}")
# What vcpkg_cmake_configure adds for every port that matters here.
run(configure ${CMAKE_COMMAND} -S "${PQUANT_SOURCE_DIR}" -B "${build}" -G "${CONSUMER_GENERATOR}"
  -DCMAKE_CXX_COMPILER=${CONSUMER_COMPILER} -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_INSTALL_PREFIX=${packages}" -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_BINDIR=bin
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON -DCMAKE_EXPORT_NO_PACKAGE_REGISTRY=ON
  -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON ${port_options})
run(build ${CMAKE_COMMAND} --build "${build}" -j 2)
run(install ${CMAKE_COMMAND} --install "${build}")

# Relocatable before any fixup: no absolute path of this machine in what was installed.
file(GLOB_RECURSE installed_files LIST_DIRECTORIES false "${packages}/share/*")
foreach(f IN LISTS installed_files)
  file(READ "${f}" text)
  foreach(abs "${packages}" "${build}" "${PQUANT_SOURCE_DIR}" "${WORK_DIR}")
    string(FIND "${text}" "${abs}" at)
    if(NOT at EQUAL -1)
      fail("${f} contains the absolute path ${abs}: the install tree is not relocatable")
    endif()
  endforeach()
endforeach()
file(GLOB_RECURSE libfiles "${packages}/lib/*" "${packages}/lib64/*" "${packages}/bin/*")
if(libfiles OR EXISTS "${packages}/debug")
  fail("a header-only port installs nothing under lib/, bin/ or debug/: ${libfiles}")
endif()

# ---------------------------------------------------------------- vcpkg_cmake_config_fixup (emulated)
# CONFIG_PATH share/cmake/pquant: files move to share/pquant, the emptied share/cmake goes, and the
# prefix of every *.cmake is recomputed as two levels above share/pquant.
if(NOT EXISTS "${packages}/share/cmake/pquant/pquantConfig.cmake")
  fail("pquant no longer installs share/cmake/pquant/pquantConfig.cmake: update the portfile's CONFIG_PATH")
endif()
file(GLOB config_files "${packages}/share/cmake/pquant/*")
file(COPY ${config_files} DESTINATION "${packages}/share/pquant")
file(REMOVE_RECURSE "${packages}/share/cmake")
file(GLOB_RECURSE cmake_files "${packages}/share/pquant/*.cmake")
foreach(f IN LISTS cmake_files)
  file(READ "${f}" contents)
  string(REGEX REPLACE
[[get_filename_component\(_IMPORT_PREFIX "\${CMAKE_CURRENT_LIST_FILE}" PATH\)(
get_filename_component\(_IMPORT_PREFIX "\${_IMPORT_PREFIX}" PATH\))*]]
[[get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_FILE}" PATH)
get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)
get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)]]
    contents "${contents}")
  string(REGEX REPLACE
[[get_filename_component\(PACKAGE_PREFIX_DIR "\${CMAKE_CURRENT_LIST_DIR}/\.\./(\.\./)*" ABSOLUTE\)]]
[[get_filename_component(PACKAGE_PREFIX_DIR "${CMAKE_CURRENT_LIST_DIR}/../../" ABSOLUTE)]]
    contents "${contents}")
  file(WRITE "${f}" "${contents}")
endforeach()
file(COPY "${port}/usage" DESTINATION "${packages}/share/pquant")

# ---------------------------------------------------------------- relocate
# vcpkg copies the package into installed/<triplet>; the build folder and the packages folder go.
file(COPY "${packages}/" DESTINATION "${installed}")
file(REMOVE_RECURSE "${build}" "${WORK_DIR}/packages")
foreach(f include/pquant/pquant.hpp share/pquant/pquantConfig.cmake share/pquant/pquantConfigVersion.cmake
          share/pquant/usage share/pkgconfig/pquant.pc)
  if(NOT EXISTS "${installed}/${f}")
    fail("relocated tree lacks ${f}")
  endif()
endforeach()

# ---------------------------------------------------------------- consumers
# find_package, as the usage file tells.
set(consumer_src "${WORK_DIR}/consumer")
file(MAKE_DIRECTORY "${consumer_src}")
file(WRITE "${consumer_src}/CMakeLists.txt" [[
cmake_minimum_required(VERSION 3.21)
project(pquant_vcpkg_consumer LANGUAGES CXX)
find_package(pquant CONFIG REQUIRED)
message(STATUS "pquant found at ${pquant_DIR}, version ${pquant_VERSION}")
if(NOT TARGET nlohmann_json::nlohmann_json OR NOT TARGET hwy::hwy OR NOT TARGET TBB::tbb)
  message(FATAL_ERROR "find_package(pquant) did not bring hwy::hwy, TBB::tbb and nlohmann_json::nlohmann_json")
endif()
file(GLOB program "${PQUANT_SOURCE_DIR}/test_package/*.cpp")  # test_package's program
add_executable(consumer ${program})
target_link_libraries(consumer PRIVATE pquant::pquant)
]])
file(GLOB program "${PQUANT_SOURCE_DIR}/test_package/*.cpp")
run(consumer-configure ${CMAKE_COMMAND} -S "${consumer_src}" -B "${consumer_src}/build"
  -G "${CONSUMER_GENERATOR}" -DCMAKE_CXX_COMPILER=${CONSUMER_COMPILER} -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_PREFIX_PATH=${installed}" "-DPQUANT_SOURCE_DIR=${PQUANT_SOURCE_DIR}")
if(NOT run_output MATCHES "pquant found at ${installed}/share/pquant, version ${project_version}")
  message("${run_output}")
  fail("find_package(pquant) did not find the relocated ${installed}/share/pquant")
endif()
run(consumer-build ${CMAKE_COMMAND} --build "${consumer_src}/build" -j 2)
run(consumer-run "${consumer_src}/build/consumer")
message(STATUS "find_package consumer: ${run_output}")

# pkg-config, from the relocated tree (pquant.pc requires libhwy, tbb and nlohmann_json from the system).
find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  set(ENV{PKG_CONFIG_PATH} "${installed}/share/pkgconfig")
  run(pkg-config ${PKG_CONFIG} --cflags --libs pquant)
  string(STRIP "${run_output}" flags)
  if(NOT flags MATCHES "-I${installed}/share/pkgconfig/../../include" AND NOT flags MATCHES "-I${installed}/include")
    fail("pkg-config --cflags does not point into the relocated tree: ${flags}")
  endif()
  separate_arguments(flag_list UNIX_COMMAND "${flags}")
  # Static dispatch here (kernels inline for the compiler's target, no dispatch file): the other
  # documented way to build, and one compile of the per-target kernels fewer.
  run(pkg-config-build ${CONSUMER_COMPILER} -O1 -DPQUANT_STATIC_DISPATCH -o "${consumer_src}/consumer_pc"
    "${PQUANT_SOURCE_DIR}/test_package/test_package.cpp" ${flag_list})
  run(pkg-config-run "${consumer_src}/consumer_pc")
  message(STATUS "pkg-config consumer (${flags}): ${run_output}")
else()
  message(STATUS "pkg-config not installed: pkg-config consumer not built")
endif()
message(STATUS "vcpkg port: manifest valid; configure -> install -> fixup -> relocate -> consumers passed")
