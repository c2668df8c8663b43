# Conan 2 recipe for pquant, a header-only C++20 library.
#
#   conan create . -pr:a packaging/conan/profiles/offline  # offline: Debian's libhwy-dev/libtbb-dev/nlohmann-json3-dev
#   conan create . -s compiler.cppstd=20 --build=missing   # ConanCenter's highway, onetbb and nlohmann_json
#
# Consumers get the CMake package `pquant` with target `pquant::pquant` (CMakeDeps) and the pkg-config
# module `pquant` (PkgConfigDeps). The target links Highway, oneTBB and nlohmann-json; runtime SIMD
# dispatch is set up in the consumer (see docs/using.md).
import os
import re

from conan import ConanFile
from conan.errors import ConanException
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0.5"


class PquantConan(ConanFile):
    name = "pquant"
    license = "MIT"
    description = ("Header-only C++20 library for extremely low-bit language models "
                   "(pQuant, BitNet, BitNet b1.58)")
    topics = ("quantization", "llm", "bitnet", "simd", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    # The public headers make the package, plus three CMake build modules used only when a profile maps
    # a dependency to a system package (see package_info); tests, docs and build files are not needed.
    exports_sources = "include/*", "LICENSE*", "packaging/conan/cmake/*.cmake"
    no_copy_source = True

    def set_version(self):
        # One source of truth for the version: include/pquant/version.hpp.
        if self.version:
            return
        text = load(self, os.path.join(self.recipe_folder, "include", "pquant", "version.hpp"))
        m = re.search(r'kVersionString\s*=\s*"([^"]+)"', text)
        if not m:
            raise ConanException("pquant: cannot read kVersionString from include/pquant/version.hpp")
        self.version = m.group(1)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Public headers include Highway and oneTBB headers, and consumers link their libraries
        # (libhwy carries the runtime target detection), so both are transitive.
        self.requires("highway/[>=1.0.3 <2]", transitive_headers=True, transitive_libs=True)
        self.requires("onetbb/[>=2021.5 <2024]", transitive_headers=True, transitive_libs=True)
        # io/ and inference/ headers include <nlohmann/json.hpp> (header-only).
        self.requires("nlohmann_json/[>=3.10 <4]", transitive_headers=True)

    def package_id(self):
        # Header-only: one package for every configuration.
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)

    def package(self):
        copy(self, "*", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))
        copy(self, "LICENSE*", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*.cmake", src=os.path.join(self.source_folder, "packaging", "conan", "cmake"),
             dst=os.path.join(self.package_folder, self._modules_dir))

    @property
    def _modules_dir(self):
        return os.path.join("share", "pquant", "conan")

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "pquant")
        self.cpp_info.set_property("cmake_target_name", "pquant::pquant")
        self.cpp_info.set_property("pkg_config_name", "pquant")
        # ConanCenter's components: highway::hwy (the runtime library) and onetbb::libtbb (TBB::tbb);
        # nlohmann_json has no components (target nlohmann_json::nlohmann_json).
        self.cpp_info.requires = ["highway::hwy", "onetbb::libtbb", "nlohmann_json::nlohmann_json"]
        # A dependency given by [platform_requires] has no package and CMakeDeps generates nothing
        # for it (no find_dependency, no link). For those, a build module finds the system's CMake
        # package (Debian: hwy::hwy, TBB::tbb, nlohmann_json::nlohmann_json) and links it to pquant::pquant.
        # (self.dependencies lists platform requirements; its host/direct views leave them out.)
        required = {r.ref.name for r, _ in self.dependencies.items() if not r.build}
        packaged = {r.ref.name for r, _ in self.dependencies.host.items()}
        modules = [os.path.join(self._modules_dir, f"pquant-system-{dep}.cmake")
                   for dep in ("highway", "onetbb", "nlohmann_json") if dep in required and dep not in packaged]
        self.cpp_info.set_property("cmake_build_modules", modules)
