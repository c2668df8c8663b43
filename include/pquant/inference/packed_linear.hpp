// PackedLinear: one deployable linear layer (latent weights gone), and the fused per-token INT8
// activation quantizer that feeds it.
//
//   kind     storage                                   product (kernels/gemv.hpp, gemm.hpp)
//   kSign1   SignWeights (1 bit, LUT layout)           W1A8 table lookup
//   kTernary TernaryWeights (2 bits, LUT layout)       W2A8 table lookup
//   kInt8    Int8Weights (rows padded to 64 bytes)     W8A8 widening multiply-add
//   kF32     Matrix<float>                             FP32 GEMV / GEMM
// Integer kinds carry `scale`: one float (per-tensor lambda / gamma) or one per row (INT8 row
// scales; fused matrices such as [gate; up] keep each original matrix's scale by repeating it per
// row). y = fma(float(acc), scale * (1 / g), residual): the kernels' one epilogue, so every integer
// path is exact up to that single FP epilogue.
//
// The activation side (QuantizedTokens) is computed once per normalized input and shared by every
// linear reading it (Q/K/V; the gate/up projections of both decoupled-FFN branches):
//   a = RMSNorm(x) * gain (FP32, same summation order as layers/rms_norm.hpp),
//   g = 127 / max(max|a|, 1e-5), q = clamp(nearbyint(a * g), -128, 127)  (Int8AbsMaxPerToken).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/gemv.hpp"
#include "pquant/kernels/kernel_weights.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"

namespace pquant::inference {

enum class WeightKind { kSign1, kTernary, kInt8, kF32 };

inline std::string_view weight_kind_name(WeightKind k) {
  switch (k) {
    case WeightKind::kSign1:
      return "sign1";
    case WeightKind::kTernary:
      return "ternary2";
    case WeightKind::kInt8:
      return "int8";
    case WeightKind::kF32:
      return "f32";
  }
  return "?";
}

/// Bits of information per weight (codes only) of each kind.
inline std::size_t weight_kind_bits(WeightKind k) {
  switch (k) {
    case WeightKind::kSign1:
      return 1;
    case WeightKind::kTernary:
      return 2;
    case WeightKind::kInt8:
      return 8;
    case WeightKind::kF32:
      return 32;
  }
  return 0;
}

struct PackedLinear {
  WeightKind kind = WeightKind::kF32;
  std::size_t rows = 0, cols = 0;
  kernels::SignWeights sign;
  kernels::TernaryWeights ternary;
  kernels::Int8Weights int8;
  Matrix<float> f32;
  std::vector<float> scale;  // integer kinds: 1 or `rows` floats

  bool quantized() const { return kind != WeightKind::kF32; }
  /// Exact payload: codes at their bit width plus 32 bits per scale.
  std::size_t payload_bits() const {
    return rows * cols * weight_kind_bits(kind) + 32 * scale.size();
  }
  /// Bytes the kernel streams per product (padded storage + scales).
  std::size_t streamed_bytes() const {
    switch (kind) {
      case WeightKind::kSign1:
        return sign.bytes() + 4 * scale.size();
      case WeightKind::kTernary:
        return ternary.bytes() + 4 * scale.size();
      case WeightKind::kInt8:
        return int8.rows() * int8.stride() + 4 * scale.size();
      case WeightKind::kF32:
        return rows * cols * 4;
    }
    return 0;
  }
};

/// Activations of `tokens` rows, normalized and (for quantized consumers) INT8-quantized once.
struct QuantizedTokens {
  Matrix<float> a;              // RMSNorm(x) * gain, [tokens x d]
  Matrix<std::int8_t> q;        // INT8 codes, [tokens x d]
  std::vector<float> inv_gain;  // 1/g per token (the epilogue's token scale)
  std::vector<float> inv_rms;   // scratch
};

/// a = RMSNorm(x) * gain (gain empty: a = x); if `quantize`, q and 1/g per token too.
// x: [tokens x d], gain: [d] or empty
inline void normalize_quantize(MatrixView<const float> x, std::span<const float> gain, float eps,
                               bool quantize, QuantizedTokens& out) {
  const std::size_t n = x.rows, d = x.cols;
  if (out.a.rows() != n || out.a.cols() != d) out.a = Matrix<float>(n, d);
  if (gain.empty()) {
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < d; ++c) out.a(t, c) = x(t, c);
  } else {
    out.inv_rms.resize(n);
    rmsnorm_forward<float>(x, gain.data(), eps, out.a.view(), out.inv_rms.data());
  }
  if (!quantize) return;
  if (out.q.rows() != n || out.q.cols() != d) out.q = Matrix<std::int8_t>(n, d);
  out.inv_gain.resize(n);
  for (std::size_t t = 0; t < n; ++t) {
    const float* a = out.a.row(t).data();
    // absmax on the bit patterns of |a|: for non-negative floats the integer order is the float
    // order and every NaN pattern lies above +Inf, so one vectorisable integer max finds both the
    // absmax (= fmax over |a|, exactly) and any non-finite value.
    std::int32_t bits = 0;
    for (std::size_t c = 0; c < d; ++c) {
      const std::int32_t b = std::bit_cast<std::int32_t>(a[c]) & 0x7fffffff;
      bits = b > bits ? b : bits;
    }
    // NaN/Inf anywhere: the quantizer's own check names the position (ValueError).
    if (bits >= 0x7f800000) (void)Int8AbsMaxPerToken::gain(out.a.row(t));
    const float g = Int8AbsMaxPerToken::gain_from_absmax(std::bit_cast<float>(bits));
    std::int8_t* q = out.q.row(t).data();
    for (std::size_t c = 0; c < d; ++c) {
      // clamp(nearbyint(a g), -128, 127) as Int8AbsMaxPerToken: |a g| <= 127 (1 + 2 ulp), so
      // adding then subtracting 1.5 * 2^23 rounds half to even in the default rounding mode,
      // exactly as nearbyint, and the clamp (kept for safety) is on the integer (vectorisable).
      const float r = (a[c] * g + 12582912.0f) - 12582912.0f;
      std::int32_t i = static_cast<std::int32_t>(r);
      i = i < -128 ? -128 : i;
      i = i > 127 ? 127 : i;
      q[c] = static_cast<std::int8_t>(i);
    }
    out.inv_gain[t] = 1.0f / g;
  }
}

/// y[tokens x rows] = W . act (+ residual). Quantized kinds read act.q / act.inv_gain, FP32 reads
/// act.a (one token: FP32 GEMV; several: the FP32 GEMM).
inline void apply(const PackedLinear& w, const QuantizedTokens& act, MatrixView<float> y,
                  MatrixView<const float> residual = {}) {
  const std::size_t n = act.a.rows();
  require<ShapeError>(act.a.cols() == w.cols && y.rows == n && y.cols == w.rows,
                      "inference::apply: shapes do not match: input ", n, "x", act.a.cols(),
                      ", weight ", w.rows, "x", w.cols, ", output ", y.rows, "x", y.cols);
  if (w.kind == WeightKind::kF32) {
    if (n == 1) {
      kernels::gemv_f32(act.a.row(0), w.f32.view(), y.row(0),
                        residual.empty() ? std::span<const float>() : residual.row(0));
    } else {
      kernels::gemm_forward(act.a.view(), w.f32.view(), y);
      if (!residual.empty())
        for (std::size_t t = 0; t < n; ++t)
          for (std::size_t c = 0; c < w.rows; ++c) y(t, c) += residual(t, c);
    }
    return;
  }
  // Integer kinds. One token: the GEMV kernels (table lookup, INT8 multiply-add). Several tokens
  // (prefill): the integer GEMMs, which read every weight tile once for all tokens. Both give the
  // exact int32 accumulators and apply the one epilogue (kernels/epilogue.hpp) with the same
  // operands, so prefill and decode agree bit for bit.
  if (n == 1) {
    const kernels::GemvEpilogue ep{w.scale, act.inv_gain[0],
                                   residual.empty() ? std::span<const float>() : residual.row(0)};
    const std::span<const std::int8_t> q = act.q.row(0);
    switch (w.kind) {
      case WeightKind::kSign1:
        kernels::gemv_w1a8(q, w.sign, ep, y.row(0));
        break;
      case WeightKind::kTernary:
        kernels::gemv_w2a8(q, w.ternary, ep, y.row(0));
        break;
      case WeightKind::kInt8:
        kernels::gemv_w8a8(q, w.int8, ep, y.row(0));
        break;
      case WeightKind::kF32:
        break;
    }
    return;
  }
  const kernels::Epilogue ep{w.scale, act.inv_gain, residual};
  const MatrixView<const std::int8_t> q = act.q.view();
  switch (w.kind) {
    case WeightKind::kSign1:
      kernels::gemm_w1a8(q, w.sign, ep, y);
      break;
    case WeightKind::kTernary:
      kernels::gemm_w2a8(q, w.ternary, ep, y);
      break;
    case WeightKind::kInt8:
      kernels::gemm_w8a8(q, w.int8, ep, y);
      break;
    case WeightKind::kF32:
      break;
  }
}

}  // namespace pquant::inference
