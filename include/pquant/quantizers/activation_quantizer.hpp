// ActivationQuantizer: per-token INT8 absmax quantization of activations (docs/method.md
// section 2).
//
// An activation policy is stateless (all members static) and provides
//   kName, kQuantizes             kQuantizes == false means the identity (full precision)
//   fake_quantize(x, out)         x, out: [tokens x features]; out may be exactly x (in place)
// and, when kQuantizes:
//   quantize(x, q, gain)          q: int8 [tokens x features], gain: one float per token
// Int8AbsMaxPerToken, per row t:
//   gain_t = 127 / max(max_i |x_ti|, eps),  eps = 1e-5
//   q_ti   = clamp(nearbyint(x_ti * gain_t), -128, 127)   round half to even (default FP mode)
//   x_ti  ~= q_ti / gain_t
// All arithmetic in FP32. An all-zero row gives q = 0 and gain = 127 / eps (finite). With an
// absmax gain |x * gain| <= 127, so -128 is only reached with an explicit gain (quantize_row).
// Errors: empty x -> ShapeError; NaN/Inf in x -> ValueError naming (token, feature); q, gain or
// out of another shape -> ShapeError.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/reductions.hpp"

namespace pquant {

template <class A>
concept ActivationQuantizer = requires(MatrixView<const float> x, MatrixView<float> out) {
  { A::kName } -> std::convertible_to<std::string_view>;
  { A::kQuantizes } -> std::convertible_to<bool>;
  { A::fake_quantize(x, out) } -> std::same_as<void>;
}
&&(!A::kQuantizes ||
   requires(MatrixView<const float> x, MatrixView<std::int8_t> q, std::span<float> gain) {
     { A::quantize(x, q, gain) } -> std::same_as<void>;
   });

/// Full precision: activations pass unchanged (FP baselines). Only shapes are checked.
struct NoActivationQuant {
  static constexpr std::string_view kName = "fp32";
  static constexpr bool kQuantizes = false;

  // x, out: [tokens x features]
  static void fake_quantize(MatrixView<const float> x, MatrixView<float> out) {
    constexpr std::string_view fn = "NoActivationQuant::fake_quantize";
    check::non_empty(x, fn, "x");
    detail::check_output(x, out, fn, "x", "out");
    for (std::size_t t = 0; t < x.rows; ++t)
      for (std::size_t i = 0; i < x.cols; ++i) out(t, i) = x(t, i);
  }
};

/// INT8 absmax per token (row), BitNet / pQuant activations.
struct Int8AbsMaxPerToken {
  static constexpr std::string_view kName = "int8_absmax_per_token";
  static constexpr bool kQuantizes = true;
  static constexpr float kEps = 1e-5f;  // floor of absmax: an all-zero row keeps a finite gain
  static constexpr float kQmax = 127.0f;

  /// gain = 127 / max(absmax, eps) of one token. If 127 / gain would overflow (absmax within an
  /// ulp of FLT_MAX) the gain is raised by one ulp so q / gain stays finite.
  // x: [features]
  static float gain(std::span<const float> x) {
    constexpr std::string_view fn = "Int8AbsMaxPerToken::gain";
    require<ShapeError>(!x.empty(), fn, ": argument 'x' must be non-empty");
    return checked_gain(MatrixView<const float>(x.data(), 1, x.size()), 0, fn);
  }

  static float gain_from_absmax(float absmax) {
    float g = kQmax / std::fmax(absmax, kEps);
    if (std::isinf(kQmax / g)) g = std::nextafter(g, std::numeric_limits<float>::infinity());
    return g;
  }

  /// q_i = clamp(nearbyint(x_i * gain), -128, 127) with a caller-supplied gain (finite, > 0).
  // x: [features], q: [features]
  static void quantize_row(std::span<const float> x, float gain, std::span<std::int8_t> q) {
    constexpr std::string_view fn = "Int8AbsMaxPerToken::quantize_row";
    check::size(q, x.size(), fn, "q");
    require<ValueError>(std::isfinite(gain) && gain > 0.0f, fn,
                        ": argument 'gain' must be finite and > 0, got ", gain);
    check::finite(x, fn, "x");
    for (std::size_t i = 0; i < x.size(); ++i) q[i] = round_clamp(x[i] * gain);
  }

  // x: [tokens x features], q: [tokens x features], gain: [tokens]
  static void quantize(MatrixView<const float> x, MatrixView<std::int8_t> q,
                       std::span<float> gain) {
    constexpr std::string_view fn = "Int8AbsMaxPerToken::quantize";
    check::non_empty(x, fn, "x");
    check::non_empty(q, fn, "q");
    check::shape(q, x.rows, x.cols, fn, "q");
    check::size(gain, x.rows, fn, "gain");
    for (std::size_t t = 0; t < x.rows; ++t) {
      const float g = checked_gain(x, t, fn);
      gain[t] = g;
      for (std::size_t i = 0; i < x.cols; ++i) q(t, i) = round_clamp(x(t, i) * g);
    }
  }

  /// out = q / gain per token, exactly what quantize() represents.
  // x, out: [tokens x features]
  static void fake_quantize(MatrixView<const float> x, MatrixView<float> out) {
    constexpr std::string_view fn = "Int8AbsMaxPerToken::fake_quantize";
    check::non_empty(x, fn, "x");
    detail::check_output(x, out, fn, "x", "out");
    for (std::size_t t = 0; t < x.rows; ++t) {
      const float g = checked_gain(x, t, fn);
      for (std::size_t i = 0; i < x.cols; ++i)
        out(t, i) = static_cast<float>(round_clamp(x(t, i) * g)) / g;
    }
  }

 private:
  static std::int8_t round_clamp(float v) {
    // Clamp first (also catches +-inf), then round half to even: adding and subtracting
    // 1.5 * 2^23 leaves no fraction bits, so the FPU's round-to-nearest-even does the rounding
    // (|v| <= 128 keeps the sum exact). Same result as std::nearbyint in the default rounding
    // mode, without a libm call per element, so the loop vectorises.
    constexpr float kRound = 12582912.0f;
    const float c = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
    return static_cast<std::int8_t>((c + kRound) - kRound);
  }

  // Absmax of row t and its gain; NaN/Inf anywhere in the row is a ValueError naming the position.
  static float checked_gain(MatrixView<const float> x, std::size_t t, std::string_view fn) {
    float absmax = 0.0f;
    bool finite = true;
    for (std::size_t i = 0; i < x.cols; ++i) {
      const float a = std::fabs(x(t, i));
      finite = finite && a <= std::numeric_limits<float>::max();  // false for inf and NaN
      absmax = a > absmax ? a : absmax;
    }
    if (!finite) [[unlikely]] {
      for (std::size_t i = 0; i < x.cols; ++i)
        require<ValueError>(std::isfinite(x(t, i)), fn, ": argument 'x' must be finite, got ",
                            x(t, i), " at (", t, ", ", i, ")");
    }
    return gain_from_absmax(absmax);
  }
};

static_assert(ActivationQuantizer<NoActivationQuant>);
static_assert(ActivationQuantizer<Int8AbsMaxPerToken>);

}  // namespace pquant
