// Global-norm gradient clipping over the whole gradient arena.
//
// norm = sqrt(sum_i g_i^2) over every gradient of the model; if norm > max_norm all gradients are
// scaled by max_norm / (norm + 1e-6) (PyTorch's clip_grad_norm_ convention). The sum is taken in
// double over fixed 16K-element chunks whose partial sums are added in chunk order, so the norm is
// bit-identical whatever the number of threads.
#pragma once

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"

namespace pquant {

inline constexpr std::size_t kReduceChunk = 16384;  // fixed chunking: thread-count independent sums

/// sum g^2 in double, deterministic for any thread count; NaN/Inf when a gradient is (no check:
/// the trainer's divergence guard reads it).
inline double grad_sum_of_squares(std::span<const float> grads) {
  const std::size_t chunks = (grads.size() + kReduceChunk - 1) / kReduceChunk;
  std::vector<double> partial(chunks, 0.0);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, chunks), [&](const auto& r) {
    for (std::size_t c = r.begin(); c != r.end(); ++c) {
      const std::size_t lo = c * kReduceChunk, hi = std::min(grads.size(), lo + kReduceChunk);
      double s = 0.0;
      for (std::size_t i = lo; i < hi; ++i) s += static_cast<double>(grads[i]) * grads[i];
      partial[c] = s;
    }
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

/// sqrt(sum g^2), deterministic for any thread count. Throws ValueError if a gradient is NaN/Inf.
inline double global_grad_norm(std::span<const float> grads) {
  const double total = grad_sum_of_squares(grads);
  require<ValueError>(std::isfinite(total),
                      "global_grad_norm: argument 'grads' must be finite, got a NaN/Inf gradient");
  return std::sqrt(total);
}

/// Scales `grads` so that their global norm is at most `max_norm`; returns the norm before
/// clipping.
inline double clip_grad_norm(std::span<float> grads, double max_norm) {
  require<ValueError>(max_norm > 0.0 && std::isfinite(max_norm),
                      "clip_grad_norm: argument 'max_norm' must be positive and finite, got ",
                      max_norm);
  const double norm = global_grad_norm(grads);
  if (norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-6));
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, grads.size(), kReduceChunk),
                      [&](const auto& r) {
                        for (std::size_t i = r.begin(); i != r.end(); ++i) grads[i] *= scale;
                      });
  }
  return norm;
}

}  // namespace pquant
