// Numbers that make "parameter democratization" (docs/method.md section 1) measurable, and the
// max-pooled map a heatmap draws, from a matrix of per-weight sensitivities s_ij >= 0:
//
//   top1pct_share   share of sum(s) held by the largest 1% of the weights (ceil(1% of count),
//                   at least one): near 0.01 for a flat map, large when a few weights dominate;
//   gini            Gini coefficient of s: 0 when every weight is equally sensitive, (n-1)/n when
//                   one weight holds everything;
//   max_over_median max(s) / median(s) (median: mean of the two middle values for even counts;
//                   infinite when the median is 0).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"

namespace pquant::analysis {

struct SensitivityStats {
  std::size_t count = 0;
  double total = 0;
  double max = 0;
  double median = 0;
  double top1pct_share = 0;
  double gini = 0;
  double max_over_median = 0;  // +inf when median == 0
};

/// The statistics of `s` (ValueError unless non-empty, finite and >= 0 with a positive sum).
inline SensitivityStats sensitivity_stats(std::span<const double> s) {
  constexpr const char* fn = "analysis::sensitivity_stats";
  require<ValueError>(!s.empty(), fn, ": argument 's' is empty");
  std::vector<double> v(s.begin(), s.end());
  for (std::size_t i = 0; i < v.size(); ++i)
    require<ValueError>(std::isfinite(v[i]) && v[i] >= 0, fn,
                        ": argument 's' must be finite and >= 0, element ", i, " is ", v[i]);
  std::sort(v.begin(), v.end());
  SensitivityStats r;
  const std::size_t n = v.size();
  r.count = n;
  // Ascending order: the sums below are deterministic and add small terms first.
  double total = 0, weighted = 0;
  for (std::size_t i = 0; i < n; ++i) {
    total += v[i];
    weighted += static_cast<double>(i + 1) * v[i];
  }
  require<ValueError>(total > 0, fn, ": argument 's' sums to 0 (no weight has any sensitivity)");
  r.total = total;
  r.max = v.back();
  r.median = n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  const std::size_t top = std::max<std::size_t>(1, (n + 99) / 100);
  double top_sum = 0;
  for (std::size_t i = n - top; i < n; ++i) top_sum += v[i];
  r.top1pct_share = top_sum / total;
  const double dn = static_cast<double>(n);
  r.gini = 2.0 * weighted / (dn * total) - (dn + 1.0) / dn;
  r.max_over_median = r.median > 0 ? r.max / r.median : std::numeric_limits<double>::infinity();
  return r;
}

/// A [rows x cols] map reduced by taking the maximum over blocks of block_rows x block_cols
/// entries (the last block of a row or column may be smaller).
struct PooledMap {
  std::size_t rows = 0, cols = 0;              // of the pooled map
  std::size_t block_rows = 1, block_cols = 1;  // entries of the source per pooled entry
  std::vector<double> values;                  // row-major [rows x cols]
};

/// Max-pools the row-major [rows x cols] map `s` to at most max_rows x max_cols entries (blocks
/// of ceil(rows / max_rows) x ceil(cols / max_cols)); a small map is returned unchanged.
inline PooledMap max_pool(std::span<const double> s, std::size_t rows, std::size_t cols,
                          std::size_t max_rows, std::size_t max_cols) {
  constexpr const char* fn = "analysis::max_pool";
  require<ShapeError>(rows > 0 && cols > 0 && s.size() == rows * cols, fn,
                      ": argument 's' must hold rows * cols = ", rows * cols, " > 0 values, got ",
                      s.size());
  require<ValueError>(max_rows > 0 && max_cols > 0, fn, ": 'max_rows' and 'max_cols' must be > 0");
  PooledMap m;
  m.block_rows = (rows + max_rows - 1) / max_rows;
  m.block_cols = (cols + max_cols - 1) / max_cols;
  m.rows = (rows + m.block_rows - 1) / m.block_rows;
  m.cols = (cols + m.block_cols - 1) / m.block_cols;
  m.values.assign(m.rows * m.cols, -std::numeric_limits<double>::infinity());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      double& dst = m.values[(r / m.block_rows) * m.cols + c / m.block_cols];
      dst = std::max(dst, s[r * cols + c]);
    }
  return m;
}

}  // namespace pquant::analysis
