// A consumer of the Conan package. It proves the package's usage requirements: pquant's headers
// (pack and read back a 1-bit matrix), Highway's runtime library (target detection, libhwy) and
// oneTBB (a parallel reduction) are all found, compiled and linked through pquant::pquant alone.
#include <pquant/pquant.hpp>

#include <hwy/targets.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_reduce.h>

#include <cstdint>
#include <cstdio>
#include <functional>

int main() {
  // 1-bit weights with one scale per row: code 1 is +1, code 0 is -1.
  pquant::PackedMatrix<pquant::SignBit, pquant::PerRow> w(3, 13);
  for (std::size_t r = 0; r < w.rows(); ++r) {
    w.params()[r] = 0.5f * static_cast<float>(r + 1);
    for (std::size_t c = 0; c < w.cols(); ++c) w.set_code(r, c, (r + c) % 2);
  }
  int bad = 0;
  for (std::size_t r = 0; r < w.rows(); ++r) {
    for (std::size_t c = 0; c < w.cols(); ++c) {
      const float expected = ((r + c) % 2 ? 1.0f : -1.0f) * 0.5f * static_cast<float>(r + 1);
      if (w.dequantized(r, c) != expected) ++bad;
    }
  }

  // Highway's runtime target detection lives in libhwy: this links only if the package links it.
  const std::int64_t targets = hwy::SupportedTargets();
  if (targets == 0) ++bad;

  // oneTBB: a parallel sum of 0..9999 (= 49995000).
  const long long sum = tbb::parallel_reduce(
      tbb::blocked_range<long long>(0, 10000), 0LL,
      [](const tbb::blocked_range<long long>& r, long long acc) {
        for (long long i = r.begin(); i != r.end(); ++i) acc += i;
        return acc;
      },
      std::plus<long long>());
  if (sum != 49995000LL) ++bad;

  std::printf("test_package: pquant %s, packed 3x13 1-bit matrix %s, Highway targets 0x%llx, "
              "TBB sum %lld\n",
              pquant::kVersionString, bad ? "WRONG" : "ok",
              static_cast<unsigned long long>(targets), sum);
  return bad == 0 ? 0 : 1;
}
