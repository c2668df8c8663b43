// FlipRatio: the fraction of 1-bit weight codes (signs) that changed since the previous report.
//
// The quantity the two-phase schedule is meant to calm (docs/method.md section 4): with a high LR
// and weight decay many latent weights hover around their group mean and their signs oscillate.
// The model supplies the current codes (one byte per 1-bit weight, 0 or 1) in a fixed order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"

namespace pquant {

class FlipRatio {
 public:
  /// Returns the fraction of codes that differ from the previous call's (nullopt on the first
  /// call, or when there are no 1-bit weights), then remembers `codes`.
  std::optional<double> update(std::span<const std::uint8_t> codes) {
    std::optional<double> ratio;
    if (!previous_.empty()) {
      require<ShapeError>(codes.size() == previous_.size(),
                          "FlipRatio::update: argument 'codes' has ", codes.size(),
                          " elements, the previous report had ", previous_.size());
      std::size_t flips = 0;
      for (std::size_t i = 0; i < codes.size(); ++i) flips += codes[i] != previous_[i];
      ratio = static_cast<double>(flips) / static_cast<double>(codes.size());
    }
    previous_.assign(codes.begin(), codes.end());
    return ratio;
  }
  void reset() { previous_.clear(); }

 private:
  std::vector<std::uint8_t> previous_;
};

}  // namespace pquant
