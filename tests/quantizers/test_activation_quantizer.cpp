// Int8AbsMaxPerToken and NoActivationQuant against hand-computed cases and a scalar reference.
#include <pquant/quantizers/activation_quantizer.hpp>

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

struct Quantized {
  Matrix<std::int8_t> q;
  std::vector<float> gain;
};

// Per row: gain = 127 / max(absmax, 1e-5), q = clamp(round_half_even(x * gain), -128, 127).
Quantized reference(const Matrix<float>& x) {
  Quantized out{Matrix<std::int8_t>(x.rows(), x.cols()), std::vector<float>(x.rows())};
  for (std::size_t t = 0; t < x.rows(); ++t) {
    float absmax = 0.0f;
    for (std::size_t i = 0; i < x.cols(); ++i) absmax = std::max(absmax, std::fabs(x(t, i)));
    const float gain = 127.0f / std::max(absmax, 1e-5f);
    out.gain[t] = gain;
    for (std::size_t i = 0; i < x.cols(); ++i) {
      const float q = test::round_half_even(x(t, i) * gain);
      out.q(t, i) = static_cast<std::int8_t>(std::min(127.0f, std::max(-128.0f, q)));
    }
  }
  return out;
}

void expect_matches_reference(const Matrix<float>& x) {
  const Quantized ref = reference(x);
  Matrix<std::int8_t> q(x.rows(), x.cols());
  std::vector<float> gain(x.rows());
  Int8AbsMaxPerToken::quantize(x, q, gain);
  Matrix<float> fake(x.rows(), x.cols());
  Int8AbsMaxPerToken::fake_quantize(x, fake);
  for (std::size_t t = 0; t < x.rows(); ++t) {
    ASSERT_EQ(gain[t], ref.gain[t]) << "token " << t;
    for (std::size_t i = 0; i < x.cols(); ++i) {
      ASSERT_EQ(q(t, i), ref.q(t, i)) << "at (" << t << ", " << i << ")";
      const float expected = static_cast<float>(ref.q(t, i)) / ref.gain[t];
      ASSERT_EQ(test::bits_of(fake(t, i)), test::bits_of(expected))
          << "at (" << t << ", " << i << ")";
    }
  }
}

TEST(Int8AbsMaxPerToken, HandComputedRoundHalfToEven) {
  // Row 0: absmax 127 -> gain 1. Row 1: absmax 63.5 -> gain 2 (0.25 -> 0.5 -> 0, 0.75 -> 2,
  // 1.25 -> 2.5 -> 2, -0.75 -> -1.5 -> -2).
  const auto x =
      test::from(2, 5, {127, 0.5f, 1.5f, 2.5f, -0.5f, 63.5f, 0.25f, 0.75f, 1.25f, -0.75f});
  Matrix<std::int8_t> q(2, 5);
  std::vector<float> gain(2);
  Int8AbsMaxPerToken::quantize(x, q, gain);
  EXPECT_EQ(gain[0], 1.0f);
  EXPECT_EQ(gain[1], 2.0f);
  const int expected[] = {127, 0, 2, 2, 0, 127, 0, 2, 2, -2};
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(q.flat()[i], expected[i]) << i;
  Matrix<float> fake(2, 5);
  Int8AbsMaxPerToken::fake_quantize(x, fake);
  const float expected_fake[] = {127, 0, 2, 2, 0, 63.5f, 0, 1, 1, -1};
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(fake.flat()[i], expected_fake[i]) << i;
}

TEST(Int8AbsMaxPerToken, ExplicitGainClampsAtBothEnds) {
  // With a caller's gain codes can leave [-127, 127]: -128 is kept, -128.5 rounds to -128 (even),
  // -130 clamps to -128, 127.5 rounds to 128 and clamps to 127.
  const std::vector<float> x = {-130.0f, -128.5f, -127.5f, -128.0f, 127.5f, 200.0f, -1e30f};
  std::vector<std::int8_t> q(x.size());
  Int8AbsMaxPerToken::quantize_row(x, 1.0f, q);
  const int expected[] = {-128, -128, -128, -128, 127, 127, -128};
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(q[i], expected[i]) << i;
  EXPECT_THROW(Int8AbsMaxPerToken::quantize_row(x, 0.0f, q), ValueError);
  EXPECT_THROW(Int8AbsMaxPerToken::quantize_row(x, NAN, q), ValueError);
  std::vector<std::int8_t> short_q(3);
  EXPECT_THROW(Int8AbsMaxPerToken::quantize_row(x, 1.0f, short_q), ShapeError);
}

TEST(Int8AbsMaxPerToken, RandomOddShapesMatchReference) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {127, 129}};
  std::uint32_t seed = 60;
  for (const auto& s : shapes) expect_matches_reference(test::gaussian(s[0], s[1], seed++, 3.0f));
}

TEST(Int8AbsMaxPerToken, AllZeroHugeDenormalRows) {
  auto x = test::gaussian(4, 9, 7);
  for (std::size_t i = 0; i < 9; ++i) {
    x(0, i) = 0.0f;                            // all-zero token
    x(1, i) = (i % 2 ? 1e38f : -3e38f);        // huge
    x(2, i) = static_cast<float>(i) * 1e-41f;  // denormal
  }
  x(3, 4) = FLT_MAX;
  expect_matches_reference(x);
  Matrix<std::int8_t> q(4, 9);
  std::vector<float> gain(4);
  Int8AbsMaxPerToken::quantize(x, q, gain);
  EXPECT_EQ(gain[0], 127.0f / 1e-5f);  // finite scale for the zero row
  for (std::size_t i = 0; i < 9; ++i) EXPECT_EQ(q(0, i), 0);
  Matrix<float> fake(4, 9);
  Int8AbsMaxPerToken::fake_quantize(x, fake);
  for (float v : fake.flat()) EXPECT_TRUE(std::isfinite(v)) << v;
  // A row at +-FLT_MAX: q / gain must not round to infinity.
  const auto top = test::from(1, 3, {FLT_MAX, -FLT_MAX, 1.0f});
  Matrix<float> top_fake(1, 3);
  Int8AbsMaxPerToken::fake_quantize(top, top_fake);
  for (float v : top_fake.flat()) EXPECT_TRUE(std::isfinite(v)) << v;
}

TEST(Int8AbsMaxPerToken, InPlaceFakeQuantizeEqualsOutOfPlace) {
  auto x = test::gaussian(5, 33, 8);
  Matrix<float> out(5, 33);
  Int8AbsMaxPerToken::fake_quantize(x, out);
  Int8AbsMaxPerToken::fake_quantize(x, x.view());
  test::expect_bitwise_equal(x, out);
}

TEST(Int8AbsMaxPerToken, Errors) {
  auto x = test::gaussian(3, 7, 9);
  Matrix<std::int8_t> q(3, 7);
  std::vector<float> gain(3);
  x(2, 5) = INFINITY;
  try {
    Int8AbsMaxPerToken::quantize(x, q, gain);
    FAIL() << "no exception";
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'x'"), std::string::npos) << what;
    EXPECT_NE(what.find("(2, 5)"), std::string::npos) << what;
  }
  x(2, 5) = NAN;
  Matrix<float> out(3, 7);
  EXPECT_THROW(Int8AbsMaxPerToken::fake_quantize(x, out), ValueError);
  x(2, 5) = 0.0f;
  std::vector<float> short_gain(2);
  EXPECT_THROW(Int8AbsMaxPerToken::quantize(x, q, short_gain), ShapeError);
  Matrix<std::int8_t> wrong_q(3, 6);
  EXPECT_THROW(Int8AbsMaxPerToken::quantize(x, wrong_q, gain), ShapeError);
  Matrix<float> wrong_out(2, 7);
  EXPECT_THROW(Int8AbsMaxPerToken::fake_quantize(x, wrong_out), ShapeError);
  const MatrixView<const float> empty(x.data(), 0, 7);
  EXPECT_THROW(Int8AbsMaxPerToken::fake_quantize(empty, out), ShapeError);
  EXPECT_THROW(Int8AbsMaxPerToken::gain(std::span<const float>()), ShapeError);
}

TEST(NoActivationQuant, IsTheIdentity) {
  static_assert(!NoActivationQuant::kQuantizes && Int8AbsMaxPerToken::kQuantizes);
  const auto x = test::gaussian(3, 7, 10);
  Matrix<float> out(3, 7);
  NoActivationQuant::fake_quantize(x, out);
  test::expect_bitwise_equal(out, x);
  Matrix<float> wrong(3, 8);
  EXPECT_THROW(NoActivationQuant::fake_quantize(x, wrong), ShapeError);
}

}  // namespace
}  // namespace pquant
