// TernaryAbsMean<Scales>: ternary {-1, 0, +1} weights with an absmean scale (BitNet b1.58).
//
// Per scale group:
//   gamma = mean(|W|),  W_t = RoundClip(W / (gamma + eps), -1, 1),  value = gamma * W_t
// eps = 1e-5; RoundClip(x, a, b) = clamp(nearbyint(x), a, b), round half to even (0.5 -> 0,
// 1.5 -> 1 after the clip). gamma is a double reduction rounded to float; gamma + eps and the
// division are FP32. |W| <= n * gamma, so the quotient never overflows. All-zero group: gamma = 0,
// codes 0, values +0. Constant group c != 0: W / (|c| + eps) rounds to sign(c), value sign(c)|c|.
// Clip range (ClippedStraightThrough): |W| <= gamma + eps (the RoundClip bounds before rounding).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/reductions.hpp"
#include "pquant/quantizers/packed_form.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

template <ScaleGranularity Scales = PerTensor>
struct TernaryAbsMean {
  using format_type = TernaryCode;
  using scales_type = Scales;
  using packed_type = PackedMatrix<TernaryCode, Scales>;
  static constexpr std::string_view kName = "ternary_absmean";
  static constexpr float kEps = 1e-5f;

  /// gamma = mean(|W|) of every scale group.
  // w: [rows x cols] -> [Scales::count(rows, cols)]
  static std::vector<float> gammas(MatrixView<const float> w) {
    const detail::GroupMoments m = detail::group_moments<Scales>(w);
    std::vector<float> gamma(m.count.size());
    for (std::size_t g = 0; g < gamma.size(); ++g) gamma[g] = m.abs_mean(g);
    return gamma;
  }

  // w: [rows x cols] -> codes [rows x cols], one gamma per scale group
  static packed_type quantize(MatrixView<const float> w) {
    detail::check_input(w, "TernaryAbsMean::quantize", "w");
    const std::vector<float> gamma = gammas(w);
    packed_type p(w.rows, w.cols);
    std::span<float> params = p.params();
    for (std::size_t g = 0; g < params.size(); ++g) params[g] = gamma[g];
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        p.set_code(r, c, TernaryCode::encode(ternary(w(r, c), gamma[Scales::index(r, c, w.cols)])));
    return p;
  }

  // w, out: [rows x cols]; out may be exactly w
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    constexpr std::string_view fn = "TernaryAbsMean::fake_quantize";
    detail::check_input(w, fn, "w");
    detail::check_output(w, out, fn, "w", "out");
    const std::vector<float> gamma = gammas(w);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) {
        const float s = gamma[Scales::index(r, c, w.cols)];
        // The same expression PackedView::dequantized evaluates: bit-identical.
        out(r, c) = s * static_cast<float>(ternary(w(r, c), s));
      }
  }

  /// [-(gamma + eps), gamma + eps] per scale group.
  // w: [rows x cols], ranges: [Scales::count(rows, cols)]
  static void clip_range(MatrixView<const float> w, std::span<ClipRange> ranges) {
    constexpr std::string_view fn = "TernaryAbsMean::clip_range";
    detail::check_input(w, fn, "w");
    check::size(ranges, Scales::count(w.rows, w.cols), fn, "ranges");
    const std::vector<float> gamma = gammas(w);
    for (std::size_t g = 0; g < ranges.size(); ++g) {
      const double bound = gamma[g] + kEps;  // the FP32 denominator, widened exactly
      ranges[g] = {-bound, bound};
    }
  }

 private:
  // RoundClip(w / (gamma + eps), -1, 1); nearbyint rounds half to even.
  static int ternary(float w, float gamma) {
    const float t = std::nearbyint(w / (gamma + kEps));
    return static_cast<int>(std::clamp(t, -1.0f, 1.0f));
  }
};

static_assert(ClippableWeightQuantizer<TernaryAbsMean<PerTensor>>);

/// Packed form (quantizers/packed_lut.hpp): ternary LUT codes, gamma per row (a per-tensor gamma
/// repeated per row) or per group; served on the W2A8 kernels per row, decoded per group.
template <ScaleGranularity S>
struct packed_form<TernaryAbsMean<S>> {
  using type = LutCodes<TernaryCode, stored_scales_t<S>>;
};

}  // namespace pquant
