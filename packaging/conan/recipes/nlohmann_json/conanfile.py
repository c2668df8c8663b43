# Local stand-in for ConanCenter's `nlohmann_json` that wraps the system's header-only nlohmann-json
# (Debian: nlohmann-json3-dev) instead of packaging its headers. It declares the same CMake names as
# ConanCenter's recipe (file `nlohmann_json`, target `nlohmann_json::nlohmann_json`), so pquant's
# recipe and its consumers are exercised through CMakeDeps exactly as with a real ConanCenter
# package, offline. For testing only:
#   conan create packaging/conan/recipes/nlohmann_json --version 3.11.2
from conan import ConanFile


class NlohmannJsonSystemConan(ConanFile):
    name = "nlohmann_json"
    description = "nlohmann-json from the system, under ConanCenter's CMake names (test stand-in)"
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"

    def package_id(self):
        self.info.clear()

    def package_info(self):
        # The headers are in the compiler's default search path (/usr/include/nlohmann).
        self.cpp_info.includedirs, self.cpp_info.libdirs, self.cpp_info.bindirs = [], [], []
        self.cpp_info.set_property("cmake_file_name", "nlohmann_json")
        self.cpp_info.set_property("cmake_target_name", "nlohmann_json::nlohmann_json")
        self.cpp_info.set_property("pkg_config_name", "nlohmann_json")
