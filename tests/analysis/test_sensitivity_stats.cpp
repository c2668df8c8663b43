// Sensitivity statistics and max pooling on hand-computed cases.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "pquant/analysis/sensitivity_stats.hpp"

namespace pquant::analysis {
namespace {

TEST(SensitivityStats, FlatMapHasGiniZeroAndTopShareOnePercent) {
  const std::vector<double> s(200, 3.0);
  const SensitivityStats r = sensitivity_stats(s);
  EXPECT_NEAR(r.gini, 0.0, 1e-12);
  EXPECT_NEAR(r.top1pct_share, 2.0 / 200.0, 1e-12);  // top 1% of 200 = 2 weights
  EXPECT_DOUBLE_EQ(r.max_over_median, 1.0);
  EXPECT_DOUBLE_EQ(r.total, 600.0);
}

TEST(SensitivityStats, OneWeightHoldingEverything) {
  std::vector<double> s(10, 0.0);
  s[7] = 5.0;
  const SensitivityStats r = sensitivity_stats(s);
  EXPECT_NEAR(r.gini, 9.0 / 10.0, 1e-12);  // (n - 1) / n
  EXPECT_DOUBLE_EQ(r.top1pct_share, 1.0);  // ceil(1% of 10) = 1 weight
  EXPECT_DOUBLE_EQ(r.median, 0.0);
  EXPECT_TRUE(std::isinf(r.max_over_median));
}

TEST(SensitivityStats, HandComputedSmallCase) {
  // {1, 2, 3, 4}: Gini = sum_ij |xi - xj| / (2 n^2 mean) = 20 / (2 * 16 * 2.5) = 0.25.
  const std::vector<double> s = {3, 1, 4, 2};
  const SensitivityStats r = sensitivity_stats(s);
  EXPECT_NEAR(r.gini, 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(r.median, 2.5);
  EXPECT_DOUBLE_EQ(r.max, 4.0);
  EXPECT_DOUBLE_EQ(r.max_over_median, 4.0 / 2.5);
  EXPECT_DOUBLE_EQ(r.top1pct_share, 0.4);
  // 101 values: ceil(1.01) = 2 weights in the top 1%.
  std::vector<double> t(101, 1.0);
  t[0] = 10;
  t[50] = 20;
  EXPECT_DOUBLE_EQ(sensitivity_stats(t).top1pct_share, 30.0 / 129.0);
}

TEST(SensitivityStats, GiniMatchesThePairwiseDefinition) {
  std::vector<double> s;
  for (int i = 0; i < 37; ++i) s.push_back(std::pow(1.3, i % 11) + 0.1 * i);
  double pair = 0, sum = 0;
  for (double a : s) {
    sum += a;
    for (double b : s) pair += std::fabs(a - b);
  }
  const double n = static_cast<double>(s.size());
  EXPECT_NEAR(sensitivity_stats(s).gini, pair / (2 * n * sum), 1e-12);
}

TEST(SensitivityStats, RejectsBadInput) {
  EXPECT_THROW(sensitivity_stats(std::vector<double>{}), ValueError);
  EXPECT_THROW(sensitivity_stats(std::vector<double>{1, -1}), ValueError);
  EXPECT_THROW(sensitivity_stats(std::vector<double>{1, NAN}), ValueError);
  EXPECT_THROW(sensitivity_stats(std::vector<double>{0, 0}), ValueError);
}

TEST(MaxPool, TakesTheMaximumOfEachBlock) {
  // 3 x 5 -> at most 2 x 2: blocks of 2 rows x 3 columns, the last ones smaller.
  const std::vector<double> s = {1, 2, 3,  4, 5,  //
                                 6, 7, 8,  9, 1,  //
                                 0, 0, 11, 0, 12};
  const PooledMap m = max_pool(s, 3, 5, 2, 2);
  EXPECT_EQ(m.rows, 2u);
  EXPECT_EQ(m.cols, 2u);
  EXPECT_EQ(m.block_rows, 2u);
  EXPECT_EQ(m.block_cols, 3u);
  EXPECT_EQ(m.values, (std::vector<double>{8, 9, 11, 12}));
  const PooledMap same = max_pool(s, 3, 5, 128, 128);
  EXPECT_EQ(same.values, s);
  EXPECT_THROW(max_pool(s, 4, 5, 2, 2), ShapeError);
}

}  // namespace
}  // namespace pquant::analysis
