// Per-scale-group reductions and argument checks shared by the weight quantizers.
//
// Every reduction (sum, sum of |w|, max |w|) visits the elements in row-major order and
// accumulates in double: deterministic for a given tensor, independent of how callers split work,
// and free of overflow for any finite float input (n * FLT_MAX << DBL_MAX), so mean(|W|) of a
// tensor of 1e38s is finite. Groups come from the ScaleGranularity policy alone (count/index), so
// user-defined granularities work too.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant::detail {

/// Weight input of a quantizer: non-empty, well-formed, every element finite.
inline void check_input(MatrixView<const float> w, std::string_view fn, std::string_view arg) {
  check::non_empty(w, fn, arg);
  check::finite(w, fn, arg);
}

/// Output `out` must be a well-formed rows x cols view that is either exactly `in` (in place) or
/// disjoint from it; a partial overlap would read already-written values.
inline void check_output(MatrixView<const float> in, MatrixView<float> out, std::string_view fn,
                         std::string_view in_arg, std::string_view out_arg) {
  check::non_empty(out, fn, out_arg);
  check::shape(out, in.rows, in.cols, fn, out_arg);
  const auto begin_in = reinterpret_cast<std::uintptr_t>(in.data);
  const auto end_in =
      reinterpret_cast<std::uintptr_t>(in.data + (in.rows - 1) * in.stride + in.cols);
  const auto begin_out = reinterpret_cast<std::uintptr_t>(out.data);
  const auto end_out =
      reinterpret_cast<std::uintptr_t>(out.data + (out.rows - 1) * out.stride + out.cols);
  const bool overlap = begin_in < end_out && begin_out < end_in;
  const bool same = in.data == out.data && in.stride == out.stride;
  require<ValueError>(!overlap || same, fn, ": argument '", out_arg, "' must be exactly '", in_arg,
                      "' (in place) or not overlap it");
}

/// Per-group sum(w), sum(|w|) and element count, accumulated in double in row-major order.
struct GroupMoments {
  std::vector<double> sum;
  std::vector<double> abs_sum;
  std::vector<std::size_t> count;

  float mean(std::size_t g) const {
    return static_cast<float>(sum[g] / static_cast<double>(count[g]));
  }
  float abs_mean(std::size_t g) const {
    return static_cast<float>(abs_sum[g] / static_cast<double>(count[g]));
  }
};

template <ScaleGranularity Scales>
GroupMoments group_moments(MatrixView<const float> w) {
  const std::size_t groups = Scales::count(w.rows, w.cols);
  GroupMoments m{std::vector<double>(groups, 0.0), std::vector<double>(groups, 0.0),
                 std::vector<std::size_t>(groups, 0)};
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) {
      const std::size_t g = Scales::index(r, c, w.cols);
      const double v = w(r, c);
      m.sum[g] += v;
      m.abs_sum[g] += std::fabs(v);
      ++m.count[g];
    }
  return m;
}

/// Per-group max |w| (exact: max does not depend on order).
template <ScaleGranularity Scales>
std::vector<float> group_absmax(MatrixView<const float> w) {
  std::vector<float> absmax(Scales::count(w.rows, w.cols), 0.0f);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) {
      float& a = absmax[Scales::index(r, c, w.cols)];
      a = std::fmax(a, std::fabs(w(r, c)));
    }
  return absmax;
}

}  // namespace pquant::detail
