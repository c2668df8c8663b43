// The element-wise SIMD kernels of a training step (kernels/elementwise.hpp) on every Highway
// target the CPU supports, against their scalar references: SwiGLU and AdamW bit for bit (the same
// operations in the same order, no FMA), RMSNorm bit for bit against the scalar reference and an
// independent model of the documented (column-order) reduction, and within a tolerance of double
// precision; the NaN/Inf check at every position. Widths that are not multiples of any vector
// length, strided rows (the padding between rows must stay untouched) and the edges (large |g|,
// zero rows, tails).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../kernels/kernel_test_util.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/attention.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/training/adamw.hpp"

namespace pquant::test {
namespace {

constexpr std::size_t kWidths[] = {1, 3, 4, 7, 8, 9, 16, 17, 33, 127, 384};
constexpr std::size_t kPad = 5;         // stride = cols + kPad
constexpr float kSentinel = -12345.0f;  // fills the padding; must survive every kernel

// rows x cols view over a buffer with stride cols + kPad; values uniform in [lo, hi], padding set
// to kSentinel.
struct Strided {
  std::vector<float> buf;
  std::size_t rows, cols, pad;
  Strided(std::size_t r, std::size_t c, float lo, float hi, std::uint32_t seed,
          std::size_t padding = kPad)
      : buf(r * (c + padding), kSentinel), rows(r), cols(c), pad(padding) {
    const auto v = random_floats(r * c, lo, hi, seed);
    for (std::size_t i = 0; i < r; ++i)
      for (std::size_t j = 0; j < c; ++j) buf[i * (c + pad) + j] = v[i * c + j];
  }
  MatrixView<float> view() { return {buf.data(), rows, cols, cols + pad}; }
  MatrixView<const float> cview() const { return {buf.data(), rows, cols, cols + pad}; }
  float& at(std::size_t i, std::size_t j) { return buf[i * (cols + pad) + j]; }
  bool padding_intact() const {
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = cols; j < cols + pad; ++j)
        if (std::bit_cast<std::uint32_t>(buf[i * (cols + pad) + j]) !=
            std::bit_cast<std::uint32_t>(kSentinel))
          return false;
    return true;
  }
};

// Bitwise equality (distinguishes -0 from +0 and compares NaN payloads).
void expect_bits_equal(MatrixView<const float> got, MatrixView<const float> want,
                       const char* what) {
  for (std::size_t i = 0; i < want.rows; ++i)
    for (std::size_t j = 0; j < want.cols; ++j)
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got(i, j)), std::bit_cast<std::uint32_t>(want(i, j)))
          << what << " at (" << i << ", " << j << "): " << got(i, j) << " vs " << want(i, j);
}

// Gate values over the whole range, plus the sigmoid's edges in the first columns: the clamps of
// fast_exp (|g| >= 87.3), huge |g|, +-0 and tiny values.
void add_gate_edges(Strided& g) {
  const float edges[] = {0.0f,  -0.0f,  1e-30f, -1e-30f, 87.0f, -87.0f, 87.3f, -87.3f,
                         88.0f, -88.5f, 100.0f, -100.0f, 1e30f, -1e30f, 16.5f, -16.5f};
  std::size_t k = 0;
  for (std::size_t i = 0; i < g.rows; ++i)
    for (std::size_t j = 0; j < g.cols && k < std::size(edges); j += 2) g.at(i, j) = edges[k++];
}

class Elementwise : public PerTarget {};

TEST_P(Elementwise, SwigluForwardIsBitIdenticalToTheScalarReference) {
  for (std::size_t cols : kWidths) {
    Strided g(5, cols, -30.0f, 30.0f, 1), u(5, cols, -2.0f, 2.0f, 2), h(5, cols, 0, 0, 3);
    add_gate_edges(g);
    Matrix<float> ref(5, cols);
    swiglu_forward<float>(g.cview(), u.cview(), ref.view());
    kernels::swiglu_forward(g.cview(), u.cview(), h.view());
    SCOPED_TRACE(cols);
    expect_bits_equal(h.cview(), ref.view(), "h");
    EXPECT_TRUE(h.padding_intact());
  }
}

TEST_P(Elementwise, SwigluForwardMatchesDoublePrecision) {
  // Independent of the scalar float code: silu(g) * u in double, relative error a few ulp.
  Strided g(4, 127, -20.0f, 20.0f, 4), u(4, 127, -2.0f, 2.0f, 5), h(4, 127, 0, 0, 6);
  kernels::swiglu_forward(g.cview(), u.cview(), h.view());
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 127; ++j) {
      const double gd = g.at(i, j), ref = gd / (1.0 + std::exp(-gd)) * u.at(i, j);
      EXPECT_NEAR(h.at(i, j), ref, 1e-6 * std::fabs(ref) + 1e-30) << i << ", " << j;
    }
}

TEST_P(Elementwise, SwigluBackwardIsBitIdenticalToTheScalarReference) {
  for (std::size_t cols : kWidths) {
    Strided g(4, cols, -30.0f, 30.0f, 7), u(4, cols, -2.0f, 2.0f, 8), dh(4, cols, -1.0f, 1.0f, 9);
    Strided dg(4, cols, 0, 0, 10), du(4, cols, 0, 0, 11);
    add_gate_edges(g);
    Matrix<float> ref_dg(4, cols), ref_du(4, cols);
    swiglu_backward<float>(dh.cview(), g.cview(), u.cview(), ref_dg.view(), ref_du.view());
    kernels::swiglu_backward(dh.cview(), g.cview(), u.cview(), dg.view(), du.view());
    SCOPED_TRACE(cols);
    expect_bits_equal(dg.cview(), ref_dg.view(), "dgate");
    expect_bits_equal(du.cview(), ref_du.view(), "dup");
    EXPECT_TRUE(dg.padding_intact());
    EXPECT_TRUE(du.padding_intact());
  }
}

constexpr std::size_t kRows = 19;  // rows across lanes: 2 groups of 8 (1 of 16) and a tail

// The documented order of every row sum of the norm and the softmax backward (backend.hpp:
// sum_in_16_lanes), written out as the four levels of its tree: 16 partial sums (term c into c %
// 16, columns in increasing order), then (p0 + p8), (p1 + p9), ..., then those pairwise at distance
// 4, 2 and 1.
float sixteen_lane_sum(std::size_t n, auto&& term) {
  float p[16] = {};
  for (std::size_t c = 0; c < n; ++c) p[c % 16] += term(c);
  float h8[8], h4[4], h2[2];
  for (int i = 0; i < 8; ++i) h8[i] = p[i] + p[i + 8];
  for (int i = 0; i < 4; ++i) h4[i] = h8[i] + h8[i + 4];
  for (int i = 0; i < 2; ++i) h2[i] = h4[i] + h4[i + 2];
  return h2[0] + h2[1];
}

TEST_P(Elementwise, RmsNormForwardFollowsTheDocumentedOrderAndMatchesDouble) {
  for (std::size_t cols : kWidths) {
    Strided x(kRows, cols, -3.0f, 3.0f, 12), y(kRows, cols, 0, 0, 13, 2);
    for (std::size_t j = 0; j < cols; ++j) x.at(2, j) = 0.0f;  // a row of zeros: r = 1/sqrt(eps)
    const auto gain = random_floats(cols, 0.5f, 1.5f, 14);
    std::vector<float> inv_rms(kRows);
    kernels::rmsnorm_forward(x.cview(), gain, kRmsNormEps, y.view(), inv_rms);
    SCOPED_TRACE(cols);
    EXPECT_TRUE(y.padding_intact());
    for (std::size_t i = 0; i < kRows; ++i) {
      const float ss =
          sixteen_lane_sum(cols, [&](std::size_t c) { return x.at(i, c) * x.at(i, c); });
      const float r = 1.0f / std::sqrt(ss / static_cast<float>(cols) + kRmsNormEps);
      ASSERT_EQ(std::bit_cast<std::uint32_t>(inv_rms[i]), std::bit_cast<std::uint32_t>(r)) << i;
      double ssd = 0;
      for (std::size_t c = 0; c < cols; ++c) ssd += double(x.at(i, c)) * x.at(i, c);
      const double rd = 1.0 / std::sqrt(ssd / double(cols) + double(kRmsNormEps));
      EXPECT_NEAR(inv_rms[i], rd, 3e-6 * rd);
      for (std::size_t c = 0; c < cols; ++c) {
        ASSERT_EQ(std::bit_cast<std::uint32_t>(y.at(i, c)),
                  std::bit_cast<std::uint32_t>(x.at(i, c) * r * gain[c]))
            << i << ", " << c;
        const double yd = x.at(i, c) * rd * gain[c];
        EXPECT_NEAR(y.at(i, c), yd, 4e-6 * std::fabs(yd) + 1e-37);
      }
    }
    EXPECT_EQ(inv_rms[2], 1.0f / std::sqrt(kRmsNormEps));
    Matrix<float> ref_y(kRows, cols);
    std::vector<float> ref_inv(kRows);
    rmsnorm_forward<float>(x.cview(), gain.data(), kRmsNormEps, ref_y.view(), ref_inv.data());
    expect_bits_equal(y.cview(), ref_y.view(), "y (library reference)");
    EXPECT_EQ(inv_rms, ref_inv);
    for (std::size_t c = 0; c < cols; ++c) EXPECT_EQ(y.at(2, c), 0.0f);
  }
}

TEST_P(Elementwise, RmsNormBackwardFollowsTheDocumentedOrderAndMatchesTheReference) {
  for (std::size_t cols : kWidths) {
    Strided x(kRows, cols, -3.0f, 3.0f, 15), dy(kRows, cols, -1.0f, 1.0f, 16, 3);
    Strided dx(kRows, cols, 0, 0, 17, 1);
    for (std::size_t j = 0; j < cols; ++j) x.at(3, j) = 0.0f;
    const auto gain = random_floats(cols, 0.5f, 1.5f, 18);
    std::vector<float> inv_rms(kRows), y_scratch(kRows * cols);
    rmsnorm_forward<float>(x.cview(), gain.data(), kRmsNormEps,
                           MatrixView<float>(y_scratch.data(), kRows, cols), inv_rms.data());
    const auto dgain0 = random_floats(cols, -1.0f, 1.0f, 19);  // += onto existing values
    std::vector<float> dgain = dgain0, dgain_only = dgain0;
    kernels::rmsnorm_backward(dy.cview(), x.cview(), gain, inv_rms, dx.view(), dgain);
    kernels::rmsnorm_backward(dy.cview(), x.cview(), gain, inv_rms, MatrixView<float>{},
                              dgain_only);
    SCOPED_TRACE(cols);
    EXPECT_TRUE(dx.padding_intact());
    // The scalar model of the documented order, bit for bit.
    std::vector<float> want_dgain = dgain0;
    for (std::size_t i = 0; i < kRows; ++i) {
      const float r = inv_rms[i];
      const float dot =
          sixteen_lane_sum(cols, [&](std::size_t c) { return gain[c] * dy.at(i, c) * x.at(i, c); });
      for (std::size_t c = 0; c < cols; ++c) want_dgain[c] += dy.at(i, c) * x.at(i, c) * r;
      const float k = r * r * r * dot / static_cast<float>(cols);
      for (std::size_t c = 0; c < cols; ++c)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(dx.at(i, c)),
                  std::bit_cast<std::uint32_t>(r * gain[c] * dy.at(i, c) - k * x.at(i, c)))
            << i << ", " << c;
    }
    for (std::size_t c = 0; c < cols; ++c) {
      ASSERT_EQ(dgain[c], want_dgain[c]) << c;
      ASSERT_EQ(dgain_only[c], want_dgain[c]) << c;  // skipping dx changes nothing else
    }
    // The library's scalar reference (used by inference) agrees bit for bit.
    Matrix<float> ref_dx(kRows, cols);
    std::vector<float> ref_dgain = dgain0;
    rmsnorm_backward<float>(dy.cview(), x.cview(), gain.data(), inv_rms.data(), ref_dx.view(),
                            ref_dgain.data());
    expect_bits_equal(dx.cview(), ref_dx.view(), "dx");
    for (std::size_t c = 0; c < cols; ++c) EXPECT_EQ(dgain[c], ref_dgain[c]);
    // And dx is the exact gradient up to float rounding (double precision, sequential sums).
    for (std::size_t i = 0; i < kRows; ++i) {
      double rd = inv_rms[i], dot = 0;
      for (std::size_t c = 0; c < cols; ++c) dot += double(gain[c]) * dy.at(i, c) * x.at(i, c);
      for (std::size_t c = 0; c < cols; ++c) {
        const double want = rd * gain[c] * dy.at(i, c) - rd * rd * rd * dot / cols * x.at(i, c);
        EXPECT_NEAR(dx.at(i, c), want, 1e-5 * (1 + std::fabs(want))) << i << ", " << c;
      }
    }
  }
}

TEST_P(Elementwise, AdamWIsBitIdenticalToTheScalarReference) {
  for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{7}, std::size_t{8},
                        std::size_t{33}, std::size_t{127}, std::size_t{1000}}) {
    auto p = random_floats(n, -1.0f, 1.0f, 20), g = random_floats(n, -1.0f, 1.0f, 21);
    auto m = random_floats(n, -0.1f, 0.1f, 22), v = random_floats(n, 0.0f, 0.01f, 23);
    if (n > 2) {
      g[0] = 1e20f;  // huge gradient
      g[1] = 1e-30f;
      g[2] = 0.0f;
      v[2] = 0.0f;  // sqrt(0): denom = eps
      m[2] = 0.0f;
    }
    auto pr = p, mr = m, vr = v;
    const kernels::AdamWStep step{
        0.9f, 0.95f, 1e-8f, 3e-3f / 0.271f, 1.0f / std::sqrt(0.1426f), 1.0f - 3e-3f * 0.1f};
    kernels::adamw_update(p, g, m, v, step);
    adamw_update_reference(pr, g, mr, vr, step);
    SCOPED_TRACE(n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(p[i]), std::bit_cast<std::uint32_t>(pr[i])) << i;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(m[i]), std::bit_cast<std::uint32_t>(mr[i])) << i;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(v[i]), std::bit_cast<std::uint32_t>(vr[i])) << i;
    }
  }
}

TEST_P(Elementwise, AllFiniteFindsNanAndInfAtEveryPosition) {
  const float bad[] = {
      std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
      std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  for (std::size_t cols : {std::size_t{1}, std::size_t{3}, std::size_t{7}, std::size_t{9},
                           std::size_t{17}, std::size_t{33}}) {
    Strided x(3, cols, -1.0f, 1.0f, 24);
    x.at(0, 0) = std::numeric_limits<float>::max();  // finite extremes
    x.at(1, 0) = std::numeric_limits<float>::denorm_min();
    // NaN in the padding between rows is outside the matrix.
    x.buf[cols] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(kernels::all_finite(x.cview())) << cols;
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t j = 0; j < cols; ++j)
        for (float b : bad) {
          const float keep = x.at(i, j);
          x.at(i, j) = b;
          EXPECT_FALSE(kernels::all_finite(x.cview())) << cols << ": " << i << ", " << j;
          x.at(i, j) = keep;
        }
  }
}

// Rows over the quantizer's edges: ties (gain 1: x = k + 0.5 rounds to even), the absmax at both
// signs, an all-zero row (gain 127 / eps), a row below eps, denormals, and a row at FLT_MAX whose
// gain the quantizer raises by one ulp.
void add_quantizer_edges(Strided& x) {
  const float big = std::numeric_limits<float>::max();
  const std::vector<std::vector<float>> rows = {
      {127.0f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 126.5f, -126.5f, 1.5f},
      {0.0f, -0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
      {3e-6f, -1e-6f, 2e-6f, 1e-38f, -1e-45f, 0.0f, 5e-6f, -5e-6f, 1e-7f},
      {big, -big, big / 3, 1.0f, -1.0f, big / 254, -big / 255, 0.0f, big / 2},
      {-127.0f, 63.5f, -63.5f, 64.5f, -0.5f, 0.49999997f, 1.0f, -1.0f, 127.0f}};
  for (std::size_t i = 0; i < x.rows && i < rows.size(); ++i) {
    for (std::size_t j = 0; j < x.cols; ++j) x.at(i, j) = 0.0f;
    for (std::size_t j = 0; j < x.cols && j < rows[i].size(); ++j) x.at(i, j) = rows[i][j];
  }
}

TEST_P(Elementwise, Int8AbsMaxQuantizeIsBitIdenticalToTheQuantizer) {
  for (std::size_t cols : kWidths) {
    Strided x(9, cols, -3.0f, 3.0f, 31);
    add_quantizer_edges(x);
    Matrix<std::int8_t> want_q(x.rows, cols);
    std::vector<float> want_gain(x.rows);
    Int8AbsMaxPerToken::quantize(x.cview(), want_q.view(), want_gain);
    Matrix<float> want_xq(x.rows, cols);
    for (std::size_t i = 0; i < x.rows; ++i)
      for (std::size_t j = 0; j < cols; ++j)
        want_xq(i, j) = static_cast<float>(want_q(i, j)) / want_gain[i];
    std::vector<std::int8_t> qbuf(x.rows * (cols + kPad), 99);
    const MatrixView<std::int8_t> q(qbuf.data(), x.rows, cols, cols + kPad);
    std::vector<float> gain(x.rows);
    Strided xq(x.rows, cols, 0.0f, 0.0f, 1);
    ASSERT_TRUE(kernels::int8_absmax_quantize(x.cview(), q, gain, xq.view())) << cols;
    for (std::size_t i = 0; i < x.rows; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(gain[i]), std::bit_cast<std::uint32_t>(want_gain[i]))
          << cols << " row " << i;
      for (std::size_t j = 0; j < cols; ++j)
        ASSERT_EQ(q(i, j), want_q(i, j)) << cols << ": " << i << ", " << j << " x " << x.at(i, j);
      for (std::size_t j = cols; j < cols + kPad; ++j) ASSERT_EQ(qbuf[i * (cols + kPad) + j], 99);
    }
    expect_bits_equal(xq.cview(), want_xq.view(), "xq");
    EXPECT_TRUE(xq.padding_intact());
    // Codes and gains only (no xq): the same.
    std::vector<std::int8_t> q2(x.rows * cols);
    ASSERT_TRUE(kernels::int8_absmax_quantize(
        x.cview(), MatrixView<std::int8_t>(q2.data(), x.rows, cols), gain));
    for (std::size_t i = 0; i < x.rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) ASSERT_EQ(q2[i * cols + j], want_q(i, j));
  }
  // The edge rows hit both clamp bounds' neighbourhood, ties and the ulp-raised gain.
  Strided e(5, 9, 0.0f, 0.0f, 1);
  add_quantizer_edges(e);
  std::vector<std::int8_t> q(5 * 9);
  std::vector<float> gain(5);
  ASSERT_TRUE(
      kernels::int8_absmax_quantize(e.cview(), MatrixView<std::int8_t>(q.data(), 5, 9), gain));
  EXPECT_EQ(gain[0], 1.0f);
  const std::int8_t ties[] = {127, 2, -2, 4, 0, 0, 126, -126, 2};  // half to even
  for (std::size_t j = 0; j < 9; ++j) EXPECT_EQ(q[j], ties[j]) << j;
  EXPECT_EQ(gain[1], 127.0f / 1e-5f);
  EXPECT_TRUE(std::isfinite(127.0f / gain[3]));  // raised by one ulp at FLT_MAX
  EXPECT_EQ(q[3 * 9 + 0], 127);
  EXPECT_EQ(q[3 * 9 + 1], -127);
}

TEST_P(Elementwise, Int8AbsMaxQuantizeStopsAtTheFirstNonFiniteRow) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (std::size_t cols : {std::size_t{1}, std::size_t{9}, std::size_t{17}}) {
      Strided x(4, cols, -1.0f, 1.0f, 7);
      x.at(2, cols - 1) = bad;
      std::vector<std::int8_t> q(4 * cols, 55);
      std::vector<float> gain(4, -1.0f);
      EXPECT_FALSE(kernels::int8_absmax_quantize(x.cview(),
                                                 MatrixView<std::int8_t>(q.data(), 4, cols), gain));
      EXPECT_GT(gain[1], 0.0f);  // rows before it are written
      EXPECT_EQ(gain[2], -1.0f);
      EXPECT_EQ(gain[3], -1.0f);
      for (std::size_t j = 0; j < cols; ++j) EXPECT_EQ(q[2 * cols + j], 55);
    }
  }
}

// The fused residual add + RMSNorm + quantization equals its steps' scalar references run one
// after the other (float add, rmsnorm_forward<float>, Int8AbsMaxPerToken::quantize), with each
// step present or absent, over 11 rows (a full block of 8 and a partial one).
TEST_P(Elementwise, RmsNormQuantizeEqualsItsStepsBitExactly) {
  for (std::size_t cols : kWidths)
    for (int variant = 0; variant < 4; ++variant) {
      const bool with_res = variant != 1, with_gain = variant != 2, with_q = variant != 3;
      SCOPED_TRACE(testing::Message() << cols << " variant " << variant);
      const std::size_t rows = 11;
      Strided x(rows, cols, -3.0f, 3.0f, 41), res(rows, cols, -1.0f, 1.0f, 42);
      add_quantizer_edges(x);
      const auto gain = random_floats(cols, 0.5f, 1.5f, 43);
      // Reference, step by step.
      Matrix<float> want_x(rows, cols), want_y(rows, cols), want_xq(rows, cols);
      for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < cols; ++j)
          want_x(i, j) = with_res ? x.at(i, j) + res.at(i, j) : x.at(i, j);
      std::vector<float> want_inv(rows);
      if (with_gain)
        rmsnorm_forward<float>(want_x.view(), gain.data(), kRmsNormEps, want_y.view(),
                               want_inv.data());
      const Matrix<float>& qin = with_gain ? want_y : want_x;
      Matrix<std::int8_t> want_q(rows, cols);
      std::vector<float> want_g(rows);
      if (with_q) {
        Int8AbsMaxPerToken::quantize(qin.view(), want_q.view(), want_g);
        for (std::size_t i = 0; i < rows; ++i)
          for (std::size_t j = 0; j < cols; ++j)
            want_xq(i, j) = static_cast<float>(want_q(i, j)) / want_g[i];
      }
      // Fused.
      Strided y(rows, cols, 0, 0, 1), xq(rows, cols, 0, 0, 1);
      std::vector<float> inv(rows), g(rows);
      Matrix<std::int8_t> q(rows, cols);
      ASSERT_TRUE(kernels::rmsnorm_quantize(
          x.view(), with_res ? res.cview() : MatrixView<const float>{},
          with_gain ? std::span<const float>(gain) : std::span<const float>{}, kRmsNormEps,
          y.view(), inv, with_q ? q.view() : MatrixView<std::int8_t>{}, g, xq.view()));
      expect_bits_equal(x.cview(), want_x.view(), "x");
      EXPECT_TRUE(x.padding_intact());
      if (with_gain) {
        expect_bits_equal(y.cview(), want_y.view(), "y");
        EXPECT_TRUE(y.padding_intact());
        EXPECT_EQ(inv, want_inv);
      }
      if (with_q) {
        for (std::size_t i = 0; i < rows; ++i) {
          ASSERT_EQ(std::bit_cast<std::uint32_t>(g[i]), std::bit_cast<std::uint32_t>(want_g[i]));
          for (std::size_t j = 0; j < cols; ++j) ASSERT_EQ(q(i, j), want_q(i, j)) << i << ", " << j;
        }
        expect_bits_equal(xq.cview(), want_xq.view(), "xq");
        EXPECT_TRUE(xq.padding_intact());
      }
    }
}

TEST_P(Elementwise, RmsNormQuantizeStopsQuantizingAtTheFirstNonFiniteRow) {
  const std::size_t rows = 12, cols = 17;
  Strided x(rows, cols, -1.0f, 1.0f, 44), res(rows, cols, -1.0f, 1.0f, 45);
  x.at(9, 3) = std::numeric_limits<float>::infinity();
  const auto gain = random_floats(cols, 0.5f, 1.5f, 46);
  Matrix<float> want_x(rows, cols), want_y(rows, cols);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) want_x(i, j) = x.at(i, j) + res.at(i, j);
  std::vector<float> want_inv(rows);
  rmsnorm_forward<float>(want_x.view(), gain.data(), kRmsNormEps, want_y.view(), want_inv.data());
  Matrix<float> y(rows, cols);
  std::vector<float> inv(rows), g(rows, -1.0f);
  Matrix<std::int8_t> q(rows, cols);
  EXPECT_FALSE(kernels::rmsnorm_quantize(x.view(), res.cview(), gain, kRmsNormEps, y.view(), inv,
                                         q.view(), g));
  expect_bits_equal(x.cview(), want_x.view(), "x");  // every row normalized
  expect_bits_equal(y.view(), want_y.view(), "y");
  EXPECT_EQ(inv, want_inv);
  EXPECT_GT(g[8], 0.0f);  // rows before it are quantized, it and later rows are not
  EXPECT_EQ(g[9], -1.0f);
  EXPECT_EQ(g[11], -1.0f);
}

TEST_P(Elementwise, CausalSoftmaxIsBitIdenticalToTheScalarRows) {
  for (std::size_t seq : {std::size_t{1}, std::size_t{3}, std::size_t{9}, std::size_t{17},
                          std::size_t{33}, std::size_t{128}}) {
    for (std::size_t first : {std::size_t{0}, seq / 3}) {
      const std::size_t rows = seq - first;
      // Scores of both signs, some rows all negative (the max key of negative floats), ties.
      auto scores = random_floats(rows * seq, -40.0f, 40.0f, static_cast<std::uint32_t>(seq));
      for (std::size_t s = 0; s < seq; ++s) scores[s] = -50.0f - static_cast<float>(s % 3);
      if (rows > 1)
        for (std::size_t s = 0; s < seq; ++s) scores[seq + s] = 7.0f;
      auto ref = scores;
      for (std::size_t i = 0; i < rows; ++i)
        detail::causal_softmax_row_f32(ref.data() + i * seq, first + i, seq, 0.125f);
      // Keys above the diagonal are never read (the attention leaves stale values there).
      const float nan = std::numeric_limits<float>::quiet_NaN();
      for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t s = first + i + 1; s < seq; ++s) scores[i * seq + s] = nan;
      kernels::causal_softmax(MatrixView<float>(scores.data(), rows, seq), first, 0.125f);
      SCOPED_TRACE(::testing::Message() << seq << " keys from query " << first);
      expect_bits_equal(MatrixView<const float>(scores.data(), rows, seq),
                        MatrixView<const float>(ref.data(), rows, seq), "p");
      // And a softmax: rows sum to 1 within rounding, exact zeros above the diagonal.
      for (std::size_t i = 0; i < rows; ++i) {
        double z = 0;
        for (std::size_t s = 0; s < seq; ++s) z += scores[i * seq + s];
        EXPECT_NEAR(z, 1.0, 1e-5);
        for (std::size_t s = first + i + 1; s < seq; ++s) ASSERT_EQ(scores[i * seq + s], 0.0f);
      }
      // Backward on the probabilities.
      auto dp = random_floats(rows * seq, -1.0f, 1.0f, static_cast<std::uint32_t>(seq + 7));
      auto ref_ds = dp;
      for (std::size_t i = 0; i < rows; ++i)
        detail::causal_softmax_backward_row_f32(ref_ds.data() + i * seq, ref.data() + i * seq,
                                                first + i, seq, 0.125f);
      for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t s = first + i + 1; s < seq; ++s) dp[i * seq + s] = nan;
      kernels::causal_softmax_backward(MatrixView<float>(dp.data(), rows, seq),
                                       MatrixView<const float>(ref.data(), rows, seq), first,
                                       0.125f);
      expect_bits_equal(MatrixView<const float>(dp.data(), rows, seq),
                        MatrixView<const float>(ref_ds.data(), rows, seq), "ds");
      // The documented order, spelled out independently of the library's reference.
      const auto dp0 = random_floats(rows * seq, -1.0f, 1.0f, static_cast<std::uint32_t>(seq + 7));
      for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t n = first + i + 1;
        const float* p_row = ref.data() + i * seq;
        const float* dp_row = dp0.data() + i * seq;
        const float sum = sixteen_lane_sum(n, [&](std::size_t s) { return dp_row[s] * p_row[s]; });
        for (std::size_t s = 0; s < n; ++s)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(dp[i * seq + s]),
                    std::bit_cast<std::uint32_t>(p_row[s] * (dp_row[s] - sum) * 0.125f))
              << i << ", " << s;
      }
    }
  }
}

TEST_P(Elementwise, EntryPointsRejectMismatchedShapes) {
  Matrix<float> a(3, 5), b(3, 4), c(3, 5);
  EXPECT_THROW(kernels::swiglu_forward(a.view(), b.view(), c.view()), ShapeError);
  EXPECT_THROW(kernels::swiglu_backward(a.view(), a.view(), a.view(), b.view(), c.view()),
               ShapeError);
  std::vector<float> gain(4), inv(3), dgain(5);
  EXPECT_THROW(kernels::rmsnorm_forward(a.view(), gain, 1e-5f, c.view(), inv), ShapeError);
  EXPECT_THROW(kernels::rmsnorm_backward(a.view(), a.view(), gain, inv, c.view(), dgain),
               ShapeError);
  std::vector<float> p(4), g(3);
  EXPECT_THROW(kernels::adamw_update(p, g, p, p, {}), ShapeError);
  EXPECT_THROW(kernels::causal_softmax(a.view(), 3, 1.0f), ShapeError);  // queries 3..5 of 5 keys
  EXPECT_THROW(kernels::causal_softmax_backward(a.view(), b.view(), 0, 1.0f), ShapeError);
  Matrix<std::int8_t> q(3, 4);
  std::vector<float> g3(3);
  EXPECT_THROW(kernels::int8_absmax_quantize(a.view(), q.view(), g3), ShapeError);
  Matrix<std::int8_t> q5(3, 5);
  EXPECT_THROW(kernels::int8_absmax_quantize(a.view(), q5.view(), p), ShapeError);  // 4 gains
  EXPECT_THROW(kernels::int8_absmax_quantize(a.view(), q5.view(), g3, b.view()), ShapeError);
}

INSTANTIATE_TEST_SUITE_P(Targets, Elementwise, ::testing::ValuesIn(kernels::available_targets()),
                         target_param_name);

}  // namespace
}  // namespace pquant::test
