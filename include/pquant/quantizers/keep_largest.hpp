// KeepLargest<Base, PerMille>: naive mixed precision. The PerMille / 1000 share of a tensor's
// weights with the largest |W| keep their FP32 value, every other weight takes Base's quantized
// value (docs/method.md section 6: the comparison point for pQuant's decoupled branch at a similar
// bit budget, 5% FP32 outliers in a 1-bit matrix being about 2.5 bits per weight with their
// positions).
//
//   k        = round(n * PerMille / 1000) of the n weights (at least 1 when PerMille > 0)
//   kept     the k largest |W|; ties broken by row-major position (the earlier one is kept), so the
//            set depends only on the values
//   value    W where kept, else Base::fake_quantize(W) there. Base's statistics (mean, absmean)
//            are those of the whole tensor, outliers included: the policy wraps any quantizer
//            without reaching into its scale rule.
// Backward: the straight-through estimator applies to the whole tensor; the kept weights are the
// identity, so their gradient is exact.
// A trainable quantizer only (TrainableWeightQuantizer): no packed code format holds the FP32
// outliers, so BitLinear trains it on the FP32 product and the inference engine cannot serve it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string_view>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/reductions.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"

namespace pquant {

template <TrainableWeightQuantizer Base, std::size_t PerMille = 50>
struct KeepLargest {
  static_assert(PerMille <= 1000, "KeepLargest: PerMille is a share of 1000");
  using base_quantizer = Base;
  static constexpr std::size_t kPerMille = PerMille;
  static constexpr std::string_view kName = "keep_largest";

  /// How many of n weights keep their FP32 value.
  static constexpr std::size_t kept_count(std::size_t n) {
    if constexpr (PerMille == 0) {
      return 0;
    } else {
      const std::size_t k = (n * PerMille + 500) / 1000;
      return std::max<std::size_t>(k, 1);
    }
  }

  /// Row-major positions of the kept weights, ascending.
  // w: [rows x cols]
  static std::vector<std::size_t> kept_positions(MatrixView<const float> w) {
    detail::check_input(w, "KeepLargest::kept_positions", "w");
    const std::size_t n = w.rows * w.cols, k = kept_count(n);
    std::vector<std::size_t> pos(n);
    for (std::size_t i = 0; i < n; ++i) pos[i] = i;
    const auto at = [&](std::size_t i) { return std::fabs(w(i / w.cols, i % w.cols)); };
    const auto larger = [&](std::size_t a, std::size_t b) {
      const float x = at(a), y = at(b);
      return x != y ? x > y : a < b;
    };
    std::nth_element(pos.begin(), pos.begin() + static_cast<std::ptrdiff_t>(k), pos.end(), larger);
    pos.resize(k);
    std::sort(pos.begin(), pos.end());
    return pos;
  }

  // w, out: [rows x cols]; out may be exactly w
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    constexpr std::string_view fn = "KeepLargest::fake_quantize";
    detail::check_input(w, fn, "w");
    detail::check_output(w, out, fn, "w", "out");
    const std::vector<std::size_t> kept = kept_positions(w);
    std::vector<float> values(kept.size());
    for (std::size_t j = 0; j < kept.size(); ++j)
      values[j] = w(kept[j] / w.cols, kept[j] % w.cols);  // before an in-place Base overwrites w
    Base::fake_quantize(w, out);
    for (std::size_t j = 0; j < kept.size(); ++j) out(kept[j] / w.cols, kept[j] % w.cols) = values[j];
  }
};

}  // namespace pquant
