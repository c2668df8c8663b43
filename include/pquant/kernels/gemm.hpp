// Batched kernels: the FP32 GEMMs of training (forward, backward data, backward weights) and the
// integer GEMMs of the quantized forward (W1A8, W2A8, W8A8; QAT and prompt prefill), with the same
// fused epilogue as the GEMVs. Blocked for cache, parallel over blocks of the output with oneTBB,
// results independent of the thread count. See docs/kernels.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/detail/host.hpp"
#include "pquant/kernels/detail/int8_gemm.hpp"
#include "pquant/kernels/detail/lut_gemm.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/kernel_weights.hpp"

namespace pquant::kernels {

namespace detail {

/// Outputs of the FP32 GEMMs must not overlap their inputs (they are written while inputs are
/// read).
inline void check_no_overlap(MatrixView<const float> out, MatrixView<const float> in,
                             const char* fn, const char* out_arg, const char* in_arg) {
  const float* o0 = out.data;
  const float* o1 = out.data + (out.rows - 1) * out.stride + out.cols;
  const float* i0 = in.data;
  const float* i1 = in.data + (in.rows - 1) * in.stride + in.cols;
  require<ValueError>(!(o0 < i1 && i0 < o1), fn, ": argument '", out_arg,
                      "' must not overlap argument '", in_arg, "'");
}

}  // namespace detail

/// Y[M x N] (= or +=) X[M x K] * W[N x K]^T: the forward product of a linear layer.
inline void gemm_forward(MatrixView<const float> x, MatrixView<const float> w, MatrixView<float> y,
                         Accumulate mode = Accumulate::overwrite) {
  constexpr const char* fn = "gemm_forward";
  check::non_empty(x, fn, "x");
  check::non_empty(w, fn, "w");
  check::non_empty(MatrixView<const float>(y), fn, "y");
  require<ShapeError>(w.cols == x.cols, fn, ": argument 'w' must have ", x.cols,
                      " columns (K of 'x'), got ", w.cols);
  check::shape(y, x.rows, w.rows, fn, "y");
  detail::check_no_overlap(y, x, fn, "y", "x");
  detail::check_no_overlap(y, w, fn, "y", "w");
  detail::gemm_f32({x.data, x.stride, 1, w.data, 1, w.stride, y.data, y.stride, x.rows, w.rows,
                    x.cols, mode == Accumulate::accumulate});
}

/// dX[M x K] (= or +=) dY[M x N] * W[N x K]: the gradient with respect to the input.
inline void gemm_backward_data(MatrixView<const float> dy, MatrixView<const float> w,
                               MatrixView<float> dx, Accumulate mode = Accumulate::overwrite) {
  constexpr const char* fn = "gemm_backward_data";
  check::non_empty(dy, fn, "dy");
  check::non_empty(w, fn, "w");
  check::non_empty(MatrixView<const float>(dx), fn, "dx");
  require<ShapeError>(w.rows == dy.cols, fn, ": argument 'w' must have ", dy.cols,
                      " rows (N of 'dy'), got ", w.rows);
  check::shape(dx, dy.rows, w.cols, fn, "dx");
  detail::check_no_overlap(dx, dy, fn, "dx", "dy");
  detail::check_no_overlap(dx, w, fn, "dx", "w");
  detail::gemm_f32({dy.data, dy.stride, 1, w.data, w.stride, 1, dx.data, dx.stride, dy.rows, w.cols,
                    dy.cols, mode == Accumulate::accumulate});
}

/// dW[N x K] (+= by default, or =) dY[M x N]^T * X[M x K]: the gradient with respect to the
/// weights.
inline void gemm_backward_weights(MatrixView<const float> dy, MatrixView<const float> x,
                                  MatrixView<float> dw, Accumulate mode = Accumulate::accumulate) {
  constexpr const char* fn = "gemm_backward_weights";
  check::non_empty(dy, fn, "dy");
  check::non_empty(x, fn, "x");
  check::non_empty(MatrixView<const float>(dw), fn, "dw");
  require<ShapeError>(x.rows == dy.rows, fn, ": argument 'x' must have ", dy.rows,
                      " rows (M of 'dy'), got ", x.rows);
  check::shape(dw, dy.cols, x.cols, fn, "dw");
  detail::check_no_overlap(dw, dy, fn, "dw", "dy");
  detail::check_no_overlap(dw, x, fn, "dw", "x");
  detail::gemm_f32({dy.data, 1, dy.stride, x.data, x.stride, 1, dw.data, dw.stride, dy.cols, x.cols,
                    dy.rows, mode == Accumulate::accumulate});
}

namespace detail {

inline void check_int_gemm(MatrixView<const std::int8_t> x, std::size_t n, std::size_t k,
                           const Epilogue& ep, MatrixView<float> y, const char* fn) {
  check::non_empty(x, fn, "x");
  check::non_empty(MatrixView<const float>(y), fn, "y");
  require<ShapeError>(x.cols == k, fn, ": argument 'x' must have ", k, " columns (K of 'w'), got ",
                      x.cols);
  check::shape(y, x.rows, n, fn, "y");
  check_scales(ep.row_scale, n, fn, "row_scale");
  check_scales(ep.token_scale, x.rows, fn, "token_scale");
  if (!ep.residual.empty()) check::shape(ep.residual, x.rows, n, fn, "residual");
}

/// f(first, count) over blocks of 64 rows of [0, rows), in parallel (element-wise work: the result
/// does not depend on the thread count).
template <class F>
void for_row_blocks(std::size_t rows, F&& f) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows, 64),
                    [&](const tbb::blocked_range<std::size_t>& b) { f(b.begin(), b.size()); });
}

/// The integer GEMM on the FP32 microkernel: operands are small integers, so every FMA and every
/// partial sum is exact in float as long as |partial sum| <= 2^24; `chunk` (2^24 / max |w x|)
/// K-columns are multiplied at a time and the chunk results added in int32. With K <= chunk (every
/// training shape) the exact sums land in y (or, with a residual that may alias y, in a scratch)
/// and the epilogue runs over them in place, split over rows.
template <class Decode>
void int_gemm(MatrixView<const std::int8_t> x, std::size_t n, std::size_t k, Decode decode,
              std::size_t chunk, const Epilogue& ep, MatrixView<float> y) {
  const std::size_t m = x.rows;
  Scratch<float, 1> xf(m * k);
  Scratch<float, 2> wf(n * k);
  float* const xd = xf.data();
  for_row_blocks(m, [&](std::size_t i0, std::size_t rows) {
    for (std::size_t i = i0; i < i0 + rows; ++i) {
      const std::int8_t* src = x.data + i * x.stride;
      float* dst = xd + i * k;
      for (std::size_t c = 0; c < k; ++c) dst[c] = static_cast<float>(src[c]);
    }
  });
  decode(wf.data());
  const bool direct = k <= chunk && ep.residual.empty();
  Scratch<float, 3> cf(direct ? 1 : m * n);
  Scratch<std::int32_t, 1> acc(k <= chunk ? 1 : m * n);
  float* const sums = direct ? y.data : cf.data();
  const std::size_t lds = direct ? y.stride : n;
  for (std::size_t k0 = 0; k0 < k; k0 += chunk) {
    const std::size_t kc = std::min(chunk, k - k0);
    gemm_f32({xd + k0, k, 1, wf.data() + k0, 1, k, sums, lds, m, n, kc, false});
    if (k <= chunk) break;
    std::int32_t* a = acc.data();
    for_row_blocks(m, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0 * n; i < (i0 + rows) * n; ++i) {
        const auto v = static_cast<std::int32_t>(sums[i]);
        a[i] = k0 == 0 ? v : a[i] + v;
      }
    });
  }
  for_row_blocks(m, [&](std::size_t i0, std::size_t rows) {
    for (std::size_t i = i0; i < i0 + rows; ++i) {
      float* dst = y.data + i * y.stride;
      if (k <= chunk)
        epilogue_row(sums + i * lds, n, i, ep, dst);
      else
        epilogue_row(acc.data() + i * n, n, i, ep, dst);
    }
  });
}

/// Rows [first, first + count) of a token-major matrix view.
template <class T>
MatrixView<T> token_rows(MatrixView<T> v, std::size_t first, std::size_t count) {
  return MatrixView<T>(v.data + first * v.stride, count, v.cols, v.stride);
}
/// The epilogue of tokens [first, first + count).
inline Epilogue token_rows(const Epilogue& ep, std::size_t first, std::size_t count) {
  Epilogue out = ep;
  if (ep.token_scale.size() > 1) out.token_scale = ep.token_scale.subspan(first, count);
  if (!ep.residual.empty()) out.residual = token_rows(ep.residual, first, count);
  return out;
}

template <class F>
void int_gemm_lut(MatrixView<const std::int8_t> x, const LutWeights<F>& w, const Epilogue& ep,
                  MatrixView<float> y, const char* fn) {
  check_int_gemm(x, w.rows(), w.cols(), ep, y, fn);
  check_k(w.cols(), kMaxKLowBit, fn);
  // Both paths compute the exact integer sums, so splitting the tokens between them gives the
  // bits either alone gives.
  const std::size_t rest = x.rows % kTokenLutTokens;
  const std::size_t major = rest >= kTokenLutMinTokens ? x.rows : x.rows - rest;
  if (major > 0) {
    token_lut_gemm_run(token_rows(x, 0, major), w, token_rows(ep, 0, major),
                      token_rows(y, 0, major));
    if (major == x.rows) return;
  }
  const std::size_t m = x.rows - major;
  const Epilogue ep_rest = token_rows(ep, major, m);
  x = token_rows(x, major, m);
  y = token_rows(y, major, m);
  if constexpr (F::kBits == 1) {
    static constexpr LutSelect kSelect = sign_select();
    lut_gemm_run(x, w, kSelect, 4, 2, ep_rest, y);  // W1 . x = 2 sum(b x) - sum(x)
  } else {
    static constexpr LutSelect kSelect = ternary_select();
    lut_gemm_run(x, w, kSelect, 2, 1, ep_rest, y);  // W2 . x = sum(c x) - sum(x)
  }
}

}  // namespace detail

/// Y[M x N] = epilogue(X[M x K] (INT8) * W1[N x K]^T): the quantized forward of a 1-bit layer.
inline void gemm_w1a8(MatrixView<const std::int8_t> x, const SignWeights& w, const Epilogue& ep,
                      MatrixView<float> y) {
  detail::int_gemm_lut(x, w, ep, y, "gemm_w1a8");
}

/// Y[M x N] = epilogue(X[M x K] (INT8) * W2[N x K]^T): ternary (BitNet b1.58) weights.
inline void gemm_w2a8(MatrixView<const std::int8_t> x, const TernaryWeights& w, const Epilogue& ep,
                      MatrixView<float> y) {
  detail::int_gemm_lut(x, w, ep, y, "gemm_w2a8");
}

/// Y[M x N] = epilogue(X[M x K] (INT8) * W8[N x K]^T): INT8 weights (decoupled FFN experts).
inline void gemm_w8a8(MatrixView<const std::int8_t> x, const Int8Weights& w, const Epilogue& ep,
                      MatrixView<float> y) {
  constexpr const char* fn = "gemm_w8a8";
  detail::check_int_gemm(x, w.rows(), w.cols(), ep, y, fn);
  detail::check_k(w.cols(), kMaxKInt8, fn);
  detail::int8_gemm_run(x, w.data(), w.rows(), w.stride(), w.symmetric(), ep, y);
}

/// Y[M x N] = epilogue(X[M x K] (INT8) * W[N x K]^T) for weights given as plain int8 values
/// (+-1, ternary or INT8): no packing step, for QAT where the quantized weights change every step.
/// Same result as gemm_w1a8 / gemm_w2a8 / gemm_w8a8 on the packed form of the same values.
inline void gemm_int8_values(MatrixView<const std::int8_t> x, MatrixView<const std::int8_t> w,
                             const Epilogue& ep, MatrixView<float> y) {
  constexpr const char* fn = "gemm_int8_values";
  check::non_empty(w, fn, "w");
  detail::check_int_gemm(x, w.rows, w.cols, ep, y, fn);
  detail::check_k(w.cols, kMaxKInt8, fn);
  auto decode = [&](float* out) {
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) out[r * w.cols + c] = static_cast<float>(w(r, c));
  };
  detail::int_gemm(x, w.rows, w.cols, decode, 1024, ep, y);  // |w x| <= 2^14: 2^24 / 2^14
}

}  // namespace pquant::kernels
