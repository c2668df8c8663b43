// KMeansCodebook<Bits, Scales>: b-bit codes indexing a codebook of 2^b centroids fit by Lloyd's
// algorithm on each scale group ("1-Bit Wonder", Maskey et al. 2026). Non-uniform levels track
// the bell-shaped weight distribution, so at equal bits the MSE is below any uniform grid's.
//
// Per scale group (values v_1..v_n, sorted once; K = 2^b):
//   init      c_k = (q_k + u_k) / 2 (in double, rounded to float), the midpoint of the quantile
//             level q_k = v_(floor((2k + 1) n / 2K)) (0-based order statistic) and the uniform
//             level u_k = v_min + (v_max - v_min) k / (K - 1). Quantile init alone starts every
//             cluster with n/K values, and Lloyd then stalls in poorer local optima on bell-shaped
//             data (measured on a 512 x 1024 N(0, 0.02^2) matrix, 4 bits per row: MSE
//             4.10e-6 from quantile init, 3.48e-6 from the midpoint, in 15 rounds instead of 39)
//   assign    each value goes to the nearest centroid; the candidates are the largest centroid
//             <= v and the smallest > v, distances |v - c| in double, ties to the lower index (so
//             equal centroids always resolve to the lowest of them)
//   update    c_k = mean of its cluster (double sum, rounded to float; -0 normalised to +0)
//   empty     a cluster left empty is re-seeded with the value farthest from its centroid
//             (distinct values only, largest error first, ties to the smaller value); when every
//             value sits on a centroid (fewer distinct values than K) it keeps its centroid
//   order     centroids are kept sorted ascending, so the codebook is monotone in the code
//   stop      when an assignment repeats the previous one (a fixed point), or after MaxIterations
//             assignment/update rounds (default 100)
// Deterministic: no randomness, results depend only on the group's values. A group with at most K
// distinct values ends up represented exactly (while a cluster holds two distinct values another
// is empty and gets re-seeded), with repeated entries; codes use the lowest index.
// All-zero / constant group: every centroid equals the value, codes 0. Sums are in double, so
// values near FLT_MAX do not overflow.
// Clip range (ClippedStraightThrough): [c_0, c_{K-1}] of the group's codebook (refit in backward).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/reductions.hpp"
#include "pquant/quantizers/packed_form.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

/// What fitting one group's codebook produced.
struct CodebookFit {
  std::vector<float> codebook;  // 2^b centroids, ascending
  std::size_t iterations = 0;   // assignment/update rounds run
  bool converged = false;       // stopped at a fixed point (not by the iteration limit)
};

template <unsigned Bits, ScaleGranularity Scales = PerTensor, std::size_t MaxIterations = 100>
struct KMeansCodebook {
  static_assert(MaxIterations > 0, "k-means needs at least one iteration");
  using format_type = CodebookIndex<Bits>;
  using scales_type = Scales;
  using packed_type = PackedMatrix<format_type, Scales>;
  static constexpr std::size_t kCentroids = std::size_t{1} << Bits;
  static constexpr std::size_t kMaxIterations = MaxIterations;
  static constexpr std::string_view kName = Bits == 1   ? "kmeans1"
                                            : Bits == 2 ? "kmeans2"
                                            : Bits == 4 ? "kmeans4"
                                                        : "kmeans8";

  /// Lloyd's algorithm on one group of values (any order; finite, non-empty).
  // values: [n] -> codebook [2^b]
  static CodebookFit fit(std::span<const float> values) {
    constexpr std::string_view fn = "KMeansCodebook::fit";
    require<ShapeError>(!values.empty(), fn, ": argument 'values' must be non-empty");
    check::finite(values, fn, "values");
    std::vector<float> sorted(values.begin(), values.end());
    std::sort(sorted.begin(), sorted.end());
    return fit_sorted(sorted);
  }

  /// Index of the centroid nearest to v (codebook ascending; ties to the lower index).
  static std::uint8_t assign(float v, std::span<const float> codebook) {
    const auto begin = codebook.begin();
    const auto above = std::upper_bound(begin, codebook.end(), v);  // first centroid > v
    if (above == begin) return 0;
    const auto below = std::lower_bound(begin, above, *(above - 1));  // lowest index of that value
    if (above == codebook.end()) return static_cast<std::uint8_t>(below - begin);
    const double d_below = static_cast<double>(v) - static_cast<double>(*below);
    const double d_above = static_cast<double>(*above) - static_cast<double>(v);
    return static_cast<std::uint8_t>((d_below <= d_above ? below : above) - begin);
  }

  // w: [rows x cols] -> codes [rows x cols], one codebook of 2^b floats per scale group
  static packed_type quantize(MatrixView<const float> w) {
    detail::check_input(w, "KMeansCodebook::quantize", "w");
    const std::vector<float> books = codebooks(w);
    packed_type p(w.rows, w.cols);
    std::span<float> params = p.params();
    std::copy(books.begin(), books.end(), params.begin());
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        p.set_code(r, c, assign(w(r, c), book(books, r, c, w.cols)));
    return p;
  }

  // w, out: [rows x cols]; out may be exactly w
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    constexpr std::string_view fn = "KMeansCodebook::fake_quantize";
    detail::check_input(w, fn, "w");
    detail::check_output(w, out, fn, "w", "out");
    const std::vector<float> books = codebooks(w);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) {
        const std::span<const float> cb = book(books, r, c, w.cols);
        out(r, c) = cb[assign(w(r, c), cb)];
      }
  }

  /// [smallest, largest centroid] per scale group.
  // w: [rows x cols], ranges: [Scales::count(rows, cols)]
  static void clip_range(MatrixView<const float> w, std::span<ClipRange> ranges) {
    constexpr std::string_view fn = "KMeansCodebook::clip_range";
    detail::check_input(w, fn, "w");
    check::size(ranges, Scales::count(w.rows, w.cols), fn, "ranges");
    const std::vector<float> books = codebooks(w);
    for (std::size_t g = 0; g < ranges.size(); ++g)
      ranges[g] = {books[g * kCentroids], books[g * kCentroids + kCentroids - 1]};
  }

  /// Every group's codebook, group-major ([Scales::count(rows, cols) x 2^b]).
  // w: [rows x cols] (checked by the caller)
  static std::vector<float> codebooks(MatrixView<const float> w) {
    const std::size_t groups = Scales::count(w.rows, w.cols);
    // Gather each group's values contiguously (counting sort by group index).
    std::vector<std::size_t> offset(groups + 1, 0);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) ++offset[Scales::index(r, c, w.cols) + 1];
    for (std::size_t g = 0; g < groups; ++g) offset[g + 1] += offset[g];
    std::vector<float> values(w.rows * w.cols);
    std::vector<std::size_t> next(offset.begin(), offset.end() - 1);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        values[next[Scales::index(r, c, w.cols)]++] = w(r, c);
    std::vector<float> books(groups * kCentroids);
    for (std::size_t g = 0; g < groups; ++g) {
      const auto first = values.begin() + static_cast<std::ptrdiff_t>(offset[g]);
      const auto last = values.begin() + static_cast<std::ptrdiff_t>(offset[g + 1]);
      if (first == last) continue;  // a group no weight maps to keeps a zero codebook
      std::sort(first, last);
      const CodebookFit f = fit_sorted(std::span<const float>(&*first, offset[g + 1] - offset[g]));
      std::copy(f.codebook.begin(), f.codebook.end(),
                books.begin() + static_cast<std::ptrdiff_t>(g * kCentroids));
    }
    return books;
  }

 private:
  static std::span<const float> book(const std::vector<float>& books, std::size_t r, std::size_t c,
                                     std::size_t cols) {
    return {books.data() + Scales::index(r, c, cols) * kCentroids, kCentroids};
  }

  // s: [n] ascending
  static CodebookFit fit_sorted(std::span<const float> s) {
    const std::size_t n = s.size();
    constexpr std::size_t K = kCentroids;
    CodebookFit fit;
    std::vector<float>& c = fit.codebook;
    c.resize(K);
    const double lo = s[0], hi = s[n - 1];
    for (std::size_t k = 0; k < K; ++k) {
      const double quantile = s[((2 * k + 1) * n) / (2 * K)];
      const double uniform = lo + (hi - lo) * static_cast<double>(k) / static_cast<double>(K - 1);
      c[k] = static_cast<float>((quantile + uniform) / 2.0) + 0.0f;
    }
    std::vector<std::size_t> bounds(K + 1), previous;
    while (fit.iterations < MaxIterations) {
      // Assignment: clusters are contiguous runs of s because assign() is monotone in v.
      bounds[0] = 0;
      bounds[K] = n;
      for (std::size_t k = 1; k < K; ++k)
        bounds[k] = static_cast<std::size_t>(
            std::partition_point(s.begin(), s.end(), [&](float v) { return assign(v, c) < k; }) -
            s.begin());
      if (bounds == previous) {
        fit.converged = true;
        break;
      }
      ++fit.iterations;
      // Update: each non-empty cluster's centroid becomes its mean.
      std::vector<std::size_t> empty;
      for (std::size_t k = 0; k < K; ++k) {
        if (bounds[k] == bounds[k + 1]) {
          empty.push_back(k);
          continue;
        }
        double sum = 0.0;
        for (std::size_t i = bounds[k]; i < bounds[k + 1]; ++i) sum += s[i];
        c[k] = static_cast<float>(sum / static_cast<double>(bounds[k + 1] - bounds[k])) + 0.0f;
      }
      if (!empty.empty()) reseed(s, bounds, c, empty);
      std::sort(c.begin(), c.end());
      previous = bounds;
    }
    return fit;
  }

  // Re-seeds the empty clusters with the distinct values farthest from their (updated) centroid.
  static void reseed(std::span<const float> s, const std::vector<std::size_t>& bounds,
                     std::vector<float>& c, const std::vector<std::size_t>& empty) {
    std::vector<std::pair<double, std::size_t>> candidates;  // (error, position of the run)
    for (std::size_t k = 0; k + 1 < bounds.size(); ++k)
      for (std::size_t i = bounds[k]; i < bounds[k + 1]; ++i) {
        if (i > bounds[k] && s[i] == s[i - 1]) continue;  // one candidate per distinct value
        const double err = std::fabs(static_cast<double>(s[i]) - static_cast<double>(c[k]));
        if (err > 0.0) candidates.push_back({err, i});
      }
    const std::size_t m = std::min(empty.size(), candidates.size());
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(m),
                      candidates.end(), [](const auto& a, const auto& b) {
                        return a.first != b.first ? a.first > b.first : a.second < b.second;
                      });
    for (std::size_t j = 0; j < m; ++j) c[empty[j]] = s[candidates[j].second] + 0.0f;
  }
};

static_assert(ClippableWeightQuantizer<KMeansCodebook<2>>);

/// Packed form (quantizers/packed_lut.hpp): b-bit LUT codes (b = 1, 2, 4) and a codebook per row
/// (a per-tensor codebook repeated per row) or per group, decoded to FP32 per product (the
/// training forward's path). 8-bit codebooks have no packed form.
template <unsigned Bits, ScaleGranularity S, std::size_t MaxIterations>
  requires(Bits <= 4)
struct packed_form<KMeansCodebook<Bits, S, MaxIterations>> {
  using type = LutCodes<CodebookIndex<Bits>, stored_scales_t<S>>;
};

}  // namespace pquant
