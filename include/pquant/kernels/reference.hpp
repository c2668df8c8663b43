// Scalar reference implementations of every kernel: plain loops over plain integer or float
// matrices, independent of the packed layouts and of Highway. The tests compare every SIMD kernel
// on every target against these (bit-exact on integer paths).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/detail/host.hpp"
#include "pquant/kernels/epilogue.hpp"

namespace pquant::kernels::reference {

/// Y[M x N] = epilogue(X[M x K] * W[N x K]^T) for integer values (int64 accumulation; the caller
/// stays within the K limits, where int64 and int32 agree).
inline void gemm_int(MatrixView<const std::int8_t> x, MatrixView<const std::int8_t> w,
                     const Epilogue& ep, MatrixView<float> y) {
  for (std::size_t i = 0; i < x.rows; ++i)
    for (std::size_t n = 0; n < w.rows; ++n) {
      std::int64_t acc = 0;
      for (std::size_t k = 0; k < x.cols; ++k) acc += std::int64_t{x(i, k)} * w(n, k);
      y(i, n) = detail::epilogue_value(
          static_cast<std::int32_t>(acc), detail::scale_at(ep.row_scale, n),
          detail::scale_at(ep.token_scale, i), ep.residual.empty() ? 0.0f : ep.residual(i, n));
    }
}

/// y[N] = epilogue(W[N x K] . x[K]) for integer values.
inline void gemv_int(std::span<const std::int8_t> x, MatrixView<const std::int8_t> w,
                     const GemvEpilogue& ep, std::span<float> y) {
  const float ts[1] = {ep.token_scale};
  Epilogue e{ep.row_scale, ts, {}};
  if (!ep.residual.empty()) e.residual = {ep.residual.data(), 1, ep.residual.size()};
  gemm_int({x.data(), 1, x.size()}, w, e, {y.data(), 1, y.size()});
}

/// y[N] = token_scale * sum_j C[n][j] * S_j[n] + residual[n] (order and roundings as
/// gemv_codebook): codes[N x K] in [0, 2^bits), codebooks[N x 2^bits].
inline void gemv_codebook(std::span<const std::int8_t> x, MatrixView<const std::uint8_t> codes,
                          MatrixView<const float> codebooks, float token_scale,
                          std::span<const float> residual, std::span<float> y) {
  for (std::size_t n = 0; n < codes.rows; ++n) {
    float acc = 0.0f;
    for (std::size_t j = 0; j < codebooks.cols; ++j) {
      std::int64_t s = 0;
      for (std::size_t k = 0; k < codes.cols; ++k)
        if (codes(n, k) == j) s += x[k];
      acc = std::fma(codebooks(n, j), static_cast<float>(s), acc);
    }
    y[n] = std::fma(acc, token_scale, residual.empty() ? 0.0f : residual[n]);
  }
}

/// C[M x N] = sum_k A(i, k) B(k, j) in double, for any accessors (the FP32 GEMMs' reference), and
/// the bound sum_k |A(i, k) B(k, j)| that the tests' error tolerance scales with.
template <class A, class B>
void gemm_f64(std::size_t m, std::size_t n, std::size_t k, A a, B b, MatrixView<double> c,
              MatrixView<double> abs_sum) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0.0, t = 0.0;
      for (std::size_t p = 0; p < k; ++p) {
        const double v = static_cast<double>(a(i, p)) * static_cast<double>(b(p, j));
        s += v;
        t += std::abs(v);
      }
      c(i, j) = s;
      abs_sum(i, j) = t;
    }
}

}  // namespace pquant::kernels::reference
