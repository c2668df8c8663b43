// pquant quickstart: quantize one random weight matrix with every quantizer and compare error and
// memory. Deterministic: fixed seed, no timing.
//
//   build/release/examples/quickstart
#include <pquant/pquant.hpp>

#include "common/cli.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <random>
#include <string>
#include <vector>

namespace {

// N(0, sigma^2) by Box-Muller over mt19937 (whose sequence the standard fixes), so the matrix is
// the same with every standard library.
pquant::Matrix<float> gaussian(std::size_t rows, std::size_t cols, std::uint32_t seed,
                               float sigma) {
  pquant::Matrix<float> m(rows, cols);
  std::mt19937 rng(seed);
  auto uniform = [&] { return (static_cast<double>(rng()) + 0.5) / 4294967296.0; };  // (0, 1)
  std::span<float> flat = m.flat();
  for (std::size_t i = 0; i < flat.size(); i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = 2.0 * std::numbers::pi * uniform();
    flat[i] = static_cast<float>(sigma * radius * std::cos(angle));
    if (i + 1 < flat.size()) flat[i + 1] = static_cast<float>(sigma * radius * std::sin(angle));
  }
  return m;
}

struct Row {
  std::string quantizer;
  std::string scales;
  double bits_per_weight;
  double mse;
  double relative_error;  // ||W - Q(W)|| / ||W||
};

template <pquant::WeightQuantizer Q>
Row evaluate(const pquant::Matrix<float>& w) {
  const auto packed = Q::quantize(w);
  const pquant::Matrix<float> q = packed.dequantize();
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double d = static_cast<double>(w.flat()[i]) - q.flat()[i];
    err += d * d;
    norm += static_cast<double>(w.flat()[i]) * w.flat()[i];
  }
  return {std::string(Q::kName), Q::scales_type::name(), packed.footprint().bits_per_weight(),
          err / static_cast<double>(w.size()), std::sqrt(err / norm)};
}

int run() {
  using namespace pquant;
  constexpr std::size_t kRows = 512, kCols = 1024;
  constexpr float kSigma = 0.02f;  // a typical initialisation scale
  const Matrix<float> w = gaussian(kRows, kCols, 42, kSigma);

  std::vector<Row> rows = {
      evaluate<SignAbsMean<PerTensor>>(w),       evaluate<SignAbsMean<PerRow>>(w),
      evaluate<SignAbsMean<PerGroup<64>>>(w),    evaluate<TernaryAbsMean<PerTensor>>(w),
      evaluate<KMeansCodebook<2, PerTensor>>(w), evaluate<KMeansCodebook<2, PerRow>>(w),
      evaluate<KMeansCodebook<4, PerTensor>>(w), evaluate<KMeansCodebook<4, PerRow>>(w),
      evaluate<Int8AbsMax<PerRow>>(w),
  };

  std::printf("pquant %s quickstart: W ~ N(0, %.2g^2), %zu x %zu, seed 42\n\n", kVersionString,
              static_cast<double>(kSigma), kRows, kCols);
  std::printf("%-16s %-8s %10s %12s %10s\n", "quantizer", "scales", "bits/wt", "MSE", "rel.err");
  std::printf("%-16s %-8s %10s %12s %10s\n", "----------------", "--------", "----------",
              "------------", "----------");
  for (const Row& r : rows)
    std::printf("%-16s %-8s %10.4f %12.4e %9.2f%%\n", r.quantizer.c_str(), r.scales.c_str(),
                r.bits_per_weight, r.mse, 100.0 * r.relative_error);

  // Activations: INT8 absmax per token, as every BitLinear input.
  const Matrix<float> x = gaussian(8, kCols, 7, 1.0f);
  Matrix<float> xq(8, kCols);
  Int8AbsMaxPerToken::fake_quantize(x, xq);
  double err = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x.flat()[i]) - xq.flat()[i];
    err += d * d;
    norm += static_cast<double>(x.flat()[i]) * x.flat()[i];
  }
  std::printf("\nactivations: %s on 8 x %zu tokens of N(0, 1): rel.err %.2f%%\n",
              std::string(Int8AbsMaxPerToken::kName).c_str(), kCols, 100.0 * std::sqrt(err / norm));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Quantizes one random weight matrix with every quantizer and compares error and "
               "memory (no flags besides --help).",
               "quickstart");
  return cli::run(app, argc, argv, [] {}, run);
}
