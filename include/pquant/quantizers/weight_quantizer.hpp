// WeightQuantizer: what a weight quantization policy provides (docs/method.md section 2).
//
// A quantizer is a stateless policy type (all members static), so layers take it as a template
// parameter and users plug in their own:
//   format_type, scales_type   the PackedMatrix it produces (code format, scale granularity)
//   kName                      a short name for reports and model files
//   quantize(w)                latent FP32 weights [rows x cols] -> packed codes + scales
//   fake_quantize(w, out)      out = quantize(w).dequantize(), bit for bit, without packing
//                              (the training forward pass); out may be exactly w (in place) or
//                              disjoint from it, never partially overlapping
// Errors: empty w -> ShapeError; NaN/Inf in w -> ValueError naming the position; out of another
// shape -> ShapeError; partial overlap -> ValueError.
// A quantizer that also provides clip_range(w, ranges) (one ClipRange per scale group) can be
// used with the clipped straight-through estimator (straight_through.hpp).
#pragma once

#include <concepts>
#include <span>
#include <string_view>

#include "pquant/core/matrix.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

/// Latent values in [lo, hi] (inclusive) are inside a quantizer's clip range: their gradient
/// passes the clipped STE. Double so the bound is exact for any float scale (no overflow).
struct ClipRange {
  double lo = 0.0;
  double hi = 0.0;
  bool contains(float v) const { return lo <= v && v <= hi; }
};

/// What training needs of a weight quantizer: a name and fake_quantize (the forward's W_q). A
/// quantizer whose values no single packed code format holds (KeepLargest: 1-bit codes plus FP32
/// outliers) is only this; BitLinear trains it on the FP32 product, the inference engine cannot
/// serve it.
template <class Q>
concept TrainableWeightQuantizer = requires(MatrixView<const float> w, MatrixView<float> out) {
  { Q::kName } -> std::convertible_to<std::string_view>;
  { Q::fake_quantize(w, out) } -> std::same_as<void>;
};

template <class Q>
concept WeightQuantizer = TrainableWeightQuantizer<Q> && CodeFormat<typename Q::format_type> &&
    ScaleGranularity<typename Q::scales_type> &&
    requires(MatrixView<const float> w, MatrixView<float> out) {
  { Q::kName } -> std::convertible_to<std::string_view>;
  {
    Q::quantize(w)
    } -> std::same_as<PackedMatrix<typename Q::format_type, typename Q::scales_type>>;
  { Q::fake_quantize(w, out) } -> std::same_as<void>;
};

/// A WeightQuantizer that states its clip range per scale group (for ClippedStraightThrough).
template <class Q>
concept ClippableWeightQuantizer = WeightQuantizer<Q> &&
    requires(MatrixView<const float> w, std::span<ClipRange> ranges) {
  { Q::clip_range(w, ranges) } -> std::same_as<void>;
};

}  // namespace pquant
