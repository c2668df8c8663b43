# Conan build module of the pquant package, used only when the profile maps `highway` to a system
# package ([platform_requires]): CMakeDeps then generates nothing for Highway, so pquant::pquant
# would not link it. Find the system's Highway CMake package (`hwy`, as Debian, vcpkg and Highway
# itself install it, or `highway`) and link it.
if(NOT TARGET hwy::hwy)
  find_package(hwy CONFIG QUIET)
  if(NOT TARGET hwy::hwy)
    find_package(highway CONFIG QUIET)
    if(TARGET highway::highway)
      add_library(hwy::hwy INTERFACE IMPORTED)
      set_target_properties(hwy::hwy PROPERTIES INTERFACE_LINK_LIBRARIES highway::highway)
    endif()
  endif()
endif()
if(NOT TARGET hwy::hwy)
  message(FATAL_ERROR "pquant: the Conan profile says Highway is a system package ([platform_requires] "
                      "highway/...), but no CMake package `hwy` or `highway` was found "
                      "(Debian: apt-get install libhwy-dev)")
endif()
# Once per pquant::pquant, however often find_package(pquant) runs in this directory.
get_target_property(_pquant_links pquant::pquant INTERFACE_LINK_LIBRARIES)
list(FIND _pquant_links hwy::hwy _pquant_at)  # (not IN_LIST: works under any consumer policy)
if(_pquant_at EQUAL -1)
  set_property(TARGET pquant::pquant APPEND PROPERTY INTERFACE_LINK_LIBRARIES hwy::hwy)
endif()
unset(_pquant_links)
unset(_pquant_at)
