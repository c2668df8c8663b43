// Properties every weight quantizer shares: fake_quantize == dequantize(quantize) bit for bit,
// in-place operation, and the errors for bad input.
#include <pquant/quantizers.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <string_view>

#include "reference.hpp"
#include "../common/type_names.hpp"

namespace pquant {
namespace {

template <class Q>
class WeightQuantizerTest : public ::testing::Test {};
using Quantizers =
    ::testing::Types<SignAbsMean<PerTensor>, SignAbsMean<PerRow>, SignAbsMean<PerGroup<64>>,
                     TernaryAbsMean<PerTensor>, TernaryAbsMean<PerGroup<16>>, Int8AbsMax<PerRow>,
                     Int8AbsMax<PerTensor>, KMeansCodebook<1>, KMeansCodebook<2, PerRow>,
                     KMeansCodebook<4, PerGroup<32>>, KMeansCodebook<8>>;
TYPED_TEST_SUITE(WeightQuantizerTest, Quantizers, test::TypeNames);

TYPED_TEST(WeightQuantizerTest, SatisfiesTheConcepts) {
  static_assert(WeightQuantizer<TypeParam>);
  static_assert(ClippableWeightQuantizer<TypeParam>);
  EXPECT_FALSE(TypeParam::kName.empty());
}

TYPED_TEST(WeightQuantizerTest, FakeQuantizeIsDequantizeOfQuantizeBitForBit) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {127, 129}};
  std::uint32_t seed = 100;
  for (const auto& s : shapes) {
    for (const float sigma : {0.02f, 1e-40f, 1e37f}) {
      auto w = test::gaussian(s[0], s[1], seed++, sigma);
      const auto packed = TypeParam::quantize(w);
      Matrix<float> fake(s[0], s[1]);
      TypeParam::fake_quantize(w, fake);
      test::expect_bitwise_equal(fake, packed.dequantize());
      // In place gives the same.
      TypeParam::fake_quantize(w, w.view());
      test::expect_bitwise_equal(w, fake);
    }
  }
}

TYPED_TEST(WeightQuantizerTest, StridedViewsWork) {
  const auto big = test::gaussian(6, 20, 7);
  const MatrixView<const float> w(big.data() + 2, 5, 13, 20);  // 5x13 inside a 6x20 buffer
  Matrix<float> dense(5, 13);
  for (std::size_t r = 0; r < 5; ++r)
    for (std::size_t c = 0; c < 13; ++c) dense(r, c) = w(r, c);
  Matrix<float> out_buffer(5, 16);
  const MatrixView<float> out(out_buffer.data(), 5, 13, 16);
  TypeParam::fake_quantize(w, out);
  const Matrix<float> ref = TypeParam::quantize(dense).dequantize();
  for (std::size_t r = 0; r < 5; ++r)
    for (std::size_t c = 0; c < 13; ++c)
      ASSERT_EQ(test::bits_of(out(r, c)), test::bits_of(ref(r, c)));
}

TYPED_TEST(WeightQuantizerTest, NonFiniteInputIsAValueErrorNamingThePosition) {
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    auto w = test::gaussian(3, 7, 3);
    w(1, 2) = bad;
    try {
      (void)TypeParam::quantize(w);
      FAIL() << "no exception for " << bad;
    } catch (const ValueError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("'w'"), std::string::npos) << what;
      EXPECT_NE(what.find("(1, 2)"), std::string::npos) << what;
    }
    Matrix<float> out(3, 7);
    EXPECT_THROW(TypeParam::fake_quantize(w, out), ValueError);
  }
}

TYPED_TEST(WeightQuantizerTest, ShapeErrors) {
  const auto w = test::gaussian(3, 7, 4);
  const MatrixView<const float> empty_rows(w.data(), 0, 7);
  const MatrixView<const float> empty_cols(w.data(), 3, 0);
  EXPECT_THROW((void)TypeParam::quantize(empty_rows), ShapeError);
  EXPECT_THROW((void)TypeParam::quantize(empty_cols), ShapeError);
  Matrix<float> out(3, 7), wrong(3, 8);
  EXPECT_THROW(TypeParam::fake_quantize(empty_rows, out), ShapeError);
  EXPECT_THROW(TypeParam::fake_quantize(w, wrong), ShapeError);
  // Partially overlapping output: a ValueError rather than silently reading written values.
  auto buffer = test::gaussian(4, 7, 5);
  const MatrixView<const float> in(buffer.data(), 3, 7);
  const MatrixView<float> shifted(buffer.data() + 7, 3, 7);
  EXPECT_THROW(TypeParam::fake_quantize(in, shifted), ValueError);
}

TYPED_TEST(WeightQuantizerTest, FootprintCountsCodesAndParameters) {
  const auto w = test::gaussian(8, 128, 6);
  const MemoryFootprint f = TypeParam::quantize(w).footprint();
  EXPECT_EQ(f.weights, 8u * 128u);
  EXPECT_EQ(f.code_bits, 8u * 128u * TypeParam::format_type::kBits);
  EXPECT_GT(f.bits_per_weight(), static_cast<double>(TypeParam::format_type::kBits));
}

// A quantizer written outside the library: sign with an absmax scale, per row. Satisfying the
// concept is all a layer or ClippedStraightThrough needs.
struct SignAbsMaxPerRow {
  using format_type = SignBit;
  using scales_type = PerRow;
  static constexpr std::string_view kName = "sign_absmax";
  static float absmax(std::span<const float> row) {
    float a = 0.0f;
    for (float v : row) a = std::max(a, std::fabs(v));
    return a;
  }
  static PackedMatrix<SignBit, PerRow> quantize(MatrixView<const float> w) {
    PackedMatrix<SignBit, PerRow> p(w.rows, w.cols);
    for (std::size_t r = 0; r < w.rows; ++r) {
      p.params()[r] = absmax(w.row(r));
      for (std::size_t c = 0; c < w.cols; ++c) p.set_code(r, c, w(r, c) >= 0.0f ? 1 : 0);
    }
    return p;
  }
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    for (std::size_t r = 0; r < w.rows; ++r) {
      const float a = absmax(w.row(r));
      for (std::size_t c = 0; c < w.cols; ++c) out(r, c) = w(r, c) >= 0.0f ? a : -a;
    }
  }
  static void clip_range(MatrixView<const float> w, std::span<ClipRange> ranges) {
    for (std::size_t r = 0; r < w.rows; ++r) ranges[r] = {-0.5, 0.5};  // a fixed range
  }
};

static_assert(WeightQuantizer<SignAbsMaxPerRow>);
static_assert(ClippableWeightQuantizer<SignAbsMaxPerRow>);
static_assert(!WeightQuantizer<int>);
static_assert(!WeightQuantizer<Int8AbsMaxPerToken>);  // an activation policy is not one
static_assert(!ActivationQuantizer<SignAbsMean<>>);
static_assert(!SteRule<SignAbsMean<>>);

template <WeightQuantizer Q>
double relative_error(const Matrix<float>& w) {
  const Matrix<float> q = Q::quantize(w).dequantize();
  double e = 0.0, n = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    e += (w.flat()[i] - q.flat()[i]) * static_cast<double>(w.flat()[i] - q.flat()[i]);
    n += w.flat()[i] * static_cast<double>(w.flat()[i]);
  }
  return std::sqrt(e / n);
}

TEST(WeightQuantizerConcept, AUserQuantizerPlugsIn) {
  const auto w = test::from(2, 3, {0.25f, -1.0f, 0.75f, 0.2f, -0.4f, 0.0f});
  // Row 0 absmax 1: {1, -1, 1}; row 1 absmax 0.4: {0.4, -0.4, 0.4}.
  const Matrix<float> q = SignAbsMaxPerRow::quantize(w).dequantize();
  test::expect_bitwise_equal(q, test::from(2, 3, {1, -1, 1, 0.4f, -0.4f, 0.4f}));
  EXPECT_GT(relative_error<SignAbsMaxPerRow>(w), relative_error<SignAbsMean<PerRow>>(w));
  // The clipped STE uses the user's range: |w| <= 0.5 passes.
  const auto g = test::filled(2, 3, 1.0f);
  Matrix<float> out(2, 3);
  ClippedStraightThrough<SignAbsMaxPerRow>::backward(w, g, out);
  test::expect_bitwise_equal(out, test::from(2, 3, {1, 0, 0, 1, 1, 1}));
}

}  // namespace
}  // namespace pquant
