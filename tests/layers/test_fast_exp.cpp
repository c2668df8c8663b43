// fast_exp / fast_sigmoid (layers/fast_exp.hpp) against exp in double, over the whole clamped
// range, at the clamp edges, and for the sign-selected sigmoid branches.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "pquant/layers/fast_exp.hpp"

namespace {

TEST(FastExp, RelativeErrorBelowTwoToMinus23OverTheRange) {
  double worst = 0;
  auto check = [&](float x) {
    const double ref = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(pquant::fast_exp(x) - ref) / ref);
  };
  // 2^21 points evenly over [-87.3, 88] and 2^20 over [-1, 1] (where r ~ x itself).
  for (int i = 0; i <= (1 << 21); ++i) check(-87.3f + 175.3f * static_cast<float>(i) / (1 << 21));
  for (int i = 0; i <= (1 << 20); ++i) check(-1.0f + 2.0f * static_cast<float>(i) / (1 << 20));
  EXPECT_LT(worst, std::ldexp(1.0, -23));
  EXPECT_EQ(pquant::fast_exp(0.0f), 1.0f);
}

TEST(FastExp, ClampsInsteadOfOverflowing) {
  const float lo = pquant::fast_exp(-1000.0f), hi = pquant::fast_exp(1000.0f);
  EXPECT_GT(lo, 0.0f);
  EXPECT_EQ(lo, pquant::fast_exp(-87.3f));  // exp(-87.3) = 1.22e-38, the smallest value
  EXPECT_NEAR(lo, std::exp(static_cast<double>(-87.3f)), 2e-45);
  EXPECT_TRUE(std::isfinite(hi));
  EXPECT_GT(hi, 1e38f);
  EXPECT_EQ(pquant::fast_exp(-std::numeric_limits<float>::infinity()), lo);
  EXPECT_EQ(pquant::fast_exp(std::numeric_limits<float>::infinity()), hi);
}

TEST(FastExp, SigmoidMatchesDoubleOnBothSides) {
  for (float v :
       {-100.0f, -20.0f, -3.5f, -1.0f, -1e-3f, -0.0f, 0.0f, 1e-3f, 1.0f, 3.5f, 20.0f, 100.0f}) {
    const double ref = 1.0 / (1.0 + std::exp(-static_cast<double>(v)));
    const float s = pquant::fast_sigmoid(v);
    // Below -87.3 the clamped exp gives 1.22e-38 instead of ~0: an absolute error of that size.
    EXPECT_NEAR(s, ref, 3e-7 * ref + 1.3e-38) << v;
    EXPECT_GE(s, 0.0f);
    EXPECT_LE(s, 1.0f);
  }
  EXPECT_EQ(pquant::fast_sigmoid(0.0f), 0.5f);
  EXPECT_EQ(pquant::fast_sigmoid(-0.0f), 0.5f);
}

}  // namespace
