// The batched LUT kernels' host side: one table set per token (the lut_tables kernel), then one
// lut_gemm call that reads each weight tile once for all tokens (prefill, QAT forward).
#pragma once

#include <cstddef>
#include <cstdint>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/detail/host.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/kernel_weights.hpp"

namespace pquant::kernels::detail {

/// The batched epilogue of Y [M x `rows`] from an Epilogue (no token scale: one scale of 1).
inline BatchEpilogueArgs batch_epilogue(const Epilogue& ep, MatrixView<float> y, std::size_t rows) {
  static constexpr float kOne = 1.0f;
  return {y.data,
          y.stride,
          rows,
          ep.row_scale.data(),
          ep.row_scale.size(),
          ep.token_scale.empty() ? &kOne : ep.token_scale.data(),
          ep.token_scale.empty() ? 1 : ep.token_scale.size(),
          ep.residual.empty() ? nullptr : ep.residual.data,
          ep.residual.stride};
}

/// Y[M x N] = epilogue(mul * S + offset), S[i][r] = the LUT sum of token i's tables over row r,
/// offset_i = -sum(x_i) (the 0/1 and code forms of 1-bit and ternary weights, see gemv.hpp).
/// Arguments are checked by the caller.
template <class F>
void lut_gemm_run(MatrixView<const std::int8_t> x, const LutWeights<F>& w, const LutSelect& select,
                  std::size_t group, std::int32_t mul, const Epilogue& ep, MatrixView<float> y) {
  const std::size_t m = x.rows, groups = 2 * w.pairs(), table_bytes = groups * 32;
  Scratch<std::uint8_t, 2> tables(m * table_bytes);
  Scratch<std::int64_t, 0> offset(m);
  // Tokens are independent: their tables are built in parallel (same bytes for any thread count).
  std::uint8_t* t = tables.data();
  std::int64_t* off = offset.data();
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, m, 16), [&](const auto& range) {
    for (std::size_t i = range.begin(); i != range.end(); ++i) {
      std::int64_t sum = 0;
      lut_tables(
          {x.data + i * x.stride, x.cols, group, groups, select.data(), t + i * table_bytes, &sum});
      off[i] = -sum;
    }
  });
  LutGemmArgs a{};
  a.index = w.data();
  a.tiles = w.tiles();
  a.pairs = w.pairs();
  a.tables = tables.data();
  a.table_stride = table_bytes;
  a.m = m;
  a.mul = mul;
  a.offset = offset.data();
  a.ep = batch_epilogue(ep, y, w.rows());
  Scratch<std::uint8_t, 3> wide(m * w.pairs() * kLutWideBytesPerPair);
  a.wide = wide.data();
  a.group = group;
  lut_gemm(a);
}

/// The token-major LUT GEMM (TokenLutGemmArgs): Y = epilogue(sum_k w x) with the weights' bytes as
/// table indices; bits 1 (sign) or 2 (ternary). Arguments are checked by the caller.
template <class F>
void token_lut_gemm_run(MatrixView<const std::int8_t> x, const LutWeights<F>& w, const Epilogue& ep,
                       MatrixView<float> y) {
  static_assert(F::kBits == 1 || F::kBits == 2);
  constexpr std::size_t T = kTokenLutTokens, P = kTokenLutPairsPerBlock;
  Scratch<std::int16_t, 3> xt(P * 8 * T);
  Scratch<std::int16_t, 4> tables(P * 32 * T);
  Scratch<std::int32_t, 2> acc(w.tiles() * kLutTile * T);
  TokenLutGemmArgs a{};
  a.index = w.data();
  a.tiles = w.tiles();
  a.pairs = w.pairs();
  a.bits = F::kBits;
  a.x = x.data;
  a.ldx = x.stride;
  a.m = x.rows;
  a.k = x.cols;
  a.ep = batch_epilogue(ep, y, w.rows());
  a.xt = xt.data();
  a.tables = tables.data();
  a.acc = acc.data();
  token_lut_gemm(a);
}

}  // namespace pquant::kernels::detail
