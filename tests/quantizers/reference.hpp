// Test support: random tensors and independent scalar references, written plainly (they call no
// pquant quantizer code), so the quantizers are checked against a second implementation.
#pragma once

#include <pquant/core/matrix.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace pquant::test {

inline Matrix<float> gaussian(std::size_t rows, std::size_t cols, std::uint32_t seed,
                              float sigma = 1.0f) {
  Matrix<float> m(rows, cols);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  for (float& v : m.flat()) v = dist(rng);
  return m;
}

inline Matrix<float> filled(std::size_t rows, std::size_t cols, float value) {
  Matrix<float> m(rows, cols);
  for (float& v : m.flat()) v = value;
  return m;
}

inline Matrix<float> from(std::size_t rows, std::size_t cols, std::vector<float> values) {
  Matrix<float> m(rows, cols);
  for (std::size_t i = 0; i < values.size(); ++i) m.flat()[i] = values[i];
  return m;
}

/// Round half to even, written without nearbyint (independent of the library's rounding call).
inline float round_half_even(float v) {
  const double x = v;
  double r = std::floor(x);
  const double frac = x - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return static_cast<float>(r);
}

/// Scale groups written out independently of storage/scale_granularity.hpp: one per tensor, one
/// per row, or one per group_cols consecutive columns of a row (last group short).
struct Grouping {
  enum Kind { kTensor, kRow, kColumns } kind = kTensor;
  std::size_t group_cols = 0;
  std::size_t count(std::size_t rows, std::size_t cols) const {
    if (kind == kTensor) return 1;
    if (kind == kRow) return rows;
    return rows * ((cols + group_cols - 1) / group_cols);
  }
  std::size_t of(std::size_t r, std::size_t c, std::size_t cols) const {
    if (kind == kTensor) return 0;
    if (kind == kRow) return r;
    return r * ((cols + group_cols - 1) / group_cols) + c / group_cols;
  }
};

inline std::uint32_t bits_of(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

/// Bit-for-bit equality of two matrices (distinguishes -0 from +0).
inline void expect_bitwise_equal(const Matrix<float>& a, const Matrix<float>& b) {
  ASSERT_EQ(a.rows(), b.rows());
  ASSERT_EQ(a.cols(), b.cols());
  for (std::size_t r = 0; r < a.rows(); ++r)
    for (std::size_t c = 0; c < a.cols(); ++c)
      ASSERT_EQ(bits_of(a(r, c)), bits_of(b(r, c)))
          << "at (" << r << ", " << c << "): " << a(r, c) << " vs " << b(r, c);
}

inline double mse(const Matrix<float>& a, const Matrix<float>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a.flat()[i]) - b.flat()[i];
    s += d * d;
  }
  return s / static_cast<double>(a.size());
}

}  // namespace pquant::test
