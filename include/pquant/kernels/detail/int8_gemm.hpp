// The INT8 GEMM's host side (packed Int8Weights, rows padded to 64 bytes): X in place when K is
// the padded width (else a zero-padded copy), one int8_gemm call for the exact int32 sums, then the
// epilogue.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/detail/host.hpp"
#include "pquant/kernels/epilogue.hpp"

namespace pquant::kernels::detail {

/// Y[M x N] = epilogue(X[M x K] W[N x K]^T) on int8 values, exact in int32. W's rows are `kp`
/// values apart and zero from K to kp (kp a multiple of 32, <= kMaxKInt8); `symmetric`: no weight
/// is -128. Shapes are checked by the caller.
inline void int8_gemm_run(MatrixView<const std::int8_t> x, const std::int8_t* w, std::size_t n,
                          std::size_t kp, bool symmetric, const Epilogue& ep, MatrixView<float> y) {
  const std::size_t m = x.rows, k = x.cols;
  Int8GemmArgs a{x.data, x.stride, w, kp, m, n, kp, nullptr, n, symmetric};
  Scratch<std::int8_t, 5> xp(kp == k ? 1 : m * kp);
  if (kp != k) {  // X zero-padded to kp columns
    for (std::size_t i = 0; i < m; ++i) {
      std::memcpy(xp.data() + i * kp, x.data + i * x.stride, k);
      std::fill(xp.data() + i * kp + k, xp.data() + (i + 1) * kp, std::int8_t{0});
    }
    a.x = xp.data();
    a.ldx = kp;
  }
  Scratch<std::int32_t, 5> sums(m * n);
  a.out = sums.data();
  int8_gemm(a);
  const std::int32_t* s = sums.data();
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, m, 16), [&](const auto& range) {
    for (std::size_t i = range.begin(); i != range.end(); ++i)
      epilogue_row(s + i * n, n, i, ep, y.data + i * y.stride);
  });
}

}  // namespace pquant::kernels::detail
