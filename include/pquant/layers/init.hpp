// Rng (deterministic SplitMix64) and the parameter initialisers layers use in init().
//
// Determinism: the generator is SplitMix64 (Steele et al. 2014) with our own bits -> float
// conversions, so a seed gives the same stream on every platform and standard library (std::
// distributions are implementation-defined). normal() uses Box-Muller on libm's log/cos/sin, which
// is deterministic for a given libm.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"

namespace pquant {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0x5eed) : state_(seed) {}

  /// The next 64 random bits (SplitMix64).
  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), n > 0 (rejection sampling: exactly uniform).
  std::uint64_t below(std::uint64_t n) {
    require<ValueError>(n > 0, "Rng::below: argument 'n' must be > 0");
    const std::uint64_t threshold = (0 - n) % n;  // 2^64 mod n: values below it are rejected
    for (;;) {
      const std::uint64_t r = next_u64();
      if (r >= threshold) return r % n;
    }
  }
  /// Standard normal (Box-Muller; no cached second value, so the stream position is simple).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  /// The whole generator state (for checkpoints); set_state(state()) resumes the stream exactly.
  std::uint64_t state() const { return state_; }
  void set_state(std::uint64_t s) { state_ = s; }

 private:
  std::uint64_t state_;
};

/// `init_std` values that ask for fan-in scaled initialisation (see init::linear_weight):
/// uniform U[-1/sqrt(in), 1/sqrt(in)) (PyTorch nn.Linear) or normal N(0, 1/in).
inline constexpr double kFanInInit = 0.0;
inline constexpr double kFanInNormalInit = -1.0;

namespace init {

/// w ~ N(0, stddev^2), row-major order.
inline void normal(MatrixView<float> w, Rng& rng, double stddev) {
  require<ValueError>(stddev >= 0 && std::isfinite(stddev), "init::normal: argument 'stddev' must ",
                      "be finite and >= 0, got ", stddev);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) w(r, c) = static_cast<float>(rng.normal(0.0, stddev));
}

/// w ~ U[-bound, bound), bound = 1/sqrt(fan_in) when bound <= 0 (PyTorch nn.Linear's default).
inline void uniform(MatrixView<float> w, Rng& rng, double bound) {
  if (bound <= 0) bound = 1.0 / std::sqrt(static_cast<double>(w.cols));
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c)
      w(r, c) = static_cast<float>(rng.uniform(-bound, bound));
}

/// A linear weight [out x in] drawn by the layers' `init_std` convention:
///   init_std > 0: N(0, init_std^2);
///   init_std == 0 (kFanInInit): fan-in scaled, U[-1/sqrt(in), 1/sqrt(in)) (std 1/sqrt(3 in)),
///     PyTorch nn.Linear's default: the output variance does not depend on the width;
///   init_std == -1 (kFanInNormalInit): fan-in scaled, N(0, 1/in) (std 1/sqrt(in), sqrt(3) x the
///     uniform one: a unit-RMS input gives a unit-RMS output).
/// Other negative values are a ValueError.
inline void linear_weight(MatrixView<float> w, Rng& rng, double init_std) {
  if (init_std == kFanInInit)
    uniform(w, rng, 0.0);
  else if (init_std == kFanInNormalInit)
    normal(w, rng, 1.0 / std::sqrt(static_cast<double>(w.cols)));
  else
    normal(w, rng, init_std);
}

inline void constant(MatrixView<float> w, float value) {
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) w(r, c) = value;
}

}  // namespace init
}  // namespace pquant
