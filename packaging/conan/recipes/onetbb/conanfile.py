# Local stand-in for ConanCenter's `onetbb` that wraps the system's oneTBB (Debian: libtbb-dev)
# instead of building it. It declares the same CMake names as ConanCenter's recipe (file `TBB`,
# component `libtbb` with target `TBB::tbb`), so pquant's recipe and its consumers are exercised
# through CMakeDeps exactly as with a real ConanCenter package, offline. For testing only:
#   conan create packaging/conan/recipes/onetbb --version 2021.8.0
from conan import ConanFile


class OnetbbSystemConan(ConanFile):
    name = "onetbb"
    description = "oneTBB from the system, under ConanCenter's CMake names (test stand-in)"
    package_type = "shared-library"
    settings = "os", "arch", "compiler", "build_type"

    def package_id(self):
        self.info.clear()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "TBB")
        self.cpp_info.set_property("pkg_config_name", "tbb")
        tbb = self.cpp_info.components["libtbb"]
        tbb.set_property("cmake_target_name", "TBB::tbb")
        tbb.includedirs, tbb.libdirs, tbb.bindirs = [], [], []
        tbb.system_libs = ["tbb"]
        if self.settings.os in ("Linux", "FreeBSD"):
            tbb.system_libs += ["dl", "rt", "pthread"]
