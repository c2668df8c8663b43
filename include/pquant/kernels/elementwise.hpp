// SIMD entry points for the element-wise work of a training step: SwiGLU forward and backward,
// RMSNorm forward and backward, the AdamW update and the NaN/Inf check; and the fused residual
// add + RMSNorm + INT8 quantization of a decoding projection's input. Runtime-dispatched like the
// GEMMs (compiled per target in the dispatch unit, elementwise-inl.h), single-threaded: the layers
// call them on blocks of rows inside their own parallel loops.
//
// Numerics (docs/training.md): each kernel performs its scalar reference's operations in the same
// order, each rounded once (no FMA), so results are bit-identical on every target and to the
// references (activations.hpp, fast_exp.hpp, rms_norm.hpp, adamw.hpp) built without FMA
// contraction. The RMSNorm sum of squares follows the reference's 16-lane order (sum_of_squares),
// the backward dot product its column order (8 rows' chains interleaved).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/backend.hpp"

namespace pquant::kernels {

/// gate [n x h], up [n x h] -> h [n x h]: h = silu(gate) * up (fast_sigmoid).
inline void swiglu_forward(MatrixView<const float> gate, MatrixView<const float> up,
                           MatrixView<float> h) {
  constexpr const char* fn = "kernels::swiglu_forward";
  check::shape(up, gate.rows, gate.cols, fn, "up");
  check::shape(MatrixView<const float>(h), gate.rows, gate.cols, fn, "h");
  if (gate.empty()) return;
  detail::swiglu_forward(
      {gate.data, gate.stride, up.data, up.stride, h.data, h.stride, gate.rows, gate.cols});
}

/// dh, gate, up [n x h] -> dgate, dup [n x h] (overwritten).
inline void swiglu_backward(MatrixView<const float> dh, MatrixView<const float> gate,
                            MatrixView<const float> up, MatrixView<float> dgate,
                            MatrixView<float> dup) {
  constexpr const char* fn = "kernels::swiglu_backward";
  check::shape(gate, dh.rows, dh.cols, fn, "gate");
  check::shape(up, dh.rows, dh.cols, fn, "up");
  check::shape(MatrixView<const float>(dgate), dh.rows, dh.cols, fn, "dgate");
  check::shape(MatrixView<const float>(dup), dh.rows, dh.cols, fn, "dup");
  if (dh.empty()) return;
  detail::swiglu_backward({dh.data, dh.stride, gate.data, gate.stride, up.data, up.stride,
                           dgate.data, dgate.stride, dup.data, dup.stride, dh.rows, dh.cols});
}

/// x [n x d], gain [d] -> y [n x d], inv_rms [n] = 1 / sqrt(mean(x^2) + eps) per row.
inline void rmsnorm_forward(MatrixView<const float> x, std::span<const float> gain, float eps,
                            MatrixView<float> y, std::span<float> inv_rms) {
  constexpr const char* fn = "kernels::rmsnorm_forward";
  check::size(gain, x.cols, fn, "gain");
  check::shape(MatrixView<const float>(y), x.rows, x.cols, fn, "y");
  check::size(inv_rms, x.rows, fn, "inv_rms");
  if (x.empty()) return;
  detail::rmsnorm_forward(
      {x.data, x.stride, gain.data(), eps, y.data, y.stride, inv_rms.data(), x.rows, x.cols});
}

/// dy [n x d], x [n x d], gain [d], inv_rms [n] -> dx [n x d] (overwritten; rows == 0 skips it),
/// dgain [d] += (rows added in order).
inline void rmsnorm_backward(MatrixView<const float> dy, MatrixView<const float> x,
                             std::span<const float> gain, std::span<const float> inv_rms,
                             MatrixView<float> dx, std::span<float> dgain) {
  constexpr const char* fn = "kernels::rmsnorm_backward";
  check::shape(x, dy.rows, dy.cols, fn, "x");
  check::size(gain, dy.cols, fn, "gain");
  check::size(inv_rms, dy.rows, fn, "inv_rms");
  if (dx.rows != 0) check::shape(MatrixView<const float>(dx), dy.rows, dy.cols, fn, "dx");
  check::size(dgain, dy.cols, fn, "dgain");
  if (dy.empty()) return;
  detail::rmsnorm_backward({dy.data, dy.stride, x.data, x.stride, gain.data(), inv_rms.data(),
                            dx.rows != 0 ? dx.data : nullptr, dx.stride, dgain.data(), dy.rows,
                            dy.cols});
}

/// The per-step constants of an AdamW update (training/adamw.hpp computes them).
struct AdamWStep {
  float beta1, beta2, eps;
  float step_size;     // lr / (1 - beta1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^t)
  float decay;         // 1 - lr * weight_decay, or 1
};

/// p, g, m, v [n]: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
/// p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps).
inline void adamw_update(std::span<float> p, std::span<const float> g, std::span<float> m,
                         std::span<float> v, const AdamWStep& s) {
  constexpr const char* fn = "kernels::adamw_update";
  check::size(g, p.size(), fn, "g");
  check::size(std::span<const float>(m), p.size(), fn, "m");
  check::size(std::span<const float>(v), p.size(), fn, "v");
  detail::adamw_update({p.data(), g.data(), m.data(), v.data(), p.size(), s.beta1, s.beta2, s.eps,
                        s.step_size, s.inv_sqrt_bc2, s.decay});
}

/// True when every element of x is finite (no NaN, no +-Inf).
inline bool all_finite(MatrixView<const float> x) {
  if (x.empty()) return true;
  return !detail::any_non_finite({x.data, x.stride, x.rows, x.cols});
}

/// Int8AbsMaxPerToken::quantize (quantizers/activation_quantizer.hpp) on SIMD, bit for bit:
/// x [tokens x features] -> q [tokens x features], gain [tokens], and (xq not empty) the
/// dequantized xq = q / gain [tokens x features]. Returns false when a row of x holds a NaN or
/// +-Inf: rows before it are written, it and later rows are not (the scalar quantizer names the
/// element).
inline bool int8_absmax_quantize(MatrixView<const float> x, MatrixView<std::int8_t> q,
                                 std::span<float> gain, MatrixView<float> xq = {}) {
  constexpr const char* fn = "kernels::int8_absmax_quantize";
  check::shape(q, x.rows, x.cols, fn, "q");
  check::size(std::span<const float>(gain), x.rows, fn, "gain");
  if (xq.rows != 0) check::shape(MatrixView<const float>(xq), x.rows, x.cols, fn, "xq");
  if (x.empty()) return true;
  return detail::int8_absmax_quantize({x.data, x.stride, q.data, q.stride, gain.data(),
                                       xq.rows != 0 ? xq.data : nullptr, xq.stride, x.rows,
                                       x.cols});
}

/// The input side of a projection, fused per block of rows: x += res (res not empty), then
/// a = RMSNorm(x) * gain with inv_rms (gain not empty; otherwise a is not written and the
/// quantizer reads x), then (q not empty) int8_absmax_quantize of that into q, qgain and xq. Bit
/// for bit the same as add, rmsnorm_forward and int8_absmax_quantize run one after the other.
/// Returns false when a quantizer input row holds a NaN or +-Inf (x, a and inv_rms are written for
/// every row; q, qgain and xq as int8_absmax_quantize leaves them).
inline bool rmsnorm_quantize(MatrixView<float> x, MatrixView<const float> res,
                             std::span<const float> gain, float eps, MatrixView<float> a,
                             std::span<float> inv_rms, MatrixView<std::int8_t> q,
                             std::span<float> qgain, MatrixView<float> xq = {}) {
  constexpr const char* fn = "kernels::rmsnorm_quantize";
  const MatrixView<const float> xc(x);
  if (res.rows != 0) check::shape(res, x.rows, x.cols, fn, "res");
  if (!gain.empty()) {
    check::size(gain, x.cols, fn, "gain");
    check::shape(MatrixView<const float>(a), x.rows, x.cols, fn, "a");
    check::size(std::span<const float>(inv_rms), x.rows, fn, "inv_rms");
  }
  if (q.rows != 0) {
    check::shape(q, x.rows, x.cols, fn, "q");
    check::size(std::span<const float>(qgain), x.rows, fn, "qgain");
    if (xq.rows != 0) check::shape(MatrixView<const float>(xq), x.rows, x.cols, fn, "xq");
  }
  if (xc.empty()) return true;
  return detail::rmsnorm_quantize(
      {x.data, x.stride, res.rows != 0 ? res.data : nullptr, res.stride,
       gain.empty() ? nullptr : gain.data(), eps, a.data, a.stride, inv_rms.data(),
       q.rows != 0 ? q.data : nullptr, q.stride, qgain.data(), xq.rows != 0 ? xq.data : nullptr,
       xq.stride, x.rows, x.cols});
}

/// The causal softmax of rows of a score matrix s [n x seq], row i being query t = first + i
/// (first + n <= seq): keys s <= t get softmax(scale * s) (max subtracted, fast_exp, the sum in 8
/// fixed lanes), keys s > t get 0. In place; bit-identical to causal_softmax_row_f32.
inline void causal_softmax(MatrixView<float> s, std::size_t first, float scale) {
  constexpr const char* fn = "kernels::causal_softmax";
  require<ShapeError>(first + s.rows <= s.cols, fn, ": rows [", first, ", ", first + s.rows,
                      ") of argument 's' must be queries of its ", s.cols, " keys");
  if (s.empty()) return;
  detail::causal_softmax({s.data, s.stride, first, s.rows, s.cols, scale});
}

/// Its backward on the same rows: dp [n x seq] (dO V^T) is overwritten with
/// dS = (p * (dp - sum_{s <= t} dp * p)) * scale for s <= t, 0 above; p is the forward's output
/// (same stride as dp). Bit-identical to causal_softmax_backward_row_f32.
inline void causal_softmax_backward(MatrixView<float> dp, MatrixView<const float> p,
                                    std::size_t first, float scale) {
  constexpr const char* fn = "kernels::causal_softmax_backward";
  check::shape(p, dp.rows, dp.cols, fn, "p");
  require<ShapeError>(p.stride == dp.stride, fn, ": arguments 'p' and 'dp' must share a stride");
  require<ShapeError>(first + dp.rows <= dp.cols, fn, ": rows [", first, ", ", first + dp.rows,
                      ") of argument 'dp' must be queries of its ", dp.cols, " keys");
  if (dp.empty()) return;
  detail::causal_softmax_backward({dp.data, p.data, dp.stride, first, dp.rows, dp.cols, scale});
}

}  // namespace pquant::kernels
