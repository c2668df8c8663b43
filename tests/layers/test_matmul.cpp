// The FP32 training products (layers/matmul.hpp on the kernels' GEMM) at training-like shapes,
// against double loops, and bit-identical for 1 and 2 threads. The shapes reach every path of the
// GEMM driver: serial and parallel, B packed or read in place (dW = dY^T X with N % 16 == 0),
// A packed (strided A, many column panels) or broadcast in place, K split into several slices,
// and edge rows / columns.
#include <gtest/gtest.h>

#include <oneapi/tbb/task_arena.h>

#include <cmath>
#include <cstddef>

#include "gradient_check.hpp"
#include "pquant/layers/matmul.hpp"

namespace pquant {
namespace {
using testing::DTensor;
using testing::random_matrix;
using testing::to_double;

struct Shape {
  std::size_t tokens, in, out;
};
// tokens x in -> tokens x out. 520 x 128 x 64: parallel, dW in place over 5 K slices;
// 300 x 200 x 130: parallel, edge panels, strided A packed; 64 x 48 x 32: serial; 7 x 5 x 3: tiny.
const Shape kShapes[] = {{520, 128, 64}, {300, 200, 130}, {64, 48, 32}, {7, 5, 3}, {2048, 32, 16}};

// The three operands of a training product at shape s: X [tokens x in], W [out x in], dY [tokens x
// out].
struct Operands {
  Matrix<float> x, w, dy;
  Operands(const Shape& s, Rng& rng)
      : x(random_matrix(s.tokens, s.in, rng, 1.0)),
        w(random_matrix(s.out, s.in, rng, 1.0)),
        dy(random_matrix(s.tokens, s.out, rng, 1.0)) {}
};

// Y = X W^T, dX = dY W, dW += dY^T X: the three products a linear layer's step runs.
template <class T>
void run_products(MatrixView<const T> x, MatrixView<const T> w, MatrixView<const T> dy,
                  MatrixView<T> y, MatrixView<T> dx, MatrixView<T> dw) {
  detail::matmul_xwt<T>(x, w, y);
  detail::matmul_dyw<T>(dy, w, dx);
  detail::matmul_acc_dyx<T>(dy, x, dw);
}

double max_rel_error(MatrixView<const float> got, const Matrix<double>& ref) {
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) scale = std::max(scale, std::fabs(ref.data()[i]));
  for (std::size_t r = 0; r < got.rows; ++r)
    for (std::size_t c = 0; c < got.cols; ++c)
      worst = std::max(worst, std::fabs(got(r, c) - ref(r, c)));
  return worst / scale;
}

TEST(Matmul, FloatProductsMatchDoubleAtTrainingShapes) {
  Rng rng(11);
  for (const Shape s : kShapes) {
    const Operands op(s, rng);
    const DTensor xd = to_double("x", op.x.view()), wd = to_double("w", op.w.view()),
                  dyd = to_double("dy", op.dy.view());
    Matrix<float> y(s.tokens, s.out), dx(s.tokens, s.in), dw(s.out, s.in);
    Matrix<double> yr(s.tokens, s.out), dxr(s.tokens, s.in), dwr(s.out, s.in);
    for (float& v : dw.flat()) v = 0.5f;  // matmul_acc_dyx accumulates
    for (double& v : dwr.flat()) v = 0.5;
    run_products<float>(op.x.view(), op.w.view(), op.dy.view(), y.view(), dx.view(), dw.view());
    run_products<double>(xd.view(), wd.view(), dyd.view(), yr.view(), dxr.view(), dwr.view());
    // float sums of K products of O(1) terms: relative error ~ K * 2^-24 at worst.
    const double tol = 1e-6 * static_cast<double>(std::max(s.tokens, std::max(s.in, s.out)));
    EXPECT_LT(max_rel_error(y.view(), yr), tol) << s.tokens << "x" << s.in << "x" << s.out;
    EXPECT_LT(max_rel_error(dx.view(), dxr), tol) << s.tokens << "x" << s.in << "x" << s.out;
    EXPECT_LT(max_rel_error(dw.view(), dwr), tol) << s.tokens << "x" << s.in << "x" << s.out;
  }
}

TEST(Matmul, BitIdenticalForOneAndTwoThreads) {
  Rng rng(12);
  for (const Shape s : kShapes) {
    const Operands op(s, rng);
    auto run = [&](int threads) {
      std::vector<Matrix<float>> out;
      out.emplace_back(s.tokens, s.out);
      out.emplace_back(s.tokens, s.in);
      out.emplace_back(s.out, s.in);
      tbb::task_arena arena(threads);
      arena.execute([&] {
        run_products<float>(op.x.view(), op.w.view(), op.dy.view(), out[0].view(), out[1].view(),
                            out[2].view());
      });
      return out;
    };
    const auto one = run(1), two = run(2);
    for (std::size_t m = 0; m < 3; ++m)
      for (std::size_t i = 0; i < one[m].size(); ++i)
        ASSERT_EQ(one[m].data()[i], two[m].data()[i]) << "product " << m << " element " << i;
  }
}

}  // namespace
}  // namespace pquant
