// Straight-through estimators (STE): the backward pass of every quantizer (docs/method.md
// section 2).
//
// The forward pass uses Q(W); the backward pass treats Q as the identity, so
//   StraightThrough:            dL/dW_latent = dL/dW_q
//   ClippedStraightThrough<Q>:  dL/dW_latent = dL/dW_q where the latent value lies inside Q's clip
//                               range (Q::clip_range, one [lo, hi] per scale group), else 0
// Scales (lambda, gamma, absmax) get no gradient. backward(latent, grad_quantized, grad_latent):
// all three [rows x cols]; grad_latent may be exactly grad_quantized (in place) or disjoint from
// it. Gradients are passed through as they are (a NaN gradient stays NaN: the training loop's
// global norm catches it); the clipped rule needs finite latents (ValueError otherwise).
#pragma once

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/reductions.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"

namespace pquant {

template <class S>
concept SteRule = requires(MatrixView<const float> latent, MatrixView<const float> grad_q,
                           MatrixView<float> grad) {
  { S::kName } -> std::convertible_to<std::string_view>;
  { S::backward(latent, grad_q, grad) } -> std::same_as<void>;
};

namespace detail {
inline void check_ste_args(MatrixView<const float> latent, MatrixView<const float> grad_q,
                           MatrixView<float> grad, std::string_view fn) {
  check::non_empty(latent, fn, "latent");
  check::non_empty(grad_q, fn, "grad_quantized");
  check::shape(grad_q, latent.rows, latent.cols, fn, "grad_quantized");
  check_output(grad_q, grad, fn, "grad_quantized", "grad_latent");
}
}  // namespace detail

/// Identity STE: dL/dW_latent = dL/dW_q (BitNet, BitNet b1.58, pQuant).
struct StraightThrough {
  static constexpr std::string_view kName = "ste";

  // latent, grad_quantized, grad_latent: [rows x cols]
  static void backward(MatrixView<const float> latent, MatrixView<const float> grad_quantized,
                       MatrixView<float> grad_latent) {
    detail::check_ste_args(latent, grad_quantized, grad_latent, "StraightThrough::backward");
    for (std::size_t r = 0; r < latent.rows; ++r)
      for (std::size_t c = 0; c < latent.cols; ++c) grad_latent(r, c) = grad_quantized(r, c);
  }
};

/// Clipped identity STE: the gradient is zeroed where the latent weight lies outside Q's clip
/// range (the values Q saturates), as Larq's ste_sign / hardtanh does for sign. See
/// docs/numerics.md for each quantizer's range.
template <ClippableWeightQuantizer Q>
struct ClippedStraightThrough {
  static constexpr std::string_view kName = "clipped_ste";
  using quantizer_type = Q;

  // latent, grad_quantized, grad_latent: [rows x cols]
  static void backward(MatrixView<const float> latent, MatrixView<const float> grad_quantized,
                       MatrixView<float> grad_latent) {
    constexpr std::string_view fn = "ClippedStraightThrough::backward";
    detail::check_ste_args(latent, grad_quantized, grad_latent, fn);
    check::finite(latent, fn, "latent");
    using Scales = typename Q::scales_type;
    std::vector<ClipRange> ranges(Scales::count(latent.rows, latent.cols));
    Q::clip_range(latent, ranges);
    for (std::size_t r = 0; r < latent.rows; ++r)
      for (std::size_t c = 0; c < latent.cols; ++c) {
        const ClipRange& range = ranges[Scales::index(r, c, latent.cols)];
        grad_latent(r, c) = range.contains(latent(r, c)) ? grad_quantized(r, c) : 0.0f;
      }
  }
};

static_assert(SteRule<StraightThrough>);

}  // namespace pquant
