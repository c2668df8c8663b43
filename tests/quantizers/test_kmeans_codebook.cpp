// KMeansCodebook: hand-computed Lloyd runs, an independent brute-force Lloyd, MSE against uniform
// grids of the same bit width, and degenerate groups.
#include <pquant/quantizers/kmeans_codebook.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

// Brute-force Lloyd written independently: the same documented rules (midpoint of quantile and
// uniform init, nearest with
// ties to the lower index over *all* centroids, double means, farthest-distinct-value re-seeding,
// sorted centroids, stop when the assignment repeats).
std::vector<float> reference_lloyd(std::vector<float> v, std::size_t k_count, std::size_t max_it) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  std::vector<float> c(k_count);
  for (std::size_t k = 0; k < k_count; ++k) {
    const double uniform = v.front() + (static_cast<double>(v.back()) - v.front()) *
                                           static_cast<double>(k) /
                                           static_cast<double>(k_count - 1);
    c[k] = static_cast<float>((v[(2 * k + 1) * n / (2 * k_count)] + uniform) / 2.0) + 0.0f;
  }
  auto nearest = [&](float x) {
    std::size_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < k_count; ++k) {
      const double d = std::fabs(static_cast<double>(x) - c[k]);
      if (d < best_d) best_d = d, best = k;
    }
    return best;
  };
  std::vector<std::size_t> assign(n), previous;
  for (std::size_t it = 0; it < max_it; ++it) {
    for (std::size_t i = 0; i < n; ++i) assign[i] = nearest(v[i]);
    if (assign == previous) break;
    previous = assign;
    std::vector<double> sum(k_count, 0.0);
    std::vector<std::size_t> count(k_count, 0);
    for (std::size_t i = 0; i < n; ++i) sum[assign[i]] += v[i], ++count[assign[i]];
    std::vector<std::size_t> empty;
    for (std::size_t k = 0; k < k_count; ++k) {
      if (count[k] == 0)
        empty.push_back(k);
      else
        c[k] = static_cast<float>(sum[k] / static_cast<double>(count[k])) + 0.0f;
    }
    // Distinct values ordered by error to their cluster's new centroid (desc), then by value.
    std::vector<std::pair<double, float>> cand;
    for (std::size_t i = 0; i < n; ++i) {
      if (i > 0 && v[i] == v[i - 1]) continue;
      const double e = std::fabs(static_cast<double>(v[i]) - c[assign[i]]);
      if (e > 0) cand.push_back({-e, v[i]});
    }
    std::sort(cand.begin(), cand.end());
    for (std::size_t j = 0; j < empty.size() && j < cand.size(); ++j) c[empty[j]] = cand[j].second;
    std::sort(c.begin(), c.end());
  }
  return c;
}

double uniform_grid_mse(const std::vector<float>& v, const std::vector<double>& levels) {
  double s = 0.0;
  for (float x : v) {
    double best = std::numeric_limits<double>::infinity();
    for (double l : levels) best = std::min(best, (x - l) * (x - l));
    s += best;
  }
  return s / static_cast<double>(v.size());
}

// MSE of the best symmetric uniform grid {(k - (K - 1) / 2) * step}, step searched finely.
double best_symmetric_uniform_mse(const std::vector<float>& v, std::size_t k_count) {
  double absmax = 0.0;
  for (float x : v) absmax = std::max(absmax, std::fabs(static_cast<double>(x)));
  double best = std::numeric_limits<double>::infinity();
  for (int i = 1; i <= 400; ++i) {
    const double step = absmax * 2.0 / static_cast<double>(k_count - 1) * i / 400.0;
    std::vector<double> levels;
    for (std::size_t k = 0; k < k_count; ++k)
      levels.push_back((static_cast<double>(k) - static_cast<double>(k_count - 1) / 2.0) * step);
    best = std::min(best, uniform_grid_mse(v, levels));
  }
  return best;
}

TEST(KMeansCodebook, HandComputedOneBit) {
  // n = 4, K = 2: quantile levels {v[1], v[3]} = {1, 11}, uniform levels {0, 11} -> init
  // {0.5, 11}. 10 is nearer 11. Means {0.5, 10.5}; the next assignment repeats: converged.
  const std::vector<float> v = {10, 0, 11, 1};
  const CodebookFit f = KMeansCodebook<1>::fit(v);
  EXPECT_EQ(f.codebook, (std::vector<float>{0.5f, 10.5f}));
  EXPECT_EQ(f.iterations, 1u);
  EXPECT_TRUE(f.converged);
  const auto p = KMeansCodebook<1>::quantize(test::from(1, 4, v));
  EXPECT_EQ(p.code(0, 0), 1);
  EXPECT_EQ(p.code(0, 1), 0);
  EXPECT_EQ(p.dequantized(0, 2), 10.5f);
}

TEST(KMeansCodebook, HandComputedTieGoesToTheLowerCentroid) {
  // {0, 1, 2}, K = 2: quantile {v[0], v[2]} = {0, 2}, uniform {0, 2} -> init {0, 2}. 1 is
  // equidistant and joins the lower centroid: {0, 1} {2} -> {0.5, 2}, then stable. (Ties to the
  // upper centroid would give {0, 1.5}.)
  const CodebookFit f = KMeansCodebook<1>::fit(std::vector<float>{2, 1, 0});
  EXPECT_EQ(f.codebook, (std::vector<float>{0.5f, 2.0f}));
  EXPECT_EQ(f.iterations, 1u);
}

TEST(KMeansCodebook, HandComputedTwoBit) {
  // 1..8, K = 4: quantile {2, 4, 6, 8}, uniform {1, 10/3, 17/3, 8} -> init {1.5, 11/3, 35/6, 8}.
  // Clusters {1,2} {3,4} {5,6} {7,8} -> {1.5, 3.5, 5.5, 7.5}; the next assignment is the same.
  const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8};
  const CodebookFit f = KMeansCodebook<2>::fit(v);
  EXPECT_EQ(f.codebook, (std::vector<float>{1.5f, 3.5f, 5.5f, 7.5f}));
  EXPECT_EQ(f.iterations, 1u);
  EXPECT_TRUE(f.converged);
}

TEST(KMeansCodebook, AssignBreaksTiesTowardTheLowerIndex) {
  const std::vector<float> cb = {1, 1, 5, 5};
  EXPECT_EQ(KMeansCodebook<2>::assign(3.0f, cb), 0);  // |3-1| == |5-3| -> lower
  EXPECT_EQ(KMeansCodebook<2>::assign(1.0f, cb), 0);  // duplicate centroids -> lowest index
  EXPECT_EQ(KMeansCodebook<2>::assign(5.0f, cb), 2);
  EXPECT_EQ(KMeansCodebook<2>::assign(9.0f, cb), 2);
  EXPECT_EQ(KMeansCodebook<2>::assign(-9.0f, cb), 0);
  EXPECT_EQ(KMeansCodebook<2>::assign(3.5f, cb), 2);
}

TEST(KMeansCodebook, EmptyClustersAreReseeded) {
  // {0 x6, 1, 100}, K = 4: quantile {0, 0, 0, 100}, uniform {0, 100/3, 200/3, 100} -> init
  // {0, 50/3, 100/3, 100}. Clusters {0 x6, 1} {} {} {100} -> means 1/7 and 100; the empty ones
  // are re-seeded with the farthest distinct values: 1 (error 6/7), then 0 (error 1/7). Sorted
  // {0, 1/7, 1, 100}; cluster 1/7 is now empty but every value sits on a centroid, so it stays.
  // Without re-seeding, 0 and 1 would share the centroid 1/7.
  const std::vector<float> v = {0, 0, 0, 0, 0, 0, 1, 100};
  const CodebookFit f = KMeansCodebook<2>::fit(v);
  EXPECT_EQ(f.codebook, (std::vector<float>{0, static_cast<float>(1.0 / 7.0), 1, 100}));
  EXPECT_EQ(f.iterations, 2u);
  EXPECT_TRUE(f.converged);
  const auto p = KMeansCodebook<2>::quantize(test::from(2, 4, v));
  test::expect_bitwise_equal(p.dequantize(), test::from(2, 4, v));
}

TEST(KMeansCodebook, FewerDistinctValuesThanCentroidsIsExact) {
  const auto w = test::from(1, 5, {2, 1, 2, 1, 2});
  const auto p = KMeansCodebook<4>::quantize(w);
  test::expect_bitwise_equal(p.dequantize(), w);
  // Repeated codebook entries: each value uses the lowest index holding it.
  const auto cb = p.params();
  ASSERT_EQ(cb.size(), 16u);
  EXPECT_TRUE(std::is_sorted(cb.begin(), cb.end()));
  for (std::size_t c = 0; c < 5; ++c) {
    const std::uint8_t code = p.code(0, c);
    EXPECT_EQ(cb[code], w(0, c));
    for (std::uint8_t j = 0; j < code; ++j) EXPECT_NE(cb[j], w(0, c));
  }
}

TEST(KMeansCodebook, AllZeroConstantHugeDenormal) {
  for (float value : {0.0f, -0.3f, 1e38f, -FLT_MAX, 1e-41f}) {
    const auto w = test::filled(3, 7, value);
    const auto p = KMeansCodebook<2, PerRow>::quantize(w);
    for (float c : p.params()) EXPECT_EQ(test::bits_of(c), test::bits_of(value + 0.0f)) << value;
    for (std::size_t r = 0; r < 3; ++r)
      for (std::size_t c = 0; c < 7; ++c) EXPECT_EQ(p.code(r, c), 0);
  }
  auto huge = test::gaussian(5, 9, 3, 1e38f);
  huge(0, 0) = FLT_MAX;
  huge(4, 8) = -FLT_MAX;
  const auto p = KMeansCodebook<2>::quantize(huge);
  for (float c : p.params()) EXPECT_TRUE(std::isfinite(c));
  const auto tiny = test::gaussian(5, 9, 4, 1e-40f);
  const auto pt = KMeansCodebook<4>::quantize(tiny);
  EXPECT_LE(test::mse(pt.dequantize(), tiny), 1e-81);
}

TEST(KMeansCodebook, MatchesBruteForceLloyd) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {127, 129}};
  std::uint32_t seed = 80;
  for (const auto& s : shapes) {
    const auto w = test::gaussian(s[0], s[1], seed++);
    // Per tensor, 2 bits.
    {
      const auto p = KMeansCodebook<2>::quantize(w);
      const std::vector<float> ref =
          reference_lloyd(std::vector<float>(w.flat().begin(), w.flat().end()), 4, 100);
      for (std::size_t k = 0; k < 4; ++k) EXPECT_NEAR(p.params()[k], ref[k], 1e-5) << k;
    }
    // Per row, 1 bit and 4 bits.
    const auto p1 = KMeansCodebook<1, PerRow>::quantize(w);
    const auto p4 = KMeansCodebook<4, PerRow>::quantize(w);
    for (std::size_t r = 0; r < s[0]; ++r) {
      const std::vector<float> row(w.row(r).begin(), w.row(r).end());
      const auto ref1 = reference_lloyd(row, 2, 100);
      const auto ref4 = reference_lloyd(row, 16, 100);
      for (std::size_t k = 0; k < 2; ++k) EXPECT_NEAR(p1.params()[r * 2 + k], ref1[k], 1e-5);
      for (std::size_t k = 0; k < 16; ++k) EXPECT_NEAR(p4.params()[r * 16 + k], ref4[k], 1e-5);
    }
    // Every code picks a nearest centroid of its group's codebook.
    for (std::size_t r = 0; r < s[0]; ++r)
      for (std::size_t c = 0; c < s[1]; ++c) {
        const double x = w(r, c);
        const double chosen = std::fabs(x - p4.params()[r * 16 + p4.code(r, c)]);
        for (std::size_t k = 0; k < 16; ++k)
          ASSERT_LE(chosen, std::fabs(x - p4.params()[r * 16 + k])) << r << "," << c;
      }
  }
}

template <unsigned Bits, class Scales>
void expect_beats_uniform(const Matrix<float>& w) {
  constexpr std::size_t K = std::size_t{1} << Bits;
  const auto p = KMeansCodebook<Bits, Scales>::quantize(w);
  const double kmeans = test::mse(p.dequantize(), w);
  // The uniform grid of the same width over [min, max] of each group, and (per tensor) the best
  // symmetric uniform grid.
  double grid = 0.0;
  const bool per_row = std::is_same_v<Scales, PerRow>;
  const std::size_t groups = per_row ? w.rows() : 1;
  for (std::size_t g = 0; g < groups; ++g) {
    std::vector<float> v;
    if (per_row)
      v.assign(w.row(g).begin(), w.row(g).end());
    else
      v.assign(w.flat().begin(), w.flat().end());
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    std::vector<double> levels;
    for (std::size_t k = 0; k < K; ++k)
      levels.push_back(*lo + (static_cast<double>(*hi) - *lo) * static_cast<double>(k) / (K - 1));
    grid += uniform_grid_mse(v, levels) * static_cast<double>(v.size());
    if (!per_row && Bits >= 2) {
      EXPECT_LT(kmeans, best_symmetric_uniform_mse(v, K)) << Bits;
    }
  }
  grid /= static_cast<double>(w.size());
  EXPECT_LT(kmeans, grid) << "bits " << Bits;
}

TEST(KMeansCodebook, BeatsUniformGridsOnGaussianData) {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    const auto w = test::gaussian(32, 256, seed, 0.02f);
    expect_beats_uniform<1, PerTensor>(w);
    expect_beats_uniform<2, PerTensor>(w);
    expect_beats_uniform<4, PerTensor>(w);
    expect_beats_uniform<2, PerRow>(w);
    expect_beats_uniform<4, PerRow>(w);
  }
}

TEST(KMeansCodebook, LloydDoesNotIncreaseTheErrorOfItsInitialisation) {
  const auto w = test::gaussian(16, 64, 9);
  std::vector<float> v(w.flat().begin(), w.flat().end());
  const auto p = KMeansCodebook<2>::quantize(w);
  std::sort(v.begin(), v.end());
  std::vector<double> init;
  for (std::size_t k = 0; k < 4; ++k) {
    const double uniform = v.front() + (static_cast<double>(v.back()) - v.front()) * k / 3.0;
    init.push_back((v[(2 * k + 1) * v.size() / 8] + uniform) / 2.0);
  }
  EXPECT_LT(test::mse(p.dequantize(), w), uniform_grid_mse(v, init));
}

}  // namespace
}  // namespace pquant
