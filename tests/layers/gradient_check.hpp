// The one gradient-check harness for every layer (as dlib's test_layer).
//
// A test states the layer's loss L = sum(R .* Y) (R a fixed random upstream gradient) as a
// function of named double-precision tensors (the input and every parameter), written with the
// T = double instantiations of the layers' math or an independent reference. The harness takes
// central finite differences of that function, h = 1e-6, in double (truncation error ~h^2, rounding
// ~1e-16/h: both far below the tolerance), and compares them with the float layer's analytic
// gradients: max |analytic - numeric| <= tol * max(1, max |numeric|) per tensor.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant::testing {

struct DTensor {
  std::string name;
  std::size_t rows = 0, cols = 0;
  std::vector<double> v;
  MatrixView<const double> view() const { return {v.data(), rows, cols}; }
  MatrixView<double> view() { return {v.data(), rows, cols}; }
  double& operator()(std::size_t r, std::size_t c) { return v[r * cols + c]; }
  double operator()(std::size_t r, std::size_t c) const { return v[r * cols + c]; }
};

inline DTensor to_double(std::string name, MatrixView<const float> m) {
  DTensor t{std::move(name), m.rows, m.cols, std::vector<double>(m.rows * m.cols)};
  for (std::size_t r = 0; r < m.rows; ++r)
    for (std::size_t c = 0; c < m.cols; ++c) t(r, c) = m(r, c);
  return t;
}

inline DTensor zeros(std::string name, std::size_t rows, std::size_t cols) {
  return {std::move(name), rows, cols, std::vector<double>(rows * cols, 0.0)};
}

inline Matrix<float> random_matrix(std::size_t rows, std::size_t cols, Rng& rng,
                                   double scale = 1.0) {
  Matrix<float> m(rows, cols);
  for (float& v : m.flat()) v = static_cast<float>(rng.normal(0.0, scale));
  return m;
}

/// sum(R .* Y) in double.
inline double dot(MatrixView<const double> r, MatrixView<const double> y) {
  double s = 0;
  for (std::size_t i = 0; i < r.rows; ++i)
    for (std::size_t j = 0; j < r.cols; ++j) s += r(i, j) * y(i, j);
  return s;
}

using LossFn = std::function<double(const std::vector<DTensor>&)>;

/// Central differences of `loss` with respect to every element of every tensor in `point`.
inline std::vector<DTensor> numeric_gradients(const LossFn& loss, std::vector<DTensor> point,
                                              double h = 1e-6) {
  std::vector<DTensor> grads;
  for (std::size_t t = 0; t < point.size(); ++t) {
    DTensor g = zeros(point[t].name, point[t].rows, point[t].cols);
    for (std::size_t i = 0; i < point[t].v.size(); ++i) {
      const double saved = point[t].v[i];
      point[t].v[i] = saved + h;
      const double up = loss(point);
      point[t].v[i] = saved - h;
      const double down = loss(point);
      point[t].v[i] = saved;
      g.v[i] = (up - down) / (2 * h);
    }
    grads.push_back(std::move(g));
  }
  return grads;
}

/// max |a - n| <= tol * max(1, max |n|), with the worst element in the failure message.
inline void expect_close(MatrixView<const float> analytic, const DTensor& numeric, double tol) {
  ASSERT_EQ(analytic.rows, numeric.rows) << numeric.name;
  ASSERT_EQ(analytic.cols, numeric.cols) << numeric.name;
  double scale = 1.0, worst = 0.0;
  std::size_t wr = 0, wc = 0;
  for (double v : numeric.v) scale = std::max(scale, std::fabs(v));
  for (std::size_t r = 0; r < numeric.rows; ++r)
    for (std::size_t c = 0; c < numeric.cols; ++c) {
      const double e = std::fabs(analytic(r, c) - numeric(r, c));
      if (e > worst) worst = e, wr = r, wc = c;
    }
  EXPECT_LE(worst, tol * scale) << "gradient of '" << numeric.name << "' at (" << wr << ", " << wc
                                << "): analytic " << analytic(wr, wc) << " vs numeric "
                                << numeric(wr, wc);
}

/// Runs the finite differences and compares each tensor with its analytic gradient.
inline void check_gradients(const LossFn& loss, const std::vector<DTensor>& point,
                            const std::vector<MatrixView<const float>>& analytic,
                            double tol = 2e-4) {
  ASSERT_EQ(point.size(), analytic.size());
  const std::vector<DTensor> numeric = numeric_gradients(loss, point);
  for (std::size_t t = 0; t < point.size(); ++t) {
    SCOPED_TRACE(point[t].name);
    expect_close(analytic[t], numeric[t], tol);
  }
}

}  // namespace pquant::testing
