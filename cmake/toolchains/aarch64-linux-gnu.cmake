# Cross build for 64-bit Arm Linux on a Debian (multiarch) host: Debian's g++-aarch64-linux-gnu,
# the :arm64 builds of Highway, oneTBB and GoogleTest (found under /usr/lib/aarch64-linux-gnu), and
# qemu-aarch64-static to run what is built. scripts/test-aarch64.sh installs all of it.
#   cmake -S . -B build/aarch64 --toolchain cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Multiarch: packages' CMake configs and libraries for arm64 live under lib/aarch64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Test binaries (and gtest_discover_tests' listing) run under user-mode qemu; the arm64 dynamic
# loader and libraries come from the multiarch :arm64 packages, so no -L sysroot is needed. The
# CPU model is chosen per test set (PQUANT_TEST_CPUS below) or through QEMU_CPU.
find_program(PQUANT_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(PQUANT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${PQUANT_QEMU_AARCH64}")
endif()

# The CPUs the tests run on, as name=qemu -cpu option: each test is registered once per entry (name
# appended to the test name; label aarch64-<name>). NEON only (Cortex-A72); SVE+SVE2 at 128 and 256
# bits, where Highway adds its SVE2_128 and SVE_256 targets, and at 2048 bits, the architecture's
# largest vector (the generic SVE and SVE2 code with 64 float lanes).
set(PQUANT_TEST_CPUS
  "neon=cortex-a72"
  "sve128=max,sve128=on"
  "sve256=max,sve256=on"
  "sve2048=max,sve2048=on"
  CACHE STRING "qemu CPU models the cross-built tests run on (name=cpu;...)")
