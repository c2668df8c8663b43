# Conan build module of the pquant package, used only when the profile maps `onetbb` to a system
# package ([platform_requires]): CMakeDeps then generates nothing for oneTBB, so pquant::pquant
# would not link it. Find the system's TBB CMake package and link TBB::tbb.
if(NOT TARGET TBB::tbb)
  find_package(TBB CONFIG QUIET)
endif()
if(NOT TARGET TBB::tbb)
  message(FATAL_ERROR "pquant: the Conan profile says oneTBB is a system package ([platform_requires] "
                      "onetbb/...), but no CMake package `TBB` was found "
                      "(Debian: apt-get install libtbb-dev)")
endif()
# Once per pquant::pquant, however often find_package(pquant) runs in this directory.
get_target_property(_pquant_links pquant::pquant INTERFACE_LINK_LIBRARIES)
list(FIND _pquant_links TBB::tbb _pquant_at)  # (not IN_LIST: works under any consumer policy)
if(_pquant_at EQUAL -1)
  set_property(TARGET pquant::pquant APPEND PROPERTY INTERFACE_LINK_LIBRARIES TBB::tbb)
endif()
unset(_pquant_links)
unset(_pquant_at)
