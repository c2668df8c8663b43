// Softmax cross-entropy over logits with an ignore index, mean over the non-ignored tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"

namespace pquant {

inline constexpr std::int32_t kIgnoreIndex = -100;  // PyTorch's default

struct CrossEntropyResult {
  double sum = 0;          // sum over counted tokens of -log softmax(logits)[target]
  std::size_t tokens = 0;  // tokens whose target != ignore_index
  /// The loss: mean over counted tokens (0 when every token is ignored).
  double mean() const { return tokens == 0 ? 0.0 : sum / static_cast<double>(tokens); }
};

/// logits [n x V], targets [n] -> loss; dlogits [n x V] (overwritten) = d mean / d logits =
/// (softmax - onehot) / tokens on counted rows, 0 on ignored rows; pass an empty view to skip it.
/// Stable: log-sum-exp with the row max subtracted, accumulated in double. Targets must be in
/// [0, V) or equal ignore_index (ValueError otherwise); NaN/Inf logits are a ValueError.
template <class T>
CrossEntropyResult softmax_cross_entropy(MatrixView<const T> logits,
                                         std::span<const std::int32_t> targets,
                                         MatrixView<T> dlogits,
                                         std::int32_t ignore_index = kIgnoreIndex) {
  constexpr const char* fn = "softmax_cross_entropy";
  check::non_empty(logits, fn, "logits");
  check::size(targets, logits.rows, fn, "targets");
  if (dlogits.rows != 0) check::shape(dlogits, logits.rows, logits.cols, fn, "dlogits");
  check::finite(logits, fn, "logits");
  const std::size_t vocab = logits.cols;
  CrossEntropyResult result;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const std::int32_t t = targets[i];
    require<ValueError>(t == ignore_index || (t >= 0 && static_cast<std::size_t>(t) < vocab), fn,
                        ": argument 'targets' must be in [0, ", vocab, ") or ", ignore_index,
                        ", got ", t, " at ", i);
    if (t != ignore_index) ++result.tokens;
  }
  const double inv_count = result.tokens == 0 ? 0.0 : 1.0 / static_cast<double>(result.tokens);
  for (std::size_t i = 0; i < logits.rows; ++i) {
    const std::int32_t t = targets[i];
    if (t == ignore_index) {
      if (dlogits.rows != 0)
        for (std::size_t c = 0; c < vocab; ++c) dlogits(i, c) = T(0);
      continue;
    }
    double mx = static_cast<double>(logits(i, 0));
    for (std::size_t c = 1; c < vocab; ++c) mx = std::max(mx, static_cast<double>(logits(i, c)));
    double z = 0;
    for (std::size_t c = 0; c < vocab; ++c) z += std::exp(static_cast<double>(logits(i, c)) - mx);
    // (mx - logit_t) + log z: the large terms cancel before they meet the small one.
    const double log_z = std::log(z);
    result.sum += (mx - static_cast<double>(logits(i, static_cast<std::size_t>(t)))) + log_z;
    if (dlogits.rows != 0) {
      for (std::size_t c = 0; c < vocab; ++c) {
        const double p = std::exp(static_cast<double>(logits(i, c)) - mx - log_z);
        const double onehot = c == static_cast<std::size_t>(t) ? 1.0 : 0.0;
        dlogits(i, c) = static_cast<T>((p - onehot) * inv_count);
      }
    }
  }
  return result;
}

}  // namespace pquant
