// The three products of a linear layer's forward and backward, for any element type T.
//
//   matmul_xwt:     Y  = X W^T     X [n x k], W [m x k], Y [n x m]   (forward)
//   matmul_dyw:     dX = dY W      dY [n x m], W [m x k], dX [n x k] (input gradient)
//   matmul_acc_dyx: dW += dY^T X   dY [n x m], X [n x k], dW [m x k] (weight gradient, accumulated)
//
// T = float runs on pquant::kernels' FP32 GEMMs (blocked, SIMD, runtime-dispatched, results
// independent of the thread count): programs using the layers link the dispatch unit (see
// pquant/kernels/dispatch.hpp). Any other T (double: the references of the gradient checks) runs
// plain loops in a cache-friendly order, split over rows with oneTBB, accumulating in T in index
// order (each output element produced by exactly one task: deterministic for any thread count).
#pragma once

#include <cstddef>
#include <type_traits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/gemm.hpp"

namespace pquant::detail {

// Below this many multiply-adds a product runs on the calling thread.
inline constexpr std::size_t kParallelWork = 1 << 15;

template <class F>
void for_rows(std::size_t rows, std::size_t work_per_row, F&& f) {
  if (rows * work_per_row < kParallelWork || rows == 1) {
    for (std::size_t r = 0; r < rows; ++r) f(r);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows),
                    [&](const tbb::blocked_range<std::size_t>& b) {
                      for (std::size_t r = b.begin(); r != b.end(); ++r) f(r);
                    });
}

/// Y = X W^T.  X [n x k], W [m x k], Y [n x m].
template <class T>
void matmul_xwt(MatrixView<const T> x, MatrixView<const T> w, MatrixView<T> y) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::gemm_forward(x, w, y);
    return;
  }
  const std::size_t k = x.cols, m = w.rows;
  for_rows(x.rows, k * m, [&](std::size_t i) {
    const T* xi = x.data + i * x.stride;
    for (std::size_t j = 0; j < m; ++j) {
      const T* wj = w.data + j * w.stride;
      T acc = 0;
      for (std::size_t c = 0; c < k; ++c) acc += xi[c] * wj[c];
      y(i, j) = acc;
    }
  });
}

/// dX = dY W.  dY [n x m], W [m x k], dX [n x k].
template <class T>
void matmul_dyw(MatrixView<const T> dy, MatrixView<const T> w, MatrixView<T> dx) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::gemm_backward_data(dy, w, dx);
    return;
  }
  const std::size_t k = w.cols, m = w.rows;
  for_rows(dy.rows, k * m, [&](std::size_t i) {
    T* dxi = dx.data + i * dx.stride;
    for (std::size_t c = 0; c < k; ++c) dxi[c] = 0;
    for (std::size_t j = 0; j < m; ++j) {
      const T g = dy(i, j);
      if (g == 0) continue;
      const T* wj = w.data + j * w.stride;
      for (std::size_t c = 0; c < k; ++c) dxi[c] += g * wj[c];
    }
  });
}

/// dW += dY^T X.  dY [n x m], X [n x k], dW [m x k].
template <class T>
void matmul_acc_dyx(MatrixView<const T> dy, MatrixView<const T> x, MatrixView<T> dw) {
  if constexpr (std::is_same_v<T, float>) {
    kernels::gemm_backward_weights(dy, x, dw, kernels::Accumulate::accumulate);
    return;
  }
  const std::size_t k = x.cols, n = x.rows;
  for_rows(dw.rows, k * n, [&](std::size_t j) {
    T* dwj = dw.data + j * dw.stride;
    for (std::size_t i = 0; i < n; ++i) {
      const T g = dy(i, j);
      if (g == 0) continue;
      const T* xi = x.data + i * x.stride;
      for (std::size_t c = 0; c < k; ++c) dwj[c] += g * xi[c];
    }
  });
}

}  // namespace pquant::detail
