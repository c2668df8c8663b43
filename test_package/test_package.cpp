// A consumer of the pquant package (Conan's test_package; the vcpkg and pkg-config tests build it
// too). It checks the package's usage requirements for real: pquant's headers (quantize a weight
// matrix with SignAbsMean and INT8 activations with Int8AbsMaxPerToken, checked against a plain
// recomputation here), Highway's runtime library (libhwy) and oneTBB, all through pquant::pquant.
#include <pquant/pquant.hpp>
#include <pquant/quantizers.hpp>

#include <hwy/targets.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_reduce.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

namespace {

constexpr std::size_t kRows = 5, kCols = 37;  // not a multiple of 8: exercises partial bytes

float weight(std::size_t r, std::size_t c) {  // a deterministic, sign-mixed pattern
  return std::sin(0.7f * static_cast<float>(r * kCols + c) + 0.3f) * static_cast<float>(r + 1);
}

// SignAbsMean<PerRow>: per row, lambda = mean|w|, code = +1 where w >= mean(w), else -1.
int check_sign_absmean(const std::vector<float>& w) {
  const auto q = pquant::SignAbsMean<pquant::PerRow>::quantize(
      pquant::MatrixView<const float>(w.data(), kRows, kCols));
  int bad = 0;
  for (std::size_t r = 0; r < kRows; ++r) {
    double sum = 0, abs_sum = 0;
    for (std::size_t c = 0; c < kCols; ++c) sum += w[r * kCols + c], abs_sum += std::fabs(w[r * kCols + c]);
    const float mu = static_cast<float>(sum / kCols), lambda = static_cast<float>(abs_sum / kCols);
    for (std::size_t c = 0; c < kCols; ++c) {
      const float expected = w[r * kCols + c] >= mu ? lambda : -lambda;
      if (q.dequantized(r, c) != expected) ++bad;
    }
  }
  return bad;
}

// Int8AbsMaxPerToken: gain = 127 / max|x|, q = nearbyint(x * gain).
int check_int8_activations(const std::vector<float>& x) {
  std::vector<std::int8_t> q(kCols);
  float gain = 0;
  pquant::Int8AbsMaxPerToken::quantize(pquant::MatrixView<const float>(x.data(), 1, kCols),
                                       pquant::MatrixView<std::int8_t>(q.data(), 1, kCols),
                                       std::span<float>(&gain, 1));
  float absmax = 0;
  for (float v : x) absmax = std::fmax(absmax, std::fabs(v));
  int bad = gain == 127.0f / absmax ? 0 : 1;
  for (std::size_t i = 0; i < kCols; ++i)
    if (q[i] != static_cast<std::int8_t>(std::nearbyint(x[i] * gain))) ++bad;
  return bad;
}

}  // namespace

int main() {
  std::vector<float> w(kRows * kCols), x(kCols);
  for (std::size_t r = 0; r < kRows; ++r)
    for (std::size_t c = 0; c < kCols; ++c) w[r * kCols + c] = weight(r, c);
  for (std::size_t c = 0; c < kCols; ++c) x[c] = std::cos(0.37f * static_cast<float>(c)) * 2.5f;

  const int bad_w = check_sign_absmean(w);
  const int bad_x = check_int8_activations(x);

  // Highway's runtime target detection lives in libhwy: this links only if the package links it.
  const std::int64_t targets = hwy::SupportedTargets();

  // oneTBB: a parallel sum of 0..9999 (= 49995000).
  const long long sum = tbb::parallel_reduce(
      tbb::blocked_range<long long>(0, 10000), 0LL,
      [](const tbb::blocked_range<long long>& r, long long acc) {
        for (long long i = r.begin(); i != r.end(); ++i) acc += i;
        return acc;
      },
      std::plus<long long>());

  const bool ok = bad_w == 0 && bad_x == 0 && targets != 0 && sum == 49995000LL;
  std::printf("test_package: pquant %s: SignAbsMean %s, INT8 activations %s, Highway targets 0x%llx, "
              "TBB sum %lld: %s\n",
              pquant::kVersionString, bad_w ? "WRONG" : "ok", bad_x ? "WRONG" : "ok",
              static_cast<unsigned long long>(targets), sum, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
