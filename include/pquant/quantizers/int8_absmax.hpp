// Int8AbsMax<Scales>: INT8 weights of pQuant's high-precision branch, absmax per scale group
// (per output row by default, our choice: the paper says "identically to activations";
// docs/method.md section 2).
//
// Per scale group:
//   a = max(max |W|, eps),  gain = 127 / a,  q = clamp(nearbyint(W * gain), -128, 127),
//   scale = a / 127,  value = scale * q
// eps = 1e-5, round half to even, FP32 arithmetic: the codes are exactly those of
// Int8AbsMaxPerToken applied to the group. |W * gain| <= 127 so q is in [-127, 127]. The stored
// scale is a / 127 (correctly rounded); if 127 * scale would overflow (a within an ulp of
// FLT_MAX) it is lowered by one ulp so every value stays finite. All-zero group: q = 0,
// scale = eps / 127.
// Clip range (ClippedStraightThrough): [-a, a], which holds every weight of the group: the absmax
// quantizer never saturates, so clipped STE equals the identity here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/reductions.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

template <ScaleGranularity Scales = PerRow>
struct Int8AbsMax {
  using format_type = Int8Code;
  using scales_type = Scales;
  using packed_type = PackedMatrix<Int8Code, Scales>;
  static constexpr std::string_view kName = "int8_absmax";
  static constexpr float kEps = 1e-5f;
  static constexpr float kQmax = 127.0f;

  struct Statistics {
    std::vector<float> gain;   // 127 / a: multiplies W into code units
    std::vector<float> scale;  // a / 127: the stored scale, value = scale * q
  };

  // w: [rows x cols]
  static Statistics statistics(MatrixView<const float> w) {
    const std::vector<float> absmax = detail::group_absmax<Scales>(w);
    Statistics s{std::vector<float>(absmax.size()), std::vector<float>(absmax.size())};
    for (std::size_t g = 0; g < absmax.size(); ++g) {
      const float a = std::fmax(absmax[g], kEps);
      s.gain[g] = kQmax / a;
      float scale = a / kQmax;
      if (std::isinf(scale * kQmax)) scale = std::nextafter(scale, 0.0f);
      s.scale[g] = scale;
    }
    return s;
  }

  // w: [rows x cols] -> codes [rows x cols], one scale per scale group
  static packed_type quantize(MatrixView<const float> w) {
    detail::check_input(w, "Int8AbsMax::quantize", "w");
    const Statistics s = statistics(w);
    packed_type p(w.rows, w.cols);
    std::span<float> params = p.params();
    for (std::size_t g = 0; g < params.size(); ++g) params[g] = s.scale[g];
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        p.set_code(r, c, Int8Code::encode(code(w(r, c), s.gain[Scales::index(r, c, w.cols)])));
    return p;
  }

  // w, out: [rows x cols]; out may be exactly w
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    constexpr std::string_view fn = "Int8AbsMax::fake_quantize";
    detail::check_input(w, fn, "w");
    detail::check_output(w, out, fn, "w", "out");
    const Statistics s = statistics(w);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) {
        const std::size_t g = Scales::index(r, c, w.cols);
        // The same expression PackedView::dequantized evaluates: bit-identical.
        out(r, c) = s.scale[g] * static_cast<float>(code(w(r, c), s.gain[g]));
      }
  }

  /// [-a, a] per scale group, a = max(absmax, eps).
  // w: [rows x cols], ranges: [Scales::count(rows, cols)]
  static void clip_range(MatrixView<const float> w, std::span<ClipRange> ranges) {
    constexpr std::string_view fn = "Int8AbsMax::clip_range";
    detail::check_input(w, fn, "w");
    check::size(ranges, Scales::count(w.rows, w.cols), fn, "ranges");
    const std::vector<float> absmax = detail::group_absmax<Scales>(w);
    for (std::size_t g = 0; g < ranges.size(); ++g) {
      const double a = std::fmax(absmax[g], kEps);
      ranges[g] = {-a, a};
    }
  }

 private:
  // clamp(nearbyint(w * gain), -128, 127), round half to even.
  static int code(float w, float gain) {
    return static_cast<int>(std::clamp(std::nearbyint(w * gain), -128.0f, 127.0f));
  }
};

static_assert(ClippableWeightQuantizer<Int8AbsMax<PerRow>>);

}  // namespace pquant
