// A consumer of the pquant package (Conan's test_package; the vcpkg, FetchContent and pkg-config
// tests build it too). It uses the package the way docs/using.md tells users to: the headers, and
// runtime SIMD dispatch set up by pquant_dispatch.cpp. It checks, against a plain recomputation
// here: quantizing a weight matrix (SignAbsMean, per row) and activations (Int8AbsMaxPerToken), and
// the 1-bit GEMV (gemv_w1a8) on every SIMD target the CPU supports; plus oneTBB, all through
// pquant::pquant alone.
#include <pquant/kernels.hpp>
#include <pquant/pquant.hpp>
#include <pquant/quantizers.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_reduce.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <functional>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kRows = 40, kCols = 75;  // two LUT row tiles, a partial byte and group

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
    for (std::size_t c = 0; c < kCols; ++c)
      sum += w[r * kCols + c], abs_sum += std::fabs(w[r * kCols + c]);
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

// y = gemv_w1a8(Q(x), W1) on every available target vs. the integer product computed here:
// y[n] = fma(float(sum_k sign_nk * q_k), lambda_n / g, 0) (docs/kernels.md's epilogue).
int check_gemv(const std::vector<float>& w, const std::vector<float>& x, std::string& targets) {
  namespace k = pquant::kernels;
  const auto packed = pquant::SignAbsMean<pquant::PerRow>::quantize(
      pquant::MatrixView<const float>(w.data(), kRows, kCols));
  const k::SignWeights weights = k::pack_lut(packed.view());
  std::vector<std::int8_t> q(kCols);
  float gain = 0;
  pquant::Int8AbsMaxPerToken::quantize(pquant::MatrixView<const float>(x.data(), 1, kCols),
                                       pquant::MatrixView<std::int8_t>(q.data(), 1, kCols),
                                       std::span<float>(&gain, 1));
  const float token_scale = 1.0f / gain;
  std::vector<float> expected(kRows);
  for (std::size_t n = 0; n < kRows; ++n) {
    std::int32_t acc = 0;
    for (std::size_t c = 0; c < kCols; ++c) acc += (packed.code(n, c) ? 1 : -1) * q[c];
    expected[n] = std::fma(static_cast<float>(acc), packed.params()[n] * token_scale, 0.0f);
  }
  int bad = 0;
  for (const std::int64_t target : k::available_targets()) {
    k::force_target(target);
    std::vector<float> y(kRows, -1.0f);
    k::gemv_w1a8(q, weights, k::GemvEpilogue{packed.params(), token_scale, {}}, y);
    int wrong = 0;
    for (std::size_t n = 0; n < kRows; ++n)
      if (!(std::fabs(y[n] - expected[n]) <= 1e-5f * std::fmax(1.0f, std::fabs(expected[n]))))
        ++wrong;
    targets += (targets.empty() ? "" : " ") + k::target_name(target) + (wrong ? "(WRONG)" : "");
    bad += wrong;
  }
  k::force_target(0);
  if (targets.empty()) ++bad;  // no kernel target at all: the dispatch unit is missing
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
  std::string targets;
  const int bad_gemv = check_gemv(w, x, targets);

  // oneTBB: a parallel sum of 0..9999 (= 49995000).
  const long long sum = tbb::parallel_reduce(
      tbb::blocked_range<long long>(0, 10000), 0LL,
      [](const tbb::blocked_range<long long>& r, long long acc) {
        for (long long i = r.begin(); i != r.end(); ++i) acc += i;
        return acc;
      },
      std::plus<long long>());

  const bool ok = bad_w == 0 && bad_x == 0 && bad_gemv == 0 && sum == 49995000LL;
  std::printf(
      "test_package: pquant %s: SignAbsMean %s, INT8 activations %s, gemv_w1a8 %s on [%s], "
      "TBB sum %lld: %s\n",
      pquant::kVersionString, bad_w ? "WRONG" : "ok", bad_x ? "WRONG" : "ok",
      bad_gemv ? "WRONG" : "ok", targets.c_str(), sum, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
