// Softmax cross-entropy over logits with an ignore index, mean over the non-ignored tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/layers/fast_exp.hpp"

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
/// Stable: log-sum-exp with the row max subtracted, sums in double (exp in T: fast_exp for float).
/// Targets must be in [0, V) or equal ignore_index (ValueError otherwise); NaN/Inf logits are a
/// ValueError.
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
  // Rows are independent: split over threads, per-row losses summed afterwards in row order (the
  // same result for any thread count). exp is fast_exp for float (vectorised), std::exp otherwise.
  std::vector<double> row_loss(logits.rows, 0.0);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, logits.rows, 64), [&](const auto& rows) {
    for (std::size_t i = rows.begin(); i != rows.end(); ++i) {
      const std::int32_t t = targets[i];
      const T* l = logits.data + i * logits.stride;
      if (t == ignore_index) {
        if (dlogits.rows != 0)
          for (std::size_t c = 0; c < vocab; ++c) dlogits(i, c) = T(0);
        continue;
      }
      T mx = l[0];
      for (std::size_t c = 1; c < vocab; ++c) mx = std::max(mx, l[c]);
      double z = 0;
      if (dlogits.rows != 0) {
        T* d = dlogits.data + i * dlogits.stride;
        for (std::size_t c = 0; c < vocab; ++c) d[c] = exp_of<T>(l[c] - mx);
        for (std::size_t c = 0; c < vocab; ++c) z += static_cast<double>(d[c]);
        // d = (softmax - onehot) / tokens, softmax = e / z.
        const auto scale = static_cast<T>(inv_count / z);
        for (std::size_t c = 0; c < vocab; ++c) d[c] *= scale;
        d[static_cast<std::size_t>(t)] -= static_cast<T>(inv_count);
      } else {
        for (std::size_t c = 0; c < vocab; ++c) z += static_cast<double>(exp_of<T>(l[c] - mx));
      }
      // (mx - logit_t) + log z: the large terms cancel before they meet the small one.
      row_loss[i] =
          (static_cast<double>(mx) - static_cast<double>(l[static_cast<std::size_t>(t)])) +
          std::log(z);
    }
  });
  for (double v : row_loss) result.sum += v;
  return result;
}

}  // namespace pquant
