// Int8AbsMax (weights) against hand-computed cases and an independent scalar reference.
#include <pquant/quantizers/int8_absmax.hpp>

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

using test::Grouping;

// a = max(absmax, 1e-5), q = clamp(round_half_even(W * (127 / a)), -128, 127), value = (a/127) q.
Matrix<float> reference(const Matrix<float>& w, Grouping grouping, Matrix<float>* codes = nullptr) {
  const std::size_t groups = grouping.count(w.rows(), w.cols());
  std::vector<float> absmax(groups, 0.0f);
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) {
      float& a = absmax[grouping.of(r, c, w.cols())];
      if (std::fabs(w(r, c)) > a) a = std::fabs(w(r, c));
    }
  Matrix<float> out(w.rows(), w.cols());
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) {
      const float a = std::max(absmax[grouping.of(r, c, w.cols())], 1e-5f);
      float q = test::round_half_even(w(r, c) * (127.0f / a));
      q = std::min(127.0f, std::max(-128.0f, q));
      if (codes != nullptr) (*codes)(r, c) = q;
      out(r, c) = (a / 127.0f) * (q == 0.0f ? 0.0f : q);
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

TEST(Int8AbsMax, HandComputedRoundHalfToEven) {
  // absmax 127 -> gain exactly 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2, -2.5 -> -2.
  const auto w = test::from(1, 7, {127, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f});
  const auto p = Int8AbsMax<PerRow>::quantize(w);
  const int expected[] = {127, 0, 2, 2, 0, -2, -2};
  for (std::size_t c = 0; c < 7; ++c) EXPECT_EQ(p.view().value(0, c), expected[c]) << c;
  EXPECT_EQ(p.params()[0], 1.0f);  // scale = 127 / 127
  // absmax 63.5 -> gain 2: 0.25 -> 0.5 -> 0; 0.75 -> 1.5 -> 2; -1.25 -> -2.5 -> -2.
  const auto p2 = Int8AbsMax<PerRow>::quantize(test::from(1, 4, {-63.5f, 0.25f, 0.75f, -1.25f}));
  const int expected2[] = {-127, 0, 2, -2};
  for (std::size_t c = 0; c < 4; ++c) EXPECT_EQ(p2.view().value(0, c), expected2[c]) << c;
  EXPECT_EQ(p2.params()[0], 0.5f);
}

TEST(Int8AbsMax, RandomOddShapesMatchReference) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {127, 129}};
  std::uint32_t seed = 40;
  for (const auto& s : shapes) {
    const auto w = test::gaussian(s[0], s[1], seed++, 0.1f);
    expect_matches_reference<Int8AbsMax<PerRow>>(w, {Grouping::kRow});
    expect_matches_reference<Int8AbsMax<PerTensor>>(w, {Grouping::kTensor});
    expect_matches_reference<Int8AbsMax<PerGroup<64>>>(w, {Grouping::kColumns, 64});
    // Codes stay within [-127, 127] with an absmax scale and the extreme hits +-127.
    Matrix<float> codes(s[0], s[1]);
    reference(w, {Grouping::kTensor}, &codes);
    const auto p = Int8AbsMax<PerTensor>::quantize(w);
    float extreme = 0.0f;
    for (std::size_t r = 0; r < s[0]; ++r)
      for (std::size_t c = 0; c < s[1]; ++c) {
        ASSERT_EQ(static_cast<float>(p.view().value(r, c)), codes(r, c));
        extreme = std::max(extreme, std::fabs(codes(r, c)));
      }
    EXPECT_EQ(extreme, 127.0f);
  }
}

TEST(Int8AbsMax, AllZeroConstantHugeDenormal) {
  const auto z = Int8AbsMax<PerRow>::quantize(test::filled(3, 7, 0.0f));
  for (float s : z.params()) EXPECT_EQ(s, 1e-5f / 127.0f);
  const Matrix<float> zd = z.dequantize();
  for (float v : zd.flat()) EXPECT_EQ(test::bits_of(v), test::bits_of(0.0f));
  const Matrix<float> k = Int8AbsMax<PerRow>::quantize(test::filled(2, 5, -3.0f)).dequantize();
  for (float v : k.flat()) EXPECT_FLOAT_EQ(v, -3.0f);
  auto huge = test::gaussian(3, 7, 3, 1e37f);
  huge(1, 1) = 1e38f;
  huge(2, 2) = -1e38f;
  expect_matches_reference<Int8AbsMax<PerRow>>(huge, {Grouping::kRow});
  // At FLT_MAX the scale is lowered one ulp so that 127 * scale does not round to infinity.
  const auto top = Int8AbsMax<PerTensor>::quantize(test::from(1, 3, {FLT_MAX, -FLT_MAX, 1e38f}));
  const Matrix<float> td = top.dequantize();
  for (float v : td.flat()) EXPECT_TRUE(std::isfinite(v)) << v;
  EXPECT_EQ(top.view().value(0, 0), 127);
  EXPECT_EQ(top.view().value(0, 1), -127);
  // Denormal group: absmax < eps, so a = eps and every code is 0.
  const auto tiny = test::gaussian(3, 7, 4, 1e-40f);
  expect_matches_reference<Int8AbsMax<PerRow>>(tiny, {Grouping::kRow});
  const Matrix<float> tinyd = Int8AbsMax<PerRow>::quantize(tiny).dequantize();
  for (float v : tinyd.flat()) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace pquant
