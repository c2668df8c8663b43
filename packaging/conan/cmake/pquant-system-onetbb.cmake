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
set_property(TARGET pquant::pquant APPEND PROPERTY INTERFACE_LINK_LIBRARIES TBB::tbb)
