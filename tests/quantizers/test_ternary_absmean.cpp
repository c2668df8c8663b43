// TernaryAbsMean against hand-computed cases and an independent scalar reference.
#include <pquant/quantizers/ternary_absmean.hpp>

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

using test::Grouping;

// gamma = mean|W| (double sum), W_t = clip(round_half_even(W / (gamma + 1e-5)), -1, 1) in FP32.
Matrix<float> reference(const Matrix<float>& w, Grouping grouping) {
  const std::size_t groups = grouping.count(w.rows(), w.cols());
  std::vector<double> abs_sum(groups, 0.0), n(groups, 0.0);
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) {
      const std::size_t g = grouping.of(r, c, w.cols());
      abs_sum[g] += std::fabs(static_cast<double>(w(r, c)));
      n[g] += 1.0;
    }
  Matrix<float> out(w.rows(), w.cols());
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) {
      const std::size_t g = grouping.of(r, c, w.cols());
      const float gamma = static_cast<float>(abs_sum[g] / n[g]);
      float t = test::round_half_even(w(r, c) / (gamma + 1e-5f));
      if (t > 1.0f) t = 1.0f;
      if (t < -1.0f) t = -1.0f;
      out(r, c) = gamma * (t == 0.0f ? 0.0f : t);
    }
  return out;
}

template <class Q>
void expect_matches_reference(const Matrix<float>& w, Grouping grouping) {
  const Matrix<float> ref = reference(w, grouping);
  test::expect_bitwise_equal(Q::quantize(w).dequantize(), ref);
  Matrix<float> fake(w.rows(), w.cols());
  Q::fake_quantize(w, fake);
  test::expect_bitwise_equal(fake, ref);
}

TEST(TernaryAbsMean, HandComputed) {
  // sum|W| = 7 -> gamma = 7/6 ~ 1.1667. W / gamma = 0.086, -0.43, 1.03, 1.71, -2.57, 0.17
  // -> round 0, 0, 1, 2, -3, 0 -> clip 0, 0, 1, 1, -1, 0.
  const auto w = test::from(2, 3, {0.1f, -0.5f, 1.2f, 2.0f, -3.0f, 0.2f});
  const auto p = TernaryAbsMean<PerTensor>::quantize(w);
  const float g = static_cast<float>(7.0 / 6.0);
  EXPECT_EQ(p.params()[0], g);
  const int codes[] = {0, 0, 1, 1, -1, 0};
  const Matrix<float> d = p.dequantize();
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(p.view().value(i / 3, i % 3), codes[i]) << i;
    EXPECT_EQ(d.flat()[i], g * static_cast<float>(codes[i])) << i;
  }
}

// Finds a in a small window around `start` with fl(a / (gamma + eps)) == target exactly, where
// the row is {a, b} per row and gamma = mean(|a|, |b|); the premise is checked in FP32 here.
float find_exact_ratio(float start, float b, float target) {
  float up = start, down = start;
  for (int i = 0; i < 1 << 16; ++i) {
    for (float cand : {up, down}) {
      const float gamma =
          static_cast<float>((std::fabs(static_cast<double>(cand)) + std::fabs(b)) / 2.0);
      if (cand / (gamma + 1e-5f) == target) return cand;
    }
    up = std::nextafter(up, FLT_MAX);
    down = std::nextafter(down, 0.0f);
  }
  return 0.0f;
}

TEST(TernaryAbsMean, RoundsHalfToEven) {
  // a / (gamma + eps) == 0.5 exactly -> 0 (half to even), == -0.5 -> 0; 1.5 -> 2 -> clip 1.
  // For {a, 1}: a / ((a + 1) / 2 + eps) = 0.5 near a = 1/3.
  const float a = find_exact_ratio(1.0f / 3.0f, 1.0f, 0.5f);
  ASSERT_NE(a, 0.0f) << "no float a with an exact 0.5 ratio found";
  const auto p = TernaryAbsMean<PerRow>::quantize(test::from(2, 2, {a, 1.0f, -a, 1.0f}));
  EXPECT_EQ(p.view().value(0, 0), 0);
  EXPECT_EQ(p.view().value(1, 0), 0);
  EXPECT_EQ(p.view().value(0, 1), 1);
  // 1.5: a / ((a + 0.5) / 2 + eps) = 1.5 near a = 1.5.
  const float a15 = find_exact_ratio(1.5f, 0.5f, 1.5f);
  ASSERT_NE(a15, 0.0f);
  const auto p15 = TernaryAbsMean<PerRow>::quantize(test::from(1, 2, {a15, 0.5f}));
  EXPECT_EQ(p15.view().value(0, 0), 1);
  EXPECT_EQ(p15.view().value(0, 1), 0);  // 0.5 / ~1.0 < 0.5
}

TEST(TernaryAbsMean, RandomOddShapesMatchReference) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {127, 129}};
  std::uint32_t seed = 20;
  for (const auto& s : shapes) {
    const auto w = test::gaussian(s[0], s[1], seed++, 0.05f);
    expect_matches_reference<TernaryAbsMean<PerTensor>>(w, {Grouping::kTensor});
    expect_matches_reference<TernaryAbsMean<PerRow>>(w, {Grouping::kRow});
    expect_matches_reference<TernaryAbsMean<PerGroup<64>>>(w, {Grouping::kColumns, 64});
  }
}

TEST(TernaryAbsMean, AllZeroConstantHugeDenormal) {
  const Matrix<float> z =
      TernaryAbsMean<PerTensor>::quantize(test::filled(3, 7, 0.0f)).dequantize();
  for (float v : z.flat()) EXPECT_EQ(test::bits_of(v), test::bits_of(0.0f));
  // Constant c: c / (|c| + eps) rounds to sign(c), value gamma * sign(c) = c.
  const Matrix<float> k = TernaryAbsMean<PerRow>::quantize(test::filled(2, 5, -0.25f)).dequantize();
  for (float v : k.flat()) EXPECT_EQ(v, -0.25f);
  auto huge = test::filled(3, 7, 1e38f);
  huge(0, 0) = -FLT_MAX;
  huge(1, 2) = 0.0f;
  const Matrix<float> h = TernaryAbsMean<PerTensor>::quantize(huge).dequantize();
  for (float v : h.flat()) EXPECT_TRUE(std::isfinite(v));
  expect_matches_reference<TernaryAbsMean<PerTensor>>(huge, {Grouping::kTensor});
  // Denormals: gamma ~ 1e-40 is far below eps, so every ratio is tiny and rounds to 0.
  const auto tiny = test::gaussian(3, 7, 5, 1e-40f);
  const Matrix<float> t = TernaryAbsMean<PerTensor>::quantize(tiny).dequantize();
  for (float v : t.flat()) EXPECT_EQ(v, 0.0f);
  expect_matches_reference<TernaryAbsMean<PerRow>>(tiny, {Grouping::kRow});
}

}  // namespace
}  // namespace pquant
