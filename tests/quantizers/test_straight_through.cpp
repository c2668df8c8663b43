// Straight-through estimators: identity and clipped identity with each quantizer's clip range.
#include <pquant/quantizers.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

static_assert(SteRule<StraightThrough>);
static_assert(SteRule<ClippedStraightThrough<SignAbsMean<PerRow>>>);
static_assert(SteRule<ClippedStraightThrough<KMeansCodebook<4, PerRow>>>);

TEST(StraightThrough, CopiesTheGradient) {
  const auto latent = test::gaussian(3, 7, 1);
  const auto grad = test::gaussian(3, 7, 2);
  Matrix<float> out(3, 7);
  StraightThrough::backward(latent, grad, out);
  test::expect_bitwise_equal(out, grad);
  // In place (grad_latent is grad_quantized).
  auto inplace = grad;
  StraightThrough::backward(latent, inplace, inplace.view());
  test::expect_bitwise_equal(inplace, grad);
}

TEST(StraightThrough, ShapeErrors) {
  const auto latent = test::gaussian(3, 7, 1);
  const auto grad = test::gaussian(3, 6, 2);
  Matrix<float> out(3, 7), wrong(2, 7);
  EXPECT_THROW(StraightThrough::backward(latent, grad, out), ShapeError);
  EXPECT_THROW(StraightThrough::backward(latent, latent, wrong), ShapeError);
  EXPECT_THROW(ClippedStraightThrough<SignAbsMean<>>::backward(latent, grad, out), ShapeError);
}

// Expected clipped gradient from a per-element "inside" predicate.
template <class Rule, class Inside>
void expect_clipped(const Matrix<float>& latent, const Matrix<float>& grad, Inside inside,
                    std::size_t min_zeroed) {
  Matrix<float> out(latent.rows(), latent.cols());
  Rule::backward(latent, grad, out);
  std::size_t zeroed = 0;
  for (std::size_t r = 0; r < latent.rows(); ++r)
    for (std::size_t c = 0; c < latent.cols(); ++c) {
      const bool in = inside(r, c);
      zeroed += !in;
      ASSERT_EQ(out(r, c), in ? grad(r, c) : 0.0f) << "at (" << r << ", " << c << ")";
    }
  EXPECT_GE(zeroed, min_zeroed);  // the case really exercises clipping
}

TEST(ClippedStraightThrough, SignZeroesOutsideMeanPlusMinusLambda) {
  const auto latent = test::gaussian(5, 33, 3);
  const auto grad = test::gaussian(5, 33, 4);
  // Per row: inside iff |w - mu| <= lambda (mu, lambda recomputed here in double).
  std::vector<double> mu(5), lambda(5);
  for (std::size_t r = 0; r < 5; ++r) {
    double s = 0, a = 0;
    for (float v : latent.row(r)) s += v, a += std::fabs(static_cast<double>(v));
    mu[r] = static_cast<float>(s / 33);
    lambda[r] = static_cast<float>(a / 33);
  }
  expect_clipped<ClippedStraightThrough<SignAbsMean<PerRow>>>(
      latent, grad,
      [&](std::size_t r, std::size_t c) { return std::fabs(latent(r, c) - mu[r]) <= lambda[r]; },
      20);
}

TEST(ClippedStraightThrough, HandComputedSign) {
  // mu = 0, lambda = mean(|-4|, |1|, |-1|, |4|) = 2.5: the gradient of +-4 is zeroed.
  const auto latent = test::from(1, 4, {-4, 1, -1, 4});
  const auto grad = test::from(1, 4, {10, 20, 30, 40});
  Matrix<float> out(1, 4);
  ClippedStraightThrough<SignAbsMean<PerTensor>>::backward(latent, grad, out);
  test::expect_bitwise_equal(out, test::from(1, 4, {0, 20, 30, 0}));
}

TEST(ClippedStraightThrough, TernaryZeroesOutsideGammaPlusEps) {
  const auto latent = test::gaussian(4, 50, 5);
  const auto grad = test::gaussian(4, 50, 6);
  double a = 0;
  for (float v : latent.flat()) a += std::fabs(static_cast<double>(v));
  const float bound = static_cast<float>(a / 200) + 1e-5f;
  expect_clipped<ClippedStraightThrough<TernaryAbsMean<PerTensor>>>(
      latent, grad, [&](std::size_t r, std::size_t c) { return std::fabs(latent(r, c)) <= bound; },
      30);
}

TEST(ClippedStraightThrough, Int8AbsMaxNeverClips) {
  const auto latent = test::gaussian(4, 50, 7);
  const auto grad = test::gaussian(4, 50, 8);
  expect_clipped<ClippedStraightThrough<Int8AbsMax<PerRow>>>(
      latent, grad, [](std::size_t, std::size_t) { return true; }, 0);
}

TEST(ClippedStraightThrough, KMeansZeroesOutsideTheExtremeCentroids) {
  const auto latent = test::gaussian(4, 50, 9);
  const auto grad = test::gaussian(4, 50, 10);
  const std::vector<float> books = KMeansCodebook<2, PerRow>::codebooks(latent);
  expect_clipped<ClippedStraightThrough<KMeansCodebook<2, PerRow>>>(
      latent, grad,
      [&](std::size_t r, std::size_t c) {
        return books[r * 4] <= latent(r, c) && latent(r, c) <= books[r * 4 + 3];
      },
      8);
}

TEST(ClippedStraightThrough, RejectsNonFiniteLatents) {
  auto latent = test::gaussian(2, 3, 11);
  latent(1, 2) = NAN;
  const auto grad = test::gaussian(2, 3, 12);
  Matrix<float> out(2, 3);
  EXPECT_THROW(ClippedStraightThrough<TernaryAbsMean<>>::backward(latent, grad, out), ValueError);
}

}  // namespace
}  // namespace pquant
