// KeepLargest (naive mixed precision) against a hand-computed case and an independent scalar
// reference: a full sort of |W| picks the kept weights, sign x absmean over the whole tensor the
// others.
#include <pquant/quantizers/keep_largest.hpp>
#include <pquant/quantizers/sign_absmean.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

#include "reference.hpp"

namespace pquant {
namespace {

using Keep5 = KeepLargest<SignAbsMean<PerTensor>, 50>;

static_assert(TrainableWeightQuantizer<Keep5> && !WeightQuantizer<Keep5>);

// Every weight's value: W for the k largest |W| (a stable sort by |W| descending keeps the earlier
// position first among ties), else lambda * sign(W - mu) with mu, lambda of the whole tensor.
Matrix<float> reference(const Matrix<float>& w, std::size_t k) {
  const std::size_t n = w.rows() * w.cols();
  const std::vector<float> flat(w.flat().begin(), w.flat().end());
  double sum = 0, abs_sum = 0;
  for (float v : flat) sum += v, abs_sum += std::fabs(static_cast<double>(v));
  const float mu = static_cast<float>(sum / static_cast<double>(n));
  const float lambda = static_cast<float>(abs_sum / static_cast<double>(n));
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::fabs(flat[a]) > std::fabs(flat[b]);
  });
  std::vector<bool> kept(n, false);
  for (std::size_t j = 0; j < k; ++j) kept[order[j]] = true;
  Matrix<float> out(w.rows(), w.cols());
  for (std::size_t i = 0; i < n; ++i)
    out.flat()[i] = kept[i] ? flat[i] : (flat[i] >= mu ? lambda : -lambda);
  return out;
}

TEST(KeepLargest, HandComputedCase) {
  // 20 weights, 5% -> 1 kept: the -9 (largest |w|). mu = (sum) / 20, lambda = mean |w|.
  std::vector<float> v(20, 1.0f);
  v[3] = -9.0f;
  v[7] = -1.0f;
  const Matrix<float> w = test::from(4, 5, v);
  // sum = 18 * 1 - 9 - 1 = 8 -> mu = 0.4; sum |w| = 18 + 9 + 1 = 28 -> lambda = 1.4.
  Matrix<float> out(4, 5);
  Keep5::fake_quantize(w, out);
  for (std::size_t i = 0; i < 20; ++i) {
    const float want = i == 3 ? -9.0f : (i == 7 ? -1.4f : 1.4f);
    EXPECT_FLOAT_EQ(out.flat()[i], want) << i;
  }
  EXPECT_EQ(Keep5::kept_positions(w), (std::vector<std::size_t>{3}));
}

TEST(KeepLargest, KeptCountRoundsToNearestAndKeepsAtLeastOne) {
  EXPECT_EQ(Keep5::kept_count(1), 1u);     // 0.05 -> at least one
  EXPECT_EQ(Keep5::kept_count(29), 1u);    // 1.45
  EXPECT_EQ(Keep5::kept_count(30), 2u);    // 1.5 rounds up
  EXPECT_EQ(Keep5::kept_count(1000), 50u);
  EXPECT_EQ((KeepLargest<SignAbsMean<PerTensor>, 0>::kept_count(1000)), 0u);
  EXPECT_EQ((KeepLargest<SignAbsMean<PerTensor>, 1000>::kept_count(7)), 7u);
}

TEST(KeepLargest, MatchesTheScalarReferenceOnRandomTensors) {
  using Shape = std::tuple<std::size_t, std::size_t, unsigned>;
  for (const auto& [rows, cols, seed] : std::vector<Shape>{{8, 16, 1}, {33, 7, 2}, {64, 128, 3}}) {
    const Matrix<float> w = test::gaussian(rows, cols, seed, 0.05f);
    Matrix<float> out(rows, cols);
    Keep5::fake_quantize(w, out);
    test::expect_bitwise_equal(out, reference(w, Keep5::kept_count(rows * cols)));
    // In place gives the same.
    Matrix<float> inplace = w;
    Keep5::fake_quantize(inplace, inplace);
    test::expect_bitwise_equal(inplace, out);
  }
}

TEST(KeepLargest, TiesKeepTheEarlierPosition) {
  // Every |w| equal: the first k positions are kept (k = round(40 * 0.05) = 2).
  std::vector<float> v(40);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = i % 3 == 0 ? -0.5f : 0.5f;
  const Matrix<float> w = test::from(5, 8, v);
  EXPECT_EQ(Keep5::kept_positions(w), (std::vector<std::size_t>{0, 1}));
  Matrix<float> out(5, 8);
  Keep5::fake_quantize(w, out);
  test::expect_bitwise_equal(out, reference(w, 2));
}

TEST(KeepLargest, RejectsBadInput) {
  Matrix<float> w = test::gaussian(4, 4, 5), out(4, 4), wrong(4, 5);
  EXPECT_THROW(Keep5::fake_quantize(w, wrong), ShapeError);
  w(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(Keep5::fake_quantize(w, out), ValueError);
  Matrix<float> empty(0, 0), empty_out(0, 0);
  EXPECT_THROW(Keep5::fake_quantize(empty, empty_out), ShapeError);
}

}  // namespace
}  // namespace pquant
