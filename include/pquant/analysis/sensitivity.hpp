// Weight sensitivity (docs/method.md section 1): the Optimal Brain Surgeon saliency GPTQ and SpQR
// use, the increase of a layer's squared output error when weight w_ij alone is removed and the
// row's other weights compensate:
//
//   s_ij = w_ij^2 / (2 [H^-1]_jj),   H = 2 X^T X / n  (InputHessian)
//
// H is dampened as GPTQ does before it is inverted: a column that no token ever activates
// (H_jj = 0, a "dead" input) gets H_jj = 1, then every diagonal entry gets
// + damp * mean(diag H) (damp = 0.01). The diagonal of H^-1 comes from Eigen's Cholesky
// factorisation (LLT) in double. A dead column's weights never touch the output: their s is 0
// (GPTQ zeroes those weights).
//
// This header needs Eigen 3 (Debian: libeigen3-dev); the rest of pquant does not.
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"

namespace pquant::analysis {

/// GPTQ's relative dampening: damp * mean(diag H) is added to the diagonal.
inline constexpr double kDefaultDamp = 0.01;

/// diag(H'^-1) of the dampened H' of the row-major symmetric [n x n] `h` (see above). ValueError
/// for a non-finite or negative diagonal, or an H' that is not positive definite.
inline std::vector<double> inverse_hessian_diagonal(std::span<const double> h, std::size_t n,
                                                    double damp = kDefaultDamp) {
  constexpr const char* fn = "analysis::inverse_hessian_diagonal";
  require<ShapeError>(n > 0 && h.size() == n * n, fn, ": argument 'h' must hold n * n = ", n * n,
                      " values, got ", h.size());
  require<ValueError>(std::isfinite(damp) && damp >= 0, fn,
                      ": argument 'damp' must be finite and >= 0, got ", damp);
  Eigen::MatrixXd m(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const double v = h[i * n + j];
      require<ValueError>(std::isfinite(v), fn, ": argument 'h' holds ", v, " at (", i, ", ", j,
                          ")");
      m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = v;
    }
  double diag_sum = 0;
  for (Eigen::Index j = 0; j < m.rows(); ++j) {
    require<ValueError>(m(j, j) >= 0, fn, ": argument 'h' has a negative diagonal entry ", m(j, j),
                        " at ", j, " (not a Hessian of the form 2 X^T X / n)");
    if (m(j, j) == 0) m(j, j) = 1;  // dead input column
    diag_sum += m(j, j);
  }
  const double add = damp * diag_sum / static_cast<double>(n);
  m.diagonal().array() += add;
  const Eigen::LLT<Eigen::MatrixXd> llt(m);
  require<ValueError>(llt.info() == Eigen::Success, fn,
                      ": the dampened Hessian is not positive definite (damp ", damp, ")");
  // H = L L^T, so H^-1 = L^-T L^-1 and [H^-1]_jj is the squared norm of column j of L^-1.
  Eigen::MatrixXd linv = Eigen::MatrixXd::Identity(m.rows(), m.cols());
  llt.matrixL().solveInPlace(linv);
  std::vector<double> d(n);
  for (std::size_t j = 0; j < n; ++j) d[j] = linv.col(static_cast<Eigen::Index>(j)).squaredNorm();
  return d;
}

/// s_ij = w_ij^2 / (2 hinv_diag_j), row-major [out x in] like w; 0 in the columns where
/// `dead[j]` (may be empty: no dead columns).
inline std::vector<double> sensitivity_scores(MatrixView<const float> w,
                                              std::span<const double> hinv_diag,
                                              std::span<const std::uint8_t> dead = {}) {
  constexpr const char* fn = "analysis::sensitivity_scores";
  require<ShapeError>(hinv_diag.size() == w.cols, fn, ": argument 'hinv_diag' must hold ", w.cols,
                      " values (the weights' columns), got ", hinv_diag.size());
  require<ShapeError>(dead.empty() || dead.size() == w.cols, fn,
                      ": argument 'dead' must hold 0 or ", w.cols, " values, got ", dead.size());
  for (std::size_t j = 0; j < w.cols; ++j)
    require<ValueError>(std::isfinite(hinv_diag[j]) && hinv_diag[j] > 0, fn,
                        ": argument 'hinv_diag' must be finite and > 0, element ", j, " is ",
                        hinv_diag[j]);
  std::vector<double> s(w.rows * w.cols);
  for (std::size_t i = 0; i < w.rows; ++i)
    for (std::size_t j = 0; j < w.cols; ++j) {
      const double v = w(i, j);
      s[i * w.cols + j] = !dead.empty() && dead[j] != 0 ? 0.0 : v * v / (2.0 * hinv_diag[j]);
    }
  return s;
}

/// The dead input columns of the row-major [n x n] `h`: H_jj == 0.
inline std::vector<std::uint8_t> dead_columns(std::span<const double> h, std::size_t n) {
  require<ShapeError>(h.size() == n * n, "analysis::dead_columns: argument 'h' must hold ", n * n,
                      " values, got ", h.size());
  std::vector<std::uint8_t> dead(n);
  for (std::size_t j = 0; j < n; ++j) dead[j] = h[j * n + j] == 0 ? 1 : 0;
  return dead;
}

}  // namespace pquant::analysis
