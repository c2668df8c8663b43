// Packed storage against an independent model: a plain std::vector of codes.
#include <pquant/storage.hpp>

#include <gtest/gtest.h>

#include <random>
#include <vector>
#include "../common/type_names.hpp"

namespace pquant {
namespace {

template <class M>
std::vector<std::uint8_t> fill_random(M& m, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const unsigned limit = (1u << M::kBits);
  std::vector<std::uint8_t> ref(m.rows() * m.cols());
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c) {
      const auto code = static_cast<std::uint8_t>(rng() % limit);
      ref[r * m.cols() + c] = code;
      m.set_code(r, c, code);
    }
  return ref;
}

template <class M>
void expect_codes(const M& m, const std::vector<std::uint8_t>& ref) {
  for (std::size_t r = 0; r < m.rows(); ++r)
    for (std::size_t c = 0; c < m.cols(); ++c)
      ASSERT_EQ(m.code(r, c), ref[r * m.cols() + c]) << "at (" << r << ", " << c << ")";
}

template <class Format>
class PackedMatrixTest : public ::testing::Test {};
using Formats = ::testing::Types<SignBit, TernaryCode, CodebookIndex<4>, Int8Code>;
TYPED_TEST_SUITE(PackedMatrixTest, Formats, test::TypeNames);

TYPED_TEST(PackedMatrixTest, RoundTripsOddShapesInEveryLayout) {
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {8, 8}, {17, 65}, {64, 129}, {127, 129}};
  for (const auto& s : shapes) {
    PackedMatrix<TypeParam, PerRow> a(s[0], s[1]);
    const auto ref = fill_random(a, static_cast<std::uint32_t>(s[0] * 1000 + s[1]));
    expect_codes(a, ref);
    const auto tiled = convert_layout<RowInterleaved<16, 4>>(a);
    expect_codes(tiled, ref);
    const auto back = convert_layout<RowMajor>(tiled);
    ASSERT_EQ(back.codes().size(), a.codes().size());
    for (std::size_t i = 0; i < a.codes().size(); ++i) ASSERT_EQ(back.codes()[i], a.codes()[i]);
  }
}

TEST(PackedMatrix, RowMajorBitOrderIsLsbFirstAndRowsStartOnAByte) {
  PackedMatrix<SignBit, PerTensor> m(2, 9);  // 9 bits -> 2 bytes per row
  m.set_code(0, 0, 1);
  m.set_code(0, 8, 1);
  m.set_code(1, 3, 1);
  ASSERT_EQ(m.codes().size(), 4u);
  EXPECT_EQ(m.codes()[0], 0x01);
  EXPECT_EQ(m.codes()[1], 0x01);
  EXPECT_EQ(m.codes()[2], 0x08);
  EXPECT_EQ(m.codes()[3], 0x00);
}

TEST(PackedMatrix, SetCodeDoesNotDisturbNeighbours) {
  PackedMatrix<TernaryCode, PerRow> m(1, 4);
  for (std::size_t c = 0; c < 4; ++c) m.set_code(0, c, 2);
  m.set_code(0, 1, 0);
  EXPECT_EQ(m.code(0, 0), 2);
  EXPECT_EQ(m.code(0, 1), 0);
  EXPECT_EQ(m.code(0, 2), 2);
  EXPECT_EQ(m.code(0, 3), 2);
}

TEST(PackedMatrix, DequantizesWithGroupScales) {
  PackedMatrix<SignBit, PerGroup<4>> m(2, 6);  // 2 groups per row (4 + 2 columns)
  ASSERT_EQ(m.params().size(), 4u);
  const float scales[] = {1.f, 2.f, 3.f, 4.f};
  for (std::size_t i = 0; i < 4; ++i) m.params()[i] = scales[i];
  m.set_code(1, 5, 1);
  EXPECT_EQ(m.dequantized(0, 0), -1.f);
  EXPECT_EQ(m.dequantized(0, 4), -2.f);
  EXPECT_EQ(m.dequantized(1, 3), -3.f);
  EXPECT_EQ(m.dequantized(1, 5), 4.f);
}

TEST(PackedMatrix, CodebookFormatsLookUpPerRowTables) {
  PackedMatrix<CodebookIndex<2>, PerRow> m(2, 3);
  ASSERT_EQ(m.params().size(), 8u);  // 2 rows x 4 centroids
  for (std::size_t i = 0; i < 8; ++i) m.params()[i] = static_cast<float>(i) * 0.25f;
  m.set_code(1, 2, 3);
  EXPECT_EQ(m.dequantized(1, 2), 7 * 0.25f);
  EXPECT_EQ(m.dequantized(0, 0), 0.f);
}

TEST(MemoryFootprint, CountsCodesAndScalesExactly) {
  PackedMatrix<SignBit, PerRow> w(4096, 4096);
  const MemoryFootprint f = w.footprint();
  EXPECT_EQ(f.weights, 4096u * 4096u);
  EXPECT_EQ(f.code_bits, 4096u * 4096u);
  EXPECT_EQ(f.param_bits, 4096u * 32u);
  EXPECT_DOUBLE_EQ(f.bits_per_weight(), 1.0 + 32.0 / 4096.0);
  EXPECT_EQ(f.payload_bytes(), 4096u * 4096u / 8 + 4096u * 4u);

  PackedMatrix<Int8Code, PerTensor> e(3, 5);
  EXPECT_DOUBLE_EQ(e.footprint().bits_per_weight(), 8.0 + 32.0 / 15.0);
  EXPECT_GE(e.footprint().allocated_bytes, e.footprint().payload_bytes());
}

TEST(PackedMatrix, RejectsEmptyShapes) {
  EXPECT_THROW((PackedMatrix<SignBit, PerRow>(0, 5)), ShapeError);
  EXPECT_THROW((PackedMatrix<SignBit, PerRow>(5, 0)), ShapeError);
}

TEST(AlignedBuffer, IsAlignedZeroedAndPadded) {
  AlignedBuffer<float> b(13);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % kAlignment, 0u);
  EXPECT_EQ(b.allocated_bytes(), 64u);
  for (float v : b) EXPECT_EQ(v, 0.f);
  AlignedBuffer<float> copy = b;
  copy[0] = 1.f;
  EXPECT_EQ(b[0], 0.f);
}

TEST(AlignedBuffer, AssignZerosReusesALargeEnoughAllocation) {
  AlignedBuffer<float> b(100);
  for (float& v : b) v = 7.f;
  const float* first = b.data();
  b.assign_zeros(40);  // smaller: same allocation, the new extent zeroed
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(b.size(), 40u);
  for (float v : b) EXPECT_EQ(v, 0.f);
  b[39] = 3.f;
  b.assign_zeros(100);  // back to the capacity: still no new allocation, all zeros
  EXPECT_EQ(b.data(), first);
  for (float v : b) EXPECT_EQ(v, 0.f);
  b.assign_zeros(1000);  // larger: a new, zeroed allocation
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_GE(b.allocated_bytes(), 1000 * sizeof(float));
  for (float v : b) EXPECT_EQ(v, 0.f);
  AlignedBuffer<float> copy = b;  // a copy of a reused buffer holds its size, not its capacity
  b.assign_zeros(3);
  copy = b;
  EXPECT_EQ(copy.size(), 3u);
  EXPECT_EQ(copy.allocated_bytes(), kAlignment);
  b.assign_zeros(0);
  EXPECT_TRUE(b.empty());
  EXPECT_THROW(b.assign_zeros(std::size_t{1} << 62), ValueError);

  Matrix<float> m(4, 6);
  m(3, 5) = 1.f;
  const float* kept = m.data();
  m.resize(4, 6);  // same shape: contents kept
  EXPECT_EQ(m(3, 5), 1.f);
  m.resize(2, 3);  // new shape: zeros, in the same allocation
  EXPECT_EQ(m.rows(), 2u);
  EXPECT_EQ(m.cols(), 3u);
  EXPECT_EQ(m.data(), kept);
  for (float v : m.flat()) EXPECT_EQ(v, 0.f);
}

TEST(AlignedBuffer, WeightSizedBuffersAreHugePageAligned) {
  // 2 MiB and up: aligned to 2 MiB (the huge-page advice needs it), still zeroed and copyable.
  const std::size_t n = kHugePage / sizeof(float) + 3;
  AlignedBuffer<float> b(n);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % kHugePage, 0u);
  EXPECT_EQ(b.allocated_bytes() % kAlignment, 0u);
  EXPECT_GE(b.allocated_bytes(), n * sizeof(float));
  for (std::size_t i = 0; i < n; i += 4099) EXPECT_EQ(b[i], 0.f);
  EXPECT_EQ(b[n - 1], 0.f);
  b[n - 1] = 2.f;
  AlignedBuffer<float> copy = b;
  EXPECT_EQ(copy[n - 1], 2.f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(copy.data()) % kHugePage, 0u);
  AlignedBuffer<float> small(kHugePage / sizeof(float) - 16);  // below: cache-line alignment only
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small.data()) % kAlignment, 0u);
}

}  // namespace
}  // namespace pquant
