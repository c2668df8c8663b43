// SignAbsMean against hand-computed cases and an independent scalar reference.
#include <pquant/quantizers/sign_absmean.hpp>

#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cstdint>
#include <limits>
#include <cmath>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

using test::Grouping;

// mu = mean(W), lambda = mean|W| per group (double sums), value = lambda * sign(W - mu),
// sign(0) = +1, with W - mu evaluated in double (exact sign, no overflow).
Matrix<float> reference(const Matrix<float>& w, Grouping grouping) {
  const std::size_t groups = grouping.count(w.rows(), w.cols());
  std::vector<double> sum(groups, 0.0), abs_sum(groups, 0.0), n(groups, 0.0);
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) {
      const std::size_t g = grouping.of(r, c, w.cols());
      sum[g] += w(r, c);
      abs_sum[g] += std::fabs(static_cast<double>(w(r, c)));
      n[g] += 1.0;
    }
  Matrix<float> out(w.rows(), w.cols());
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) {
      const std::size_t g = grouping.of(r, c, w.cols());
      const float mu = static_cast<float>(sum[g] / n[g]);
      const float lambda = static_cast<float>(abs_sum[g] / n[g]);
      const bool positive = static_cast<double>(w(r, c)) - static_cast<double>(mu) >= 0.0;
      out(r, c) = positive ? lambda : -lambda;
    }
  return out;
}

template <class Q>
void expect_matches_reference(const Matrix<float>& w, Grouping grouping) {
  const auto packed = Q::quantize(w);
  const Matrix<float> ref = reference(w, grouping);
  test::expect_bitwise_equal(packed.dequantize(), ref);
  Matrix<float> fake(w.rows(), w.cols());
  Q::fake_quantize(w, fake);
  test::expect_bitwise_equal(fake, ref);
  // Unpacked: the same values, the packed view's codes and the same scales.
  Matrix<std::int8_t> codes(w.rows(), w.cols());
  Matrix<float> values(w.rows(), w.cols());
  std::vector<float> lambda(packed.params().size());
  Q::quantize_unpacked(w, codes.view(), values.view(), lambda);
  test::expect_bitwise_equal(values, ref);
  const auto pv = packed.view();
  for (std::size_t r = 0; r < w.rows(); ++r)
    for (std::size_t c = 0; c < w.cols(); ++c) ASSERT_EQ(codes(r, c), pv.value(r, c));
  for (std::size_t g = 0; g < lambda.size(); ++g)
    EXPECT_EQ(std::bit_cast<std::uint32_t>(lambda[g]),
              std::bit_cast<std::uint32_t>(packed.params()[g]));
}

TEST(SignAbsMean, HandComputedPerTensor) {
  // sum 2 -> mu = 1/3; sum|W| = 7 -> lambda = 7/6. 0 < 1/3 so 0 maps to -lambda.
  const auto w = test::from(2, 3, {1, -2, 3, 0, 0.5f, -0.5f});
  const auto p = SignAbsMean<PerTensor>::quantize(w);
  const float l = static_cast<float>(7.0 / 6.0);
  ASSERT_EQ(p.params().size(), 1u);
  EXPECT_EQ(p.params()[0], l);
  const float expected[] = {l, -l, l, -l, l, -l};
  const Matrix<float> d = p.dequantize();
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(d.flat()[i], expected[i]) << i;
  EXPECT_EQ(p.code(0, 0), 1);  // bit 1 means +1
  EXPECT_EQ(p.code(0, 1), 0);
}

TEST(SignAbsMean, HandComputedPerRowSignOfZeroIsPlusOne) {
  // Row 0: mu = 2/3, lambda = 2. Row 1: mu = 0, lambda = 1/3, and W - mu = 0 for W = 0 -> +1.
  const auto w = test::from(2, 3, {1, -2, 3, 0, 0.5f, -0.5f});
  const Matrix<float> d = SignAbsMean<PerRow>::quantize(w).dequantize();
  const float t = static_cast<float>(1.0 / 3.0);
  const float expected[] = {2, -2, 2, t, t, -t};
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(d.flat()[i], expected[i]) << i;
}

TEST(SignAbsMean, HandComputedPerGroupWithShortLastGroup) {
  // Groups of 2: [4, -2] mu 1 lambda 3; [1, 3] mu 2 lambda 2; [-6] mu -6 lambda 6 (sign(0) = +1).
  const auto w = test::from(1, 5, {4, -2, 1, 3, -6});
  const auto p = SignAbsMean<PerGroup<2>>::quantize(w);
  ASSERT_EQ(p.params().size(), 3u);
  const float expected[] = {3, -3, -2, 2, 6};
  const Matrix<float> d = p.dequantize();
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(d.flat()[i], expected[i]) << i;
  const auto s = SignAbsMean<PerGroup<2>>::statistics(w);
  EXPECT_EQ(s.mu, (std::vector<float>{1, 2, -6}));
  EXPECT_EQ(s.lambda, (std::vector<float>{3, 2, 6}));
}

TEST(SignAbsMean, RandomOddShapesMatchReference) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {127, 129}};
  std::uint32_t seed = 1;
  for (const auto& s : shapes) {
    const auto w = test::gaussian(s[0], s[1], seed++, 0.02f);
    expect_matches_reference<SignAbsMean<PerTensor>>(w, {Grouping::kTensor});
    expect_matches_reference<SignAbsMean<PerRow>>(w, {Grouping::kRow});
    expect_matches_reference<SignAbsMean<PerGroup<64>>>(w, {Grouping::kColumns, 64});
    expect_matches_reference<SignAbsMean<PerGroup<5>>>(w, {Grouping::kColumns, 5});
  }
}

TEST(SignAbsMean, AllZeroGivesZeroScaleAndPlusOneCodes) {
  const auto w = test::filled(3, 7, 0.0f);
  const auto p = SignAbsMean<PerRow>::quantize(w);
  for (float l : p.params()) EXPECT_EQ(l, 0.0f);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t c = 0; c < 7; ++c) EXPECT_EQ(p.code(r, c), 1);
  const Matrix<float> d = p.dequantize();
  for (float v : d.flat()) EXPECT_EQ(test::bits_of(v), test::bits_of(0.0f));  // +0, not -0
}

TEST(SignAbsMean, ConstantTensorGivesItsMagnitude) {
  const auto w = test::filled(4, 9, -0.75f);
  const Matrix<float> d = SignAbsMean<PerTensor>::quantize(w).dequantize();
  for (float v : d.flat()) EXPECT_EQ(v, 0.75f);  // mu = c so every code is +1, lambda = |c|
}

TEST(SignAbsMean, HugeValuesStayFinite) {
  // Sums of 1e38s overflow float but not the double accumulators; mu, lambda stay finite.
  auto w = test::filled(3, 7, 1e38f);
  w(0, 0) = -3e38f;
  w(2, 6) = FLT_MAX;
  w(1, 3) = -FLT_MAX;
  const Matrix<float> d = SignAbsMean<PerTensor>::quantize(w).dequantize();
  for (float v : d.flat()) EXPECT_TRUE(std::isfinite(v));
  expect_matches_reference<SignAbsMean<PerTensor>>(w, {Grouping::kTensor});
  expect_matches_reference<SignAbsMean<PerRow>>(w, {Grouping::kRow});
  const auto all_max = test::filled(2, 3, FLT_MAX);
  const Matrix<float> d2 = SignAbsMean<PerTensor>::quantize(all_max).dequantize();
  for (float v : d2.flat()) EXPECT_EQ(v, FLT_MAX);
}

TEST(SignAbsMean, DenormalsMatchReference) {
  auto w = test::gaussian(3, 7, 11, 1e-40f);
  w(1, 1) = FLT_TRUE_MIN;
  expect_matches_reference<SignAbsMean<PerTensor>>(w, {Grouping::kTensor});
  expect_matches_reference<SignAbsMean<PerRow>>(w, {Grouping::kRow});
}

TEST(SignAbsMean, QuantizeUnpackedRejectsBadInput) {
  Matrix<float> w(3, 4);
  Matrix<std::int8_t> codes(3, 4), small_codes(3, 3);
  Matrix<float> values(3, 4);
  std::vector<float> one(1), two(2);
  EXPECT_THROW(SignAbsMean<PerTensor>::quantize_unpacked(w, small_codes.view(), values.view(), one),
               ShapeError);
  EXPECT_THROW(SignAbsMean<PerTensor>::quantize_unpacked(w, codes.view(), values.view(), two),
               ShapeError);
  w(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(SignAbsMean<PerTensor>::quantize_unpacked(w, codes.view(), values.view(), one),
               ValueError);
}

}  // namespace
}  // namespace pquant
