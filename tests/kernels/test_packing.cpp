// Packing into the kernel layouts: codes round-trip, every source layout gives the same bytes,
// invalid values are rejected.
#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

#include "kernel_test_util.hpp"
#include "pquant/kernels.hpp"

namespace pquant::test {
namespace {

template <class F, class L>
PackedMatrix<F, PerRow, L> packed_from(const Matrix<std::int8_t>& values) {
  PackedMatrix<F, PerRow, L> m(values.rows(), values.cols());
  for (std::size_t r = 0; r < values.rows(); ++r)
    for (std::size_t c = 0; c < values.cols(); ++c) m.set_code(r, c, F::encode(values(r, c)));
  return m;
}

TEST(Packing, SignWeightsRoundTripAndAgreeAcrossSourceLayouts) {
  for (auto [n, k] : {std::pair<std::size_t, std::size_t>{1, 1}, {3, 7}, {127, 129}, {33, 64}}) {
    const auto w = random_sign(n, k, 3);
    const auto a = kernels::pack_sign(w);
    const auto b = kernels::pack_lut(packed_from<SignBit, RowMajor>(w).view());
    const auto c = kernels::pack_lut(packed_from<SignBit, RowInterleaved<8, 4>>(w).view());
    ASSERT_EQ(a.bytes(), b.bytes());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes()), 0);
    EXPECT_EQ(std::memcmp(a.data(), c.data(), a.bytes()), 0);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t col = 0; col < k; ++col) ASSERT_EQ(kernels::lut_value(a, r, col), w(r, col));
    EXPECT_EQ(a.bytes(), a.tiles() * a.pairs() * kernels::kLutTile);
    EXPECT_GE(a.padded_cols(), k);
  }
}

TEST(Packing, SignRepackReusesTheBufferAndMatchesAFreshPack) {
  // QAT repacks every step into the same object; a new shape reallocates.
  kernels::SignWeights out;
  for (auto [n, k, seed] : {std::tuple<std::size_t, std::size_t, std::uint64_t>{70, 37, 1},
                            {70, 37, 2},
                            {33, 129, 3}}) {
    const auto w = random_sign(n, k, seed);
    kernels::pack_sign(w, out);
    const auto fresh = kernels::pack_lut(packed_from<SignBit, RowMajor>(w).view());
    ASSERT_EQ(out.rows(), n);
    ASSERT_EQ(out.cols(), k);
    ASSERT_EQ(out.bytes(), fresh.bytes());
    EXPECT_EQ(std::memcmp(out.data(), fresh.data(), out.bytes()), 0) << n << "x" << k;
  }
  // A bad value in the last, partial byte of a row is still found.
  auto w = random_sign(3, 13, 4);
  w(2, 12) = 0;
  EXPECT_THROW(kernels::pack_sign(w, out), ValueError);
}

TEST(Packing, TernaryAndInt8RoundTrip) {
  const auto w2 = random_int8(45, 77, -1, 1, 4);
  const auto t = kernels::pack_ternary(w2);
  const auto t2 = kernels::pack_lut(packed_from<TernaryCode, RowMajor>(w2).view());
  EXPECT_EQ(std::memcmp(t.data(), t2.data(), t.bytes()), 0);
  for (std::size_t r = 0; r < 45; ++r)
    for (std::size_t c = 0; c < 77; ++c) ASSERT_EQ(kernels::lut_value(t, r, c), w2(r, c));
  const auto w8 = random_int8(5, 70, -128, 127, 5);
  const auto i8 = kernels::pack_int8(w8);
  PackedMatrix<Int8Code, PerRow, RowMajor> pm(5, 70);
  for (std::size_t r = 0; r < 5; ++r)
    for (std::size_t c = 0; c < 70; ++c) pm.set_code(r, c, Int8Code::encode(w8(r, c)));
  const auto i8b = kernels::pack_int8(pm.view());
  EXPECT_EQ(i8.stride() % kernels::kInt8RowAlign, 0u);
  for (std::size_t r = 0; r < 5; ++r)
    for (std::size_t c = 0; c < i8.stride(); ++c) {
      ASSERT_EQ(i8.value(r, c), c < 70 ? w8(r, c) : 0);
      ASSERT_EQ(i8b.value(r, c), i8.value(r, c));
    }
}

TEST(Packing, InvalidValuesAreRejected) {
  Matrix<std::int8_t> w(2, 3);
  for (auto& v : w.flat()) v = 1;
  w(1, 2) = 0;
  EXPECT_THROW(kernels::pack_sign(w), ValueError);
  w(1, 2) = 2;
  EXPECT_THROW(kernels::pack_ternary(w), ValueError);
  PackedMatrix<TernaryCode, PerRow, RowMajor> pm(2, 3);
  pm.set_code(1, 1, 3);
  EXPECT_THROW(kernels::pack_lut(pm.view()), FormatError);
  EXPECT_THROW(kernels::pack_sign(MatrixView<const std::int8_t>{}), ShapeError);
  EXPECT_THROW(kernels::pack_int8(MatrixView<const std::int8_t>{}), ShapeError);
  EXPECT_THROW(kernels::SignWeights(0, 4), ShapeError);
}

}  // namespace
}  // namespace pquant::test
