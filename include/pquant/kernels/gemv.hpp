// Batch-1 kernels (decoding): y[N] = epilogue(W[N x K] . x[K]) for 1-bit, ternary, codebook, INT8
// and FP32 weights. Integer paths are exact (int32 accumulation, limits in epilogue.hpp) and
// bit-identical on every target and thread count; they run on the kernels selected by
// pquant/kernels/dispatch.hpp (see docs/kernels.md). Rows are split over oneTBB's current arena.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/detail/host.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/kernel_weights.hpp"

namespace pquant::kernels {

namespace detail {

inline void check_gemv(std::size_t k, std::size_t n, std::span<const std::int8_t> x,
                       const GemvEpilogue& ep, std::span<float> y, const char* fn) {
  check::size(x, k, fn, "x");
  check::size(y, n, fn, "y");
  check_scales(ep.row_scale, n, fn, "row_scale");
  require<ShapeError>(ep.residual.empty() || ep.residual.size() == n, fn,
                      ": argument 'residual' must be empty or have ", n, " elements, got ",
                      ep.residual.size());
}

/// The kernels' fused epilogue (RowEpilogueArgs) of a GEMV: y = epilogue(mul * sum + offset).
inline RowEpilogueArgs row_epilogue(const GemvEpilogue& ep, std::span<float> y, std::int32_t mul,
                                    std::int64_t offset) {
  RowEpilogueArgs r;
  r.y = y.data();
  r.rows = y.size();
  r.mul = mul;
  r.offset = offset;
  r.row_scale = ep.row_scale.data();
  r.row_scale_size = ep.row_scale.size();
  r.token_scale = ep.token_scale;
  r.residual = ep.residual.empty() ? nullptr : ep.residual.data();
  return r;
}

/// Runs the LUT kernel over `w` with `tables`; out gets the padded accumulators.
template <class F>
void run_lut(const LutWeights<F>& w, const std::uint8_t* tables, std::int32_t* out) {
  Scratch<std::uint8_t, 3> wide(w.pairs() * kLutWideBytesPerPair);
  LutGemvArgs args{w.data(), w.tiles(), w.pairs(), tables, out};
  args.wide = wide.data();
  args.group = LutWeights<F>::kGroup;
  lut_gemv(args);
}

/// Runs the LUT kernel with the epilogue fused into its parallel loop:
/// y = epilogue(mul * sum + offset), the sum taken modulo 2^32 (exact: the result fits int32).
template <class F>
void run_lut_fused(const LutWeights<F>& w, const std::uint8_t* tables, std::int32_t* out,
                   std::int32_t mul, std::int64_t offset, const GemvEpilogue& ep,
                   std::span<float> y) {
  Scratch<std::uint8_t, 3> wide(w.pairs() * kLutWideBytesPerPair);
  LutGemvArgs args{w.data(), w.tiles(), w.pairs(), tables, out};
  args.wide = wide.data();
  args.group = LutWeights<F>::kGroup;
  args.ep = row_epilogue(ep, y, mul, offset);
  lut_gemv(args);
}

}  // namespace detail

/// y[N] = epilogue(W1[N x K] . x[K]): 1-bit weights, INT8 activations, table lookup (T-MAC).
inline void gemv_w1a8(std::span<const std::int8_t> x, const SignWeights& w, const GemvEpilogue& ep,
                      std::span<float> y) {
  detail::check_gemv(w.cols(), w.rows(), x, ep, y, "gemv_w1a8");
  detail::check_k(w.cols(), kMaxKLowBit, "gemv_w1a8");
  const std::size_t groups = 2 * w.pairs();
  detail::Scratch<std::uint8_t, 0> tables(groups * 32);
  detail::Scratch<std::int32_t, 0> acc(w.tiles() * kLutTile);
  static constexpr detail::LutSelect kSelect = detail::sign_select();
  std::int64_t sum = 0;
  detail::lut_tables({x.data(), x.size(), 4, groups, kSelect.data(), tables.data(), &sum});
  // W1 . x = 2 sum(b x) - sum(x), b = (w + 1) / 2.
  detail::run_lut_fused(w, tables.data(), acc.data(), 2, -sum, ep, y);
}

/// y[N] = epilogue(W2[N x K] . x[K]): ternary weights, INT8 activations, table lookup over pairs.
inline void gemv_w2a8(std::span<const std::int8_t> x, const TernaryWeights& w,
                      const GemvEpilogue& ep, std::span<float> y) {
  detail::check_gemv(w.cols(), w.rows(), x, ep, y, "gemv_w2a8");
  detail::check_k(w.cols(), kMaxKLowBit, "gemv_w2a8");
  const std::size_t groups = 2 * w.pairs();
  detail::Scratch<std::uint8_t, 0> tables(groups * 32);
  detail::Scratch<std::int32_t, 0> acc(w.tiles() * kLutTile);
  static constexpr detail::LutSelect kSelect = detail::ternary_select();
  std::int64_t sum = 0;
  detail::lut_tables({x.data(), x.size(), 2, groups, kSelect.data(), tables.data(), &sum});
  // W2 . x = sum(c x) - sum(x), c = w + 1.
  detail::run_lut_fused(w, tables.data(), acc.data(), 1, -sum, ep, y);
}

/// y[N] = token_scale * sum_j C[n][j] * S_j[n] + residual[n]: b-bit codebook weights with per-row
/// codebooks C (k-means), INT8 activations. S_j[n] = sum of x[k] over the k whose code is j, exact
/// in int32 (one table-lookup pass per code but code 0, whose sums are sum(x) minus the others);
/// then acc = fma(C[n][j], float(S_j), acc) for j = 0.., y = fma(acc, token_scale, residual).
template <unsigned Bits>
void gemv_codebook(std::span<const std::int8_t> x, const CodebookWeights<Bits>& w,
                   float token_scale, std::span<const float> residual, std::span<float> y) {
  constexpr const char* fn = "gemv_codebook";
  check::size(x, w.cols(), fn, "x");
  check::size(y, w.rows(), fn, "y");
  require<ShapeError>(residual.empty() || residual.size() == w.rows(), fn,
                      ": argument 'residual' must be empty or have ", w.rows(), " elements, got ",
                      residual.size());
  detail::check_k(w.cols(), kMaxKLowBit, fn);
  const std::size_t groups = 2 * w.pairs();
  detail::Scratch<std::uint8_t, 0> tables(groups * 32);
  detail::Scratch<std::int32_t, 0> sums(w.tiles() * kLutTile);
  detail::Scratch<float, 0> acc_buffer(w.rows());
  float* acc = acc_buffer.data();
  const std::int32_t* s = sums.data();
  // Code 0's sums come without a table pass, as S_0 = sum(x) - sum of the other S_j (exact:
  // every S_j and sum(x) fit int32, so the difference taken modulo 2^32 is the true value; padding
  // codes are 0 and meet zero activations). The passes' code 0 then adds nothing to any table
  // entry, which the wide tables of some targets need (LutGemvArgs).
  constexpr unsigned kCodes = 1u << Bits;
  const std::size_t rows = w.rows();
  detail::Scratch<std::int32_t, 1> code_sums(rows * kCodes);  // S_j[n] at j * rows + n
  std::int32_t* S = code_sums.data();
  std::int64_t sum_x = 0;
  for (unsigned j = 1; j < kCodes; ++j) {
    const detail::LutSelect select = detail::bucket_select<Bits>(j);
    detail::lut_tables({x.data(), x.size(), 4 / Bits, groups, select.data(), tables.data(),
                        j == 1 ? &sum_x : nullptr});
    detail::run_lut(w, tables.data(), sums.data());
    for (std::size_t n = 0; n < rows; ++n) S[j * rows + n] = s[n];
  }
  for (std::size_t n = 0; n < rows; ++n) {
    std::int64_t rest = sum_x;
    for (unsigned j = 1; j < kCodes; ++j) rest -= S[j * rows + n];
    S[n] = detail::wrap32(rest);
  }
  // acc = fma(C[n][j], float(S_j), acc) for j = 0, 1, ... in code order.
  for (std::size_t n = 0; n < rows; ++n) acc[n] = 0.0f;
  for (unsigned j = 0; j < kCodes; ++j)
    for (std::size_t n = 0; n < rows; ++n)
      acc[n] = std::fma(w.codebook(n)[j], static_cast<float>(S[j * rows + n]), acc[n]);
  for (std::size_t n = 0; n < w.rows(); ++n)
    y[n] = std::fma(acc[n], token_scale, residual.empty() ? 0.0f : residual[n]);
}

/// y[N] = epilogue(W8[N x K] . x[K]): INT8 weights and activations, widening multiply-add.
inline void gemv_w8a8(std::span<const std::int8_t> x, const Int8Weights& w, const GemvEpilogue& ep,
                      std::span<float> y) {
  detail::check_gemv(w.cols(), w.rows(), x, ep, y, "gemv_w8a8");
  detail::check_k(w.cols(), kMaxKInt8, "gemv_w8a8");
  // The input in the three forms the targets' paths read, zero-padded to the row stride (loops
  // without branches, so that the compiler vectorizes them: this runs once per call).
  const std::size_t k = x.size(), stride = w.stride();
  detail::Scratch<std::int8_t, 0> x8(stride);
  detail::Scratch<std::int16_t, 0> x16(stride);
  detail::Scratch<std::uint8_t, 1> xabs(stride);
  std::copy_n(x.data(), k, x8.data());
  std::fill(x8.data() + k, x8.data() + stride, std::int8_t{0});
  for (std::size_t i = 0; i < stride; ++i) {
    const int v = x8.data()[i];
    x16.data()[i] = static_cast<std::int16_t>(v);
    xabs.data()[i] = static_cast<std::uint8_t>(v < 0 ? -v : v);
  }
  detail::Scratch<std::int32_t, 0> acc(w.rows());
  detail::Int8GemvArgs args{w.data(), w.rows(), w.stride(), x16.data(), acc.data(),
                            w.symmetric(), x8.data(), xabs.data()};
  args.ep = detail::row_epilogue(ep, y, 1, 0);
  detail::int8_gemv(args);
}

/// y[N] = W[N x K] . x[K] (+ residual[N]): the full-precision baseline.
inline void gemv_f32(std::span<const float> x, MatrixView<const float> w, std::span<float> y,
                     std::span<const float> residual = {}) {
  check::non_empty(w, "gemv_f32", "w");
  check::size(x, w.cols, "gemv_f32", "x");
  check::size(y, w.rows, "gemv_f32", "y");
  require<ShapeError>(residual.empty() || residual.size() == w.rows,
                      "gemv_f32: argument 'residual' must be empty or have ", w.rows,
                      " elements, got ", residual.size());
  detail::f32_gemv({w.data, w.rows, w.cols, w.stride, x.data(), y.data()});
  if (!residual.empty())
    for (std::size_t n = 0; n < w.rows; ++n) y[n] += residual[n];
}

}  // namespace pquant::kernels
