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
