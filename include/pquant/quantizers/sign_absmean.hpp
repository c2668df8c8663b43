// SignAbsMean<Scales>: 1-bit weights with mean-centring and an absmean scale (pQuant, BitNet).
//
// Per scale group (the whole tensor for PerTensor, a row for PerRow, G columns of a row for
// PerGroup<G>):
//   mu = mean(W),  lambda = mean(|W|),  code = sign(W - mu) in {-1, +1} with sign(0) = +1,
//   value = lambda * code          (mu is not added back, docs/method.md section 2)
// Reductions in double in row-major order, rounded once to float. sign(W - mu) is evaluated as
// W >= mu, which is exact and cannot overflow (W - mu could for |W| near FLT_MAX).
// All-zero group: lambda = 0, codes +1, values +0. Constant group c: mu = c, codes +1, value |c|.
// Clip range (ClippedStraightThrough): |W - mu| <= lambda, i.e. [mu - lambda, mu + lambda]
// (hardtanh of the normalised weight), bounds in double.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
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

template <ScaleGranularity Scales = PerTensor>
struct SignAbsMean {
  using format_type = SignBit;
  using scales_type = Scales;
  using packed_type = PackedMatrix<SignBit, Scales>;
  static constexpr std::string_view kName = "sign_absmean";

  /// mu and lambda of every scale group (group order of Scales::index).
  struct Statistics {
    std::vector<float> mu;
    std::vector<float> lambda;
  };

  // w: [rows x cols]
  static Statistics statistics(MatrixView<const float> w) {
    const detail::GroupMoments m = detail::group_moments<Scales>(w);
    Statistics s{std::vector<float>(m.count.size()), std::vector<float>(m.count.size())};
    for (std::size_t g = 0; g < m.count.size(); ++g) {
      s.mu[g] = m.mean(g);
      s.lambda[g] = m.abs_mean(g);
    }
    return s;
  }

  // w: [rows x cols] -> codes [rows x cols], one lambda per scale group
  static packed_type quantize(MatrixView<const float> w) {
    detail::check_input(w, "SignAbsMean::quantize", "w");
    const Statistics s = statistics(w);
    packed_type p(w.rows, w.cols);
    std::span<float> params = p.params();
    for (std::size_t g = 0; g < params.size(); ++g) params[g] = s.lambda[g];
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        p.set_code(r, c, code(w(r, c), s.mu[Scales::index(r, c, w.cols)]));
    return p;
  }

  /// quantize(w) unpacked, for a caller that needs it every step (BitLinear's integer forward):
  /// codes in {-1, +1} as int8, values = lambda * code (the packed view's value() and
  /// dequantized(), bit for bit) and each group's lambda, without the packed storage.
  // w, codes, values: [rows x cols]; lambda: [Scales::count(rows, cols)]
  static void quantize_unpacked(MatrixView<const float> w, MatrixView<std::int8_t> codes,
                                MatrixView<float> values, std::span<float> lambda) {
    constexpr std::string_view fn = "SignAbsMean::quantize_unpacked";
    detail::check_input(w, fn, "w");
    check::shape(codes, w.rows, w.cols, fn, "codes");
    check::shape(MatrixView<const float>(values), w.rows, w.cols, fn, "values");
    check::size(std::span<const float>(lambda), Scales::count(w.rows, w.cols), fn, "lambda");
    const Statistics s = statistics(w);
    std::copy(s.lambda.begin(), s.lambda.end(), lambda.begin());
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) {
        const std::size_t g = Scales::index(r, c, w.cols);
        const std::uint8_t bit = code(w(r, c), s.mu[g]);
        const std::int8_t v = static_cast<std::int8_t>(SignBit::decode(bit));
        codes(r, c) = v;
        values(r, c) = s.lambda[g] * static_cast<float>(v);
      }
  }

  // w, out: [rows x cols]; out may be exactly w
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    constexpr std::string_view fn = "SignAbsMean::fake_quantize";
    detail::check_input(w, fn, "w");
    detail::check_output(w, out, fn, "w", "out");
    const Statistics s = statistics(w);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) {
        const std::size_t g = Scales::index(r, c, w.cols);
        // The same expression PackedView::dequantized evaluates: bit-identical.
        out(r, c) = s.lambda[g] * static_cast<float>(SignBit::decode(code(w(r, c), s.mu[g])));
      }
  }

  /// [mu - lambda, mu + lambda] per scale group.
  // w: [rows x cols], ranges: [Scales::count(rows, cols)]
  static void clip_range(MatrixView<const float> w, std::span<ClipRange> ranges) {
    constexpr std::string_view fn = "SignAbsMean::clip_range";
    detail::check_input(w, fn, "w");
    check::size(ranges, Scales::count(w.rows, w.cols), fn, "ranges");
    const Statistics s = statistics(w);
    for (std::size_t g = 0; g < ranges.size(); ++g) {
      const double mu = s.mu[g], lambda = s.lambda[g];
      ranges[g] = {mu - lambda, mu + lambda};
    }
  }

 private:
  // sign(w - mu) with sign(0) = +1, as a SignBit code (1 means +1).
  static std::uint8_t code(float w, float mu) { return w >= mu ? 1 : 0; }
};

static_assert(ClippableWeightQuantizer<SignAbsMean<PerTensor>>);
static_assert(ClippableWeightQuantizer<SignAbsMean<PerGroup<64>>>);

}  // namespace pquant
