# Conan build module of the pquant package, used only when the profile maps `nlohmann_json` to a
# system package ([platform_requires]): CMakeDeps then generates nothing for it, so pquant::pquant
# would not link it. Find the system's nlohmann_json CMake package and link its target.
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json 3 CONFIG QUIET)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  message(FATAL_ERROR "pquant: the Conan profile says nlohmann_json is a system package "
                      "([platform_requires] nlohmann_json/...), but no CMake package `nlohmann_json` "
                      "(version 3.x) was found (Debian: apt-get install nlohmann-json3-dev)")
endif()
# Once per pquant::pquant, however often find_package(pquant) runs in this directory.
get_target_property(_pquant_links pquant::pquant INTERFACE_LINK_LIBRARIES)
list(FIND _pquant_links nlohmann_json::nlohmann_json _pquant_at)  # (not IN_LIST: any consumer policy)
if(_pquant_at EQUAL -1)
  set_property(TARGET pquant::pquant APPEND PROPERTY INTERFACE_LINK_LIBRARIES nlohmann_json::nlohmann_json)
endif()
unset(_pquant_links)
unset(_pquant_at)
