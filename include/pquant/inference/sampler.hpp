// Sampler: next-token choice from logits: greedy, temperature, top-k, top-p (nucleus), seeded.
//
//   temperature <= 0       greedy argmax (lowest index among equal logits)
//   otherwise              p = softmax(logits / temperature) in double; candidates sorted by
//                          probability (ties: lower index first); keep the top_k (0 = all), then
//                          the shortest prefix whose mass reaches top_p (at least one token);
//                          renormalise and draw u in [0, 1) from SplitMix64(seed).
// The same seed and logits give the same tokens on every platform (no std:: distributions).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"

namespace pquant::inference {

struct SamplerConfig {
  float temperature = 0.0f;  // <= 0: greedy
  std::size_t top_k = 0;     // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  std::uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerConfig cfg = {}) : cfg_(cfg), state_(cfg.seed) {
    require<ValueError>(std::isfinite(cfg.temperature),
                        "Sampler: argument 'temperature' must be finite, got ", cfg.temperature);
    require<ValueError>(cfg.top_p > 0.0f && cfg.top_p <= 1.0f,
                        "Sampler: argument 'top_p' must be in (0, 1], got ", cfg.top_p);
  }
  const SamplerConfig& config() const { return cfg_; }

  /// Greedy argmax; NaN logits are a ValueError.
  static int argmax(std::span<const float> logits) {
    check(logits, "Sampler::argmax");
    std::size_t best = 0;
    for (std::size_t i = 1; i < logits.size(); ++i)
      if (logits[i] > logits[best]) best = i;
    return static_cast<int>(best);
  }

  // logits: [vocab]
  int sample(std::span<const float> logits) {
    if (cfg_.temperature <= 0.0f) return argmax(logits);
    check(logits, "Sampler::sample");
    const std::size_t v = logits.size();
    double mx = -INFINITY;
    for (float l : logits) mx = std::max(mx, static_cast<double>(l));
    probs_.resize(v);
    double sum = 0.0;
    for (std::size_t i = 0; i < v; ++i) {
      probs_[i] = std::exp((static_cast<double>(logits[i]) - mx) / cfg_.temperature);
      sum += probs_[i];
    }
    order_.resize(v);
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    std::stable_sort(order_.begin(), order_.end(),
                     [&](std::size_t a, std::size_t b) { return probs_[a] > probs_[b]; });
    std::size_t keep = cfg_.top_k == 0 ? v : std::min(cfg_.top_k, v);
    double mass = 0.0, kept = 0.0;
    std::size_t n = 0;
    while (n < keep) {
      mass += probs_[order_[n]] / sum;
      kept += probs_[order_[n]];
      ++n;
      if (mass >= static_cast<double>(cfg_.top_p)) break;
    }
    const double u = uniform() * kept;
    double acc = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      acc += probs_[order_[i]];
      if (u < acc) return static_cast<int>(order_[i]);
    }
    return static_cast<int>(order_[n - 1]);  // u rounding at the very top
  }

 private:
  static void check(std::span<const float> logits, const char* fn) {
    require<ShapeError>(!logits.empty(), fn, ": argument 'logits' must be non-empty");
    for (std::size_t i = 0; i < logits.size(); ++i)
      require<ValueError>(!std::isnan(logits[i]), fn, ": argument 'logits' has NaN at ", i);
  }
  double uniform() {  // SplitMix64 -> [0, 1)
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
  }

  SamplerConfig cfg_;
  std::uint64_t state_;
  std::vector<double> probs_;
  std::vector<std::size_t> order_;
};

}  // namespace pquant::inference
