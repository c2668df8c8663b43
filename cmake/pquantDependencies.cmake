# Finds pquant's dependencies for both the build tree and installed packages.
# Highway's CMake package is `hwy` (target hwy::hwy) from Debian, vcpkg and Highway's own install,
# but `highway` (target highway::highway) from ConanCenter: accept either and always expose hwy::hwy.
include(CMakeFindDependencyMacro)

if(NOT TARGET hwy::hwy)
  find_package(hwy CONFIG QUIET)
  if(NOT hwy_FOUND)
    find_package(highway CONFIG QUIET)
    if(TARGET highway::highway)
      add_library(hwy::hwy INTERFACE IMPORTED)
      set_target_properties(hwy::hwy PROPERTIES INTERFACE_LINK_LIBRARIES highway::highway)
    endif()
  endif()
  if(NOT TARGET hwy::hwy)
    message(FATAL_ERROR "pquant needs Google Highway: no CMake package `hwy` or `highway` was found "
                        "(Debian: apt-get install libhwy-dev)")
  endif()
endif()

if(NOT TARGET TBB::tbb)
  find_dependency(TBB CONFIG)
endif()

# nlohmann-json (header-only): CMake package `nlohmann_json`, target nlohmann_json::nlohmann_json from
# Debian, vcpkg, ConanCenter and its own install alike.
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json 3 CONFIG QUIET)
  if(NOT TARGET nlohmann_json::nlohmann_json)
    message(FATAL_ERROR "pquant needs nlohmann-json >= 3: no CMake package `nlohmann_json` (version 3.x) "
                        "was found (Debian: apt-get install nlohmann-json3-dev)")
  endif()
endif()
