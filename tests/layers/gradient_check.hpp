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

namespace pquant::testing {

/// The STE surrogate of a quantized layer, for gradient checks.
///
/// Finite differences through a quantizer are meaningless (piecewise constant: zero almost
/// everywhere, undefined at the steps). What the layers promise instead is the STE convention:
/// the analytic gradient equals the exact gradient of the surrogate in which every quantization
/// site k is replaced by the identity at the current quantized values,
///     Q_k(v)  ->  Q_k(v0) + m .* (v - v0),
/// v0 the site's input at the base point, Q_k(v0) computed by the real float policy, m = 1 for the
/// plain STE or the clip-range mask for the clipped STE. At the base point the surrogate's forward
/// equals the layer's; its gradient is "backward with the quantized operands" (dX = dY W_q,
/// dW = dY^T X_q). A reference loss calls quantize() at every site in a fixed order; the first
/// pass records, later passes (the finite differences) replay.
class SteSurrogate {
 public:
  /// Starts a pass of the reference loss (sites are numbered in call order).
  void begin_pass() { next_ = 0; }
  /// After the recording pass: freeze every site.
  void freeze() { recording_ = false; }
  std::size_t sites() const { return sites_.size(); }

  /// v (in place) -> Q(v0) + m .* (v - v0). `policy(in, out)` is the float fake-quantizer;
  /// `mask(in, m)` fills the STE mask (all ones when absent).
  template <class Policy, class Mask>
  void quantize(MatrixView<double> v, Policy policy, Mask mask) {
    if (recording_) {
      Site s{zeros("v0", v.rows, v.cols), zeros("q0", v.rows, v.cols), zeros("m", v.rows, v.cols)};
      Matrix<float> in(v.rows, v.cols), out(v.rows, v.cols), m(v.rows, v.cols);
      for (std::size_t r = 0; r < v.rows; ++r)
        for (std::size_t c = 0; c < v.cols; ++c) {
          s.v0(r, c) = v(r, c);
          in(r, c) = static_cast<float>(v(r, c));
        }
      policy(MatrixView<const float>(in.view()), out.view());
      mask(MatrixView<const float>(in.view()), m.view());
      for (std::size_t r = 0; r < v.rows; ++r)
        for (std::size_t c = 0; c < v.cols; ++c) {
          s.q0(r, c) = out(r, c);
          s.m(r, c) = m(r, c);
        }
      sites_.push_back(std::move(s));
    }
    const Site& s = sites_.at(next_++);
    for (std::size_t r = 0; r < v.rows; ++r)
      for (std::size_t c = 0; c < v.cols; ++c)
        v(r, c) = s.q0(r, c) + s.m(r, c) * (v(r, c) - s.v0(r, c));
  }
  template <class Policy>
  void quantize(MatrixView<double> v, Policy policy) {
    quantize(v, policy, [](MatrixView<const float>, MatrixView<float> m) {
      for (std::size_t r = 0; r < m.rows; ++r)
        for (std::size_t c = 0; c < m.cols; ++c) m(r, c) = 1.0f;
    });
  }
  /// The recorded quantized value of site k (Q(v0)).
  const DTensor& quantized(std::size_t k) const { return sites_.at(k).q0; }

 private:
  struct Site {
    DTensor v0, q0, m;
  };
  std::vector<Site> sites_;
  std::size_t next_ = 0;
  bool recording_ = true;
};

}  // namespace pquant::testing
