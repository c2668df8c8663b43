# Local stand-in for ConanCenter's `highway` that wraps the system's Highway (Debian: libhwy-dev)
# instead of building it. It declares the same CMake names as ConanCenter's recipe (file `highway`,
# component target `highway::hwy`), so pquant's recipe and its consumers are exercised through
# CMakeDeps exactly as with a real ConanCenter package, offline. For testing only:
#   conan create packaging/conan/recipes/highway --version 1.0.3
from conan import ConanFile


class HighwaySystemConan(ConanFile):
    name = "highway"
    description = "Google Highway from the system, under ConanCenter's CMake names (test stand-in)"
    package_type = "shared-library"
    settings = "os", "arch", "compiler", "build_type"

    def package_id(self):
        self.info.clear()

    def package_info(self):
        # Headers and libraries are in the compiler's default search paths.
        hwy = self.cpp_info.components["hwy"]
        hwy.includedirs, hwy.libdirs, hwy.bindirs = [], [], []
        hwy.system_libs = ["hwy"]
        hwy.defines = ["HWY_SHARED_DEFINE"]  # a shared libhwy, as Debian ships it
        hwy.set_property("pkg_config_name", "libhwy")
        contrib = self.cpp_info.components["hwy_contrib"]
        contrib.includedirs, contrib.libdirs, contrib.bindirs = [], [], []
        contrib.system_libs = ["hwy_contrib"]
        contrib.requires = ["hwy"]
        contrib.set_property("pkg_config_name", "libhwy-contrib")
