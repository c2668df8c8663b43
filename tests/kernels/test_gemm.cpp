// GEMM kernels on every supported target: FP32 training GEMMs vs a double-precision reference with
// a justified tolerance; integer GEMMs bit-exact vs the scalar reference.
#include <gtest/gtest.h>

#include <oneapi/tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernel_test_util.hpp"
#include "pquant/kernels.hpp"

namespace pquant::test {
namespace {

struct Mnk {
  std::size_t m, n, k;
};
// The last three run backward-weights (K = m tokens) on its parallel path with a packed dY^T
// (partial micro-panels), an in-place X (n multiple of 16) and K slices not a multiple of 256.
const Mnk kShapes[] = {{1, 1, 1},      {3, 7, 5},      {127, 129, 131},
                       {6, 16, 256},   {97, 300, 513}, {256, 96, 64},
                       {700, 131, 80}, {517, 7, 48},   {1000, 64, 33},
                       {1, 300, 513},  {1, 128, 128},  {1, 40, 7}};  // one row: GemmMicroRow

// Error bound of a float dot product of K terms computed with FMAs in any order, plus one extra
// rounding for an accumulated output: |error| <= gamma_(K+1) * sum_k |a b| (+ |C_old|), with
// gamma_n = n u / (1 - n u) and u = 2^-24 (Higham, Accuracy and Stability, section 3.1).
double tolerance(std::size_t k, double abs_sum) {
  const double u = std::ldexp(1.0, -24), n = double(k + 1);
  return n * u / (1 - n * u) * abs_sum + 1e-30;
}

void expect_close(MatrixView<const float> got, MatrixView<const double> ref,
                  MatrixView<const double> abs_sum, std::size_t k, const char* what) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.rows; ++i)
    for (std::size_t j = 0; j < got.cols; ++j) {
      const double err = std::abs(double(got(i, j)) - ref(i, j));
      if (!(err <= tolerance(k, abs_sum(i, j))) && bad++ < 5)
        ADD_FAILURE() << what << " (" << i << ", " << j << "): " << got(i, j) << " vs "
                      << ref(i, j);
    }
  EXPECT_EQ(bad, 0u) << what;
}

class Gemm : public PerTarget {};

TEST_P(Gemm, ForwardMatchesDoubleReference) {
  for (const Mnk& s : kShapes) {
    const auto x = random_matrix(s.m, s.k, 1), w = random_matrix(s.n, s.k, 2);
    Matrix<float> y(s.m, s.n);
    kernels::gemm_forward(x, w, y);
    Matrix<double> ref(s.m, s.n), abs_sum(s.m, s.n);
    kernels::reference::gemm_f64(
        s.m, s.n, s.k, [&](std::size_t i, std::size_t p) { return x(i, p); },
        [&](std::size_t p, std::size_t j) { return w(j, p); }, ref.view(), abs_sum.view());
    expect_close(y, ref, abs_sum, s.k, "forward");
    // Accumulate mode adds onto what is there: y + X W^T.
    Matrix<float> y2 = y;
    kernels::gemm_forward(x, w, y2, kernels::Accumulate::accumulate);
    for (std::size_t i = 0; i < s.m; ++i)
      for (std::size_t j = 0; j < s.n; ++j) {
        ref(i, j) += y(i, j);
        abs_sum(i, j) += std::abs(y(i, j));
      }
    expect_close(y2, ref, abs_sum, s.k + 1, "forward accumulate");
  }
}

// A single row of C (a decoding query) sums each element in the order the multi-row kernel does:
// row i of a product equals the product of row i alone, bit for bit, in every operand layout.
TEST_P(Gemm, OneRowEqualsItsRowOfALargerProductBitExactly) {
  for (const Mnk& s : {Mnk{9, 300, 513}, Mnk{7, 128, 128}, Mnk{5, 72, 30}, Mnk{13, 2048, 64}}) {
    const auto x = random_matrix(s.m, s.k, 3), w = random_matrix(s.n, s.k, 4);
    const auto wt = random_matrix(s.k, s.n, 5), xt = random_matrix(s.k, s.m, 6);
    Matrix<float> y(s.m, s.n), yd(s.m, s.n), yw(s.m, s.n), row(1, s.n);
    kernels::gemm_forward(x, w, y);
    kernels::gemm_backward_data(x, wt, yd);
    kernels::gemm_backward_weights(xt, wt, yw, kernels::Accumulate::overwrite);
    for (std::size_t i = 0; i < s.m; i += 4) {
      kernels::gemm_forward(x.view().row_range(i, 1), w, row);
      for (std::size_t j = 0; j < s.n; ++j) ASSERT_EQ(row(0, j), y(i, j)) << "forward " << i;
      kernels::gemm_backward_data(x.view().row_range(i, 1), wt, row);
      for (std::size_t j = 0; j < s.n; ++j) ASSERT_EQ(row(0, j), yd(i, j)) << "data " << i;
      kernels::gemm_backward_weights(MatrixView<const float>(&xt(0, i), s.k, 1, xt.cols()), wt,
                                     row, kernels::Accumulate::overwrite);
      for (std::size_t j = 0; j < s.n; ++j) ASSERT_EQ(row(0, j), yw(i, j)) << "weights " << i;
    }
  }
}

TEST_P(Gemm, BackwardDataMatchesDoubleReference) {
  for (const Mnk& s : kShapes) {
    const auto dy = random_matrix(s.m, s.n, 3), w = random_matrix(s.n, s.k, 4);
    Matrix<float> dx(s.m, s.k);
    kernels::gemm_backward_data(dy, w, dx);
    Matrix<double> ref(s.m, s.k), abs_sum(s.m, s.k);
    kernels::reference::gemm_f64(
        s.m, s.k, s.n, [&](std::size_t i, std::size_t p) { return dy(i, p); },
        [&](std::size_t p, std::size_t j) { return w(p, j); }, ref.view(), abs_sum.view());
    expect_close(dx, ref, abs_sum, s.n, "backward data");
  }
}

TEST_P(Gemm, BackwardWeightsAccumulatesDoubleReference) {
  for (const Mnk& s : kShapes) {
    const auto dy = random_matrix(s.m, s.n, 5), x = random_matrix(s.m, s.k, 6);
    Matrix<float> dw = random_matrix(s.n, s.k, 7);
    const Matrix<float> dw0 = dw;
    kernels::gemm_backward_weights(dy, x, dw);  // default: accumulate
    Matrix<double> ref(s.n, s.k), abs_sum(s.n, s.k);
    kernels::reference::gemm_f64(
        s.n, s.k, s.m, [&](std::size_t i, std::size_t p) { return dy(p, i); },
        [&](std::size_t p, std::size_t j) { return x(p, j); }, ref.view(), abs_sum.view());
    for (std::size_t i = 0; i < s.n; ++i)
      for (std::size_t j = 0; j < s.k; ++j) {
        ref(i, j) += dw0(i, j);
        abs_sum(i, j) += std::abs(dw0(i, j));
      }
    expect_close(dw, ref, abs_sum, s.m + 1, "backward weights");
  }
}

TEST_P(Gemm, StridedViewsAreRespected) {
  // Sub-views with stride > cols: the kernels must neither read nor write outside them.
  Matrix<float> xb = random_matrix(20, 40, 8), wb = random_matrix(30, 40, 9);
  Matrix<float> yb(20, 50);
  for (auto& v : yb.flat()) v = 7.0f;
  MatrixView<const float> x(xb.data(), 20, 33, 40), w(wb.data(), 30, 33, 40);
  MatrixView<float> y(yb.data(), 20, 30, 50);
  kernels::gemm_forward(x, w, y);
  Matrix<double> ref(20, 30), abs_sum(20, 30);
  kernels::reference::gemm_f64(
      20, 30, 33, [&](std::size_t i, std::size_t p) { return x(i, p); },
      [&](std::size_t p, std::size_t j) { return w(j, p); }, ref.view(), abs_sum.view());
  expect_close(y, ref, abs_sum, 33, "strided forward");
  for (std::size_t i = 0; i < 20; ++i)
    for (std::size_t j = 30; j < 50; ++j) ASSERT_EQ(yb(i, j), 7.0f);
}

TEST_P(Gemm, BackwardWeightsStridedViewsAreRespected) {
  // dY and X as sub-views (row strides > cols) on the packed-dY^T, in-place-X path.
  const std::size_t tokens = 600, n = 70, k = 64;
  Matrix<float> dyb = random_matrix(tokens, n + 5, 30), xb = random_matrix(tokens, k + 16, 31);
  Matrix<float> dwb(n, k + 3);
  for (auto& v : dwb.flat()) v = 7.0f;
  MatrixView<const float> dy(dyb.data() + 2, tokens, n, n + 5),
      x(xb.data() + 16, tokens, k, k + 16);
  MatrixView<float> dw(dwb.data(), n, k, k + 3);
  kernels::gemm_backward_weights(dy, x, dw, kernels::Accumulate::overwrite);
  Matrix<double> ref(n, k), abs_sum(n, k);
  kernels::reference::gemm_f64(
      n, k, tokens, [&](std::size_t i, std::size_t p) { return dy(p, i); },
      [&](std::size_t p, std::size_t j) { return x(p, j); }, ref.view(), abs_sum.view());
  expect_close(dw, ref, abs_sum, tokens, "strided backward weights");
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = k; j < k + 3; ++j) ASSERT_EQ(dwb(i, j), 7.0f);
}

TEST_P(Gemm, IntegerGemmsMatchReferenceBitExactly) {
  for (const Mnk& s : {Mnk{1, 1, 1}, Mnk{3, 7, 5}, Mnk{127, 129, 131}, Mnk{40, 70, 2500}}) {
    const auto x = random_int8(s.m, s.k, -128, 127, 11);
    const auto row_scale = random_floats(s.n, 0.01f, 1.0f, 12);
    const auto token_scale = random_floats(s.m, 0.001f, 0.1f, 13);
    const auto residual = random_matrix(s.m, s.n, 14);
    const kernels::Epilogue ep{row_scale, token_scale, residual};
    Matrix<float> y(s.m, s.n), ref(s.m, s.n);
    const auto w1 = random_sign(s.n, s.k, 15);
    kernels::gemm_w1a8(x, kernels::pack_sign(w1), ep, y);
    kernels::reference::gemm_int(x, w1, ep, ref);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << "w1a8";
    const auto w2 = random_int8(s.n, s.k, -1, 1, 16);
    kernels::gemm_w2a8(x, kernels::pack_ternary(w2), {row_scale, {}, {}}, y);
    kernels::reference::gemm_int(x, w2, {row_scale, {}, {}}, ref);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << "w2a8";
    // K = 2500 > 1024 exercises the exact K-chunking of the INT8 GEMM.
    const auto w8 = random_int8(s.n, s.k, -128, 127, 17);
    kernels::gemm_w8a8(x, kernels::pack_int8(w8), ep, y);
    kernels::reference::gemm_int(x, w8, ep, ref);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << "w8a8";
    kernels::gemm_int8_values(x, w8, ep, y);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << "int8 values";
    kernels::gemm_int8_values(x, w1, ep, y);
    kernels::reference::gemm_int(x, w1, ep, ref);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << "sign values";
  }
}

// The token-major LUT GEMM (whole chunks of 32 tokens, a last chunk of >= 30 padded, fewer tokens
// on the per-token LUT GEMM): token counts on both sides of each split, K over several 16-byte
// blocks and not a multiple of 8, row counts that end mid-tile, a residual that is the output.
TEST_P(Gemm, TokenMajorLutGemmMatchesReferenceBitExactly) {
  for (const Mnk& s : {Mnk{30, 33, 129}, Mnk{32, 70, 2500}, Mnk{45, 31, 300}, Mnk{94, 64, 1031},
                       Mnk{29, 5, 17}, Mnk{23, 100, 300}}) {
    const auto x = random_int8(s.m, s.k, -128, 127, 41);
    const auto row_scale = random_floats(s.n, 0.01f, 1.0f, 42);
    const auto token_scale = random_floats(s.m, 0.001f, 0.1f, 43);
    const auto residual = random_matrix(s.m, s.n, 44);
    Matrix<float> y(s.m, s.n), ref(s.m, s.n);
    const auto w1 = random_sign(s.n, s.k, 45);
    kernels::gemm_w1a8(x, kernels::pack_sign(w1), {row_scale, token_scale, residual}, y);
    kernels::reference::gemm_int(x, w1, {row_scale, token_scale, residual}, ref);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
        << "w1a8 " << s.m << "x" << s.n << "x" << s.k;
    const auto w2 = random_int8(s.n, s.k, -1, 1, 46);
    Matrix<float> y2 = residual;  // the residual is the output
    kernels::gemm_w2a8(x, kernels::pack_ternary(w2), {{}, token_scale, y2}, y2);
    kernels::reference::gemm_int(x, w2, {{}, token_scale, residual}, ref);
    EXPECT_EQ(std::memcmp(y2.data(), ref.data(), y2.size() * sizeof(float)), 0)
        << "w2a8 " << s.m << "x" << s.n << "x" << s.k;
  }
}

TEST_P(Gemm, Int8GemmSymmetricWeightsPathIsExact) {
  // No weight is -128 (as the absmax quantizer guarantees), so AVX2 takes the |x| x sign(w, x)
  // pmaddubsw path; activations include -128 and +127 and K is and is not a multiple of 32.
  for (const Mnk& s : {Mnk{70, 45, 300}, Mnk{33, 64, 64}, Mnk{2, 4, 32}}) {
    auto x = random_int8(s.m, s.k, -128, 127, 31);
    x(0, 0) = -128;
    x(s.m - 1, s.k - 1) = 127;
    const auto w = random_int8(s.n, s.k, -127, 127, 32);
    const auto packed = kernels::pack_int8(w);
    ASSERT_TRUE(packed.symmetric());
    const auto row_scale = random_floats(s.n, 0.01f, 1.0f, 33);
    const auto token_scale = random_floats(s.m, 0.001f, 0.1f, 34);
    const kernels::Epilogue ep{row_scale, token_scale, {}};
    Matrix<float> y(s.m, s.n), ref(s.m, s.n);
    kernels::gemm_w8a8(x, packed, ep, y);
    kernels::reference::gemm_int(x, w, ep, ref);
    EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
        << s.m << "x" << s.n << "x" << s.k;
  }
}

TEST_P(Gemm, IntegerGemmExtremes) {
  // 5 tokens (per-token LUT GEMM), 33 (a token-major chunk, then one token) and 62 (a chunk and a
  // padded chunk of 30): every table entry at its bound, 32 entries per int16 sum.
  const std::size_t k = 3000;
  for (std::size_t m : {5, 33, 62}) {
    Matrix<std::int8_t> x(m, k), w(37, k);  // two tiles: AVX3_DL's wide tables, then one more
    for (auto& v : x.flat()) v = -128;
    for (auto& v : w.flat()) v = -128;
    Matrix<float> y(m, 37);
    kernels::gemm_w8a8(x, kernels::pack_int8(w), {}, y);
    for (float v : y.flat()) ASSERT_EQ(v, 3000.0f * 16384.0f);
    for (auto& v : w.flat()) v = -1;
    kernels::gemm_w1a8(x, kernels::pack_sign(w), {}, y);
    for (float v : y.flat()) ASSERT_EQ(v, 3000.0f * 128.0f);
    kernels::gemm_w2a8(x, kernels::pack_ternary(w), {}, y);
    for (float v : y.flat()) ASSERT_EQ(v, 3000.0f * 128.0f);
    for (auto& v : x.flat()) v = 127;
    for (auto& v : w.flat()) v = 1;
    kernels::gemm_w1a8(x, kernels::pack_sign(w), {}, y);
    for (float v : y.flat()) ASSERT_EQ(v, 3000.0f * 127.0f);
    kernels::gemm_w2a8(x, kernels::pack_ternary(w), {}, y);
    for (float v : y.flat()) ASSERT_EQ(v, 3000.0f * 127.0f);
  }
}

TEST_P(Gemm, W8A8AtTheInt32LimitIsExact) {
  // K = kMaxKInt8: all products +16384 (the largest int32 sum), and x = 127 against w = +-127 /
  // -128, where AVX3_DL's biased (x + 128) w sums wrap modulo 2^32 before the correction. Five
  // tokens and rows cover the 4 x 4 micro-kernel and its edges.
  const std::size_t k = kernels::kMaxKInt8;
  Matrix<std::int8_t> x(5, k), w(5, k);
  for (std::size_t c = 0; c < k; ++c) {
    for (std::size_t i = 0; i < 5; ++i) x(i, c) = i == 0 ? -128 : 127;
    for (std::size_t r = 0; r < 5; ++r) w(r, c) = r == 0 ? -128 : (r % 2 ? 127 : -127);
  }
  Matrix<float> y(5, 5), ref(5, 5);
  kernels::gemm_w8a8(x, kernels::pack_int8(w), {}, y);
  kernels::reference::gemm_int(x, w, {}, ref);
  EXPECT_EQ(y(0, 0), static_cast<float>(2147467264));
  EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0);
}

TEST_P(Gemm, ResultsDoNotDependOnThreadCount) {
  const auto x = random_matrix(300, 200, 21), w = random_matrix(260, 200, 22);
  const auto dy = random_matrix(300, 260, 23);
  const auto xq = random_int8(300, 200, -128, 127, 24);
  const auto w1 = kernels::pack_sign(random_sign(260, 200, 25));
  const auto w8 = kernels::pack_int8(random_int8(260, 200, -127, 127, 26));
  const auto ts = random_floats(300, 0.001f, 0.1f, 27);
  // dY^T X with an in-place X (64 columns) and a packed dY^T over 3 K slices.
  const auto dy2 = random_matrix(700, 131, 28), x2 = random_matrix(700, 64, 29);
  auto run = [&](int threads) {
    Matrix<float> y(300, 260), dx(300, 200), dw(260, 200), y1(300, 260), y8(300, 260);
    Matrix<float> dw2(131, 64);
    tbb::task_arena arena(threads);
    arena.execute([&] {
      kernels::gemm_forward(x, w, y);
      kernels::gemm_backward_data(dy, w, dx);
      kernels::gemm_backward_weights(dy, x, dw);
      kernels::gemm_backward_weights(dy2, x2, dw2);
      kernels::gemm_w1a8(xq, w1, {{}, ts, {}}, y1);
      kernels::gemm_w8a8(xq, w8, {{}, ts, {}}, y8);
    });
    std::vector<float> all(y.flat().begin(), y.flat().end());
    for (const Matrix<float>* m : {&dx, &dw, &dw2, &y1, &y8})
      all.insert(all.end(), m->flat().begin(), m->flat().end());
    return all;
  };
  const auto one = run(1);
  const auto two = run(2);
  const auto five = run(5);
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(one.data(), five.data(), one.size() * sizeof(float)), 0);
}

TEST_P(Gemm, BadArgumentsThrow) {
  Matrix<float> x(4, 5), w(6, 5), y(4, 6), w_bad(6, 4), y_bad(4, 5);
  EXPECT_THROW(kernels::gemm_forward(x, w_bad, y), ShapeError);
  EXPECT_THROW(kernels::gemm_forward(x, w, y_bad), ShapeError);
  EXPECT_THROW(kernels::gemm_forward(MatrixView<const float>{}, w, y), ShapeError);
  Matrix<float> dx(4, 5), dx_bad(4, 6);
  EXPECT_THROW(kernels::gemm_backward_data(y, w, dx_bad), ShapeError);
  EXPECT_THROW(kernels::gemm_backward_data(y, w_bad, dx), ShapeError);
  Matrix<float> dw(6, 5), dw_bad(5, 6);
  EXPECT_THROW(kernels::gemm_backward_weights(y, x, dw_bad), ShapeError);
  EXPECT_THROW(kernels::gemm_backward_weights(y, Matrix<float>(3, 5), dw), ShapeError);
  Matrix<float> big(10, 6);  // an output overlapping an input is a ValueError
  EXPECT_THROW(kernels::gemm_forward(MatrixView<const float>(big.data(), 4, 5, 6), w,
                                     MatrixView<float>(big.data() + 6, 4, 6)),
               ValueError);
  EXPECT_THROW(kernels::gemm_backward_weights(y, x, MatrixView<float>(x.data(), 4, 5)), ShapeError);
  Matrix<float> dw_sq(6, 6), y66(4, 6);
  EXPECT_THROW(kernels::gemm_backward_weights(y66, MatrixView<const float>(dw_sq.data(), 4, 6),
                                              dw_sq.view()),
               ValueError);
  Matrix<std::int8_t> xi(4, 5), wi(6, 5);
  const auto sw = kernels::pack_sign(random_sign(6, 5, 1));
  std::vector<float> s3(3);
  EXPECT_THROW(kernels::gemm_w1a8(xi, sw, {}, y_bad), ShapeError);
  EXPECT_THROW(kernels::gemm_w1a8(Matrix<std::int8_t>(4, 6), sw, {}, y), ShapeError);
  EXPECT_THROW(kernels::gemm_w1a8(xi, sw, {s3, {}, {}}, y), ShapeError);
  EXPECT_THROW(kernels::gemm_w1a8(xi, sw, {{}, s3, {}}, y), ShapeError);
  EXPECT_THROW(kernels::gemm_w1a8(xi, sw, {{}, {}, Matrix<float>(4, 5)}, y), ShapeError);
  EXPECT_THROW(kernels::gemm_w8a8(xi, kernels::pack_int8(wi), {}, y_bad), ShapeError);
}

TEST(GemmLimits, LowBitKBeyondTheInt32LimitIsAnError) {
  const std::size_t k = kernels::kMaxKLowBit + 1;
  const kernels::SignWeights w(1, k);
  std::vector<std::int8_t> x(k);
  std::vector<float> y(1);
  EXPECT_THROW(kernels::gemv_w1a8(x, w, {}, y), ShapeError);
}

INSTANTIATE_TEST_SUITE_P(Targets, Gemm, ::testing::ValuesIn(kernels::available_targets()),
                         target_param_name);

}  // namespace
}  // namespace pquant::test
