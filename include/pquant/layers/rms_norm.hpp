// RMSNorm with a learnable gain: y = x / sqrt(mean(x^2) + eps) * gain, eps = 1e-5
// (docs/method.md section 3).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <tbb/parallel_for.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

inline constexpr float kRmsNormEps = 1e-5f;

/// sum of term(c) over c in [0, d) in the library's row-sum order, which vectors of up to 16
/// lanes follow exactly: term c is added to partial sum c % 16 (in column order), then the 16
/// partial sums are added pairwise, lane i += lane i + 8, then + 4, + 2, + 1. Sixteen independent
/// chains, so a row's sum is not one latency-bound chain of d adds. The RMSNorm's sum of squares
/// and the dot products of the RMSNorm and softmax backwards use it (kernels: Sum16Lanes).
template <class T, class Term>
T sum_in_16_lanes(std::size_t d, Term&& term) {
  T lane[16] = {};
  for (std::size_t c = 0; c < d; ++c) lane[c % 16] += term(c);
  for (std::size_t w = 8; w > 0; w /= 2)
    for (std::size_t i = 0; i < w; ++i) lane[i] += lane[i + w];
  return lane[0];
}

/// sum(x[c]^2) in sum_in_16_lanes' order.
template <class T>
T sum_of_squares(const T* x, std::size_t d) {
  return sum_in_16_lanes<T>(d, [x](std::size_t c) { return x[c] * x[c]; });
}

/// x [n x d], gain [d] -> y [n x d]; inv_rms [n] receives 1/sqrt(mean(x^2) + eps) per row.
/// The scalar reference of kernels::rmsnorm_forward (bit-identical; sums by sum_of_squares).
template <class T>
void rmsnorm_forward(MatrixView<const T> x, const T* gain, T eps, MatrixView<T> y, T* inv_rms) {
  const std::size_t d = x.cols;
  for (std::size_t i = 0; i < x.rows; ++i) {
    const T ss = sum_of_squares(x.row(i).data(), d);
    const T r = T(1) / std::sqrt(ss / static_cast<T>(d) + eps);
    inv_rms[i] = r;
    for (std::size_t c = 0; c < d; ++c) y(i, c) = x(i, c) * r * gain[c];
  }
}

/// dy [n x d] -> dx [n x d] (overwritten; may be skipped with dx.rows == 0); dgain [d] +=.
/// With u = g*dy: dx = r*u - r^3 * x * mean(u*x), dgain += dy * x * r (rows in order). The dot
/// sum(u*x) in sum_in_16_lanes' order. The scalar reference of kernels::rmsnorm_backward
/// (bit-identical).
template <class T>
void rmsnorm_backward(MatrixView<const T> dy, MatrixView<const T> x, const T* gain,
                      const T* inv_rms, MatrixView<T> dx, T* dgain) {
  const std::size_t d = x.cols;
  for (std::size_t i = 0; i < x.rows; ++i) {
    const T r = inv_rms[i];
    for (std::size_t c = 0; c < d; ++c) dgain[c] += dy(i, c) * x(i, c) * r;
    if (dx.rows == 0) continue;
    const T dot =
        sum_in_16_lanes<T>(d, [&](std::size_t c) { return gain[c] * dy(i, c) * x(i, c); });
    const T k = r * r * r * dot / static_cast<T>(d);
    for (std::size_t c = 0; c < d; ++c) dx(i, c) = r * gain[c] * dy(i, c) - k * x(i, c);
  }
}

class RMSNorm {
 public:
  struct Config {
    std::size_t features = 0;
    float eps = kRmsNormEps;
  };

  /// Registers "<name>.gain" [1 x features] (ParamRole::kNormGain, initialised to 1).
  RMSNorm(ParameterStore& store, std::string name, Config cfg) : store_(&store), cfg_(cfg) {
    require<ShapeError>(cfg.features > 0, "RMSNorm: config '", name, "' needs features > 0");
    require<ValueError>(cfg.eps > 0 && std::isfinite(cfg.eps), "RMSNorm: config '", name,
                        "' needs a finite eps > 0, got ", cfg.eps);
    gain_ = store.add(detail::param_name(name, "gain"), 1, cfg.features, ParamRole::kNormGain);
    init::constant(store.value(gain_), 1.0f);
  }

  void init(Rng&) { init::constant(store_->value(gain_), 1.0f); }

  /// x [tokens x d] -> y [tokens x d]. Caches x and 1/rms per token. Rows in parallel.
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    detail::check_forward_io(x, y, cfg_.features, cfg_.features, "RMSNorm::forward");
    x_.copy(x);
    normalize(y);
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, BorrowedInput) {
    detail::check_forward_shapes(x, y, cfg_.features, cfg_.features, "RMSNorm::forward");
    x_.borrow(x);
    normalize(y);
  }

  /// dy [tokens x d] -> dx [tokens x d] (overwritten; empty view skips it); dgain +=.
  /// Fixed chunks of 64 rows in parallel; their dgain partial sums are added in chunk order (the
  /// same result for any thread count).
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    detail::check_backward_io(dy, dx, x_.rows(), cfg_.features, cfg_.features, "RMSNorm::backward");
    const std::size_t n = dy.rows, d = cfg_.features, chunks = (n + kChunk - 1) / kChunk;
    partial_.assign(chunks * d, 0.0f);
    const float* gain = store_->value(gain_).data;
    tbb::parallel_for(std::size_t{0}, chunks, [&](std::size_t c) {
      const std::size_t i0 = c * kChunk, rows = std::min(kChunk, n - i0);
      kernels::rmsnorm_backward(dy.row_range(i0, rows), x_.view().row_range(i0, rows), {gain, d},
                                {inv_rms_.data() + i0, rows},
                                dx.rows == 0 ? MatrixView<float>{} : dx.row_range(i0, rows),
                                {partial_.data() + c * d, d});
    });
    float* dgain = store_->grad(gain_).data;
    for (std::size_t c = 0; c < chunks; ++c)
      for (std::size_t j = 0; j < d; ++j) dgain[j] += partial_[c * d + j];
  }

  std::size_t in_features() const { return cfg_.features; }
  std::size_t out_features() const { return cfg_.features; }
  const Config& config() const { return cfg_; }
  ParamId gain_id() const { return gain_; }
  /// 1/rms per token of the last forward.
  std::span<const float> inv_rms() const { return inv_rms_; }

 private:
  void normalize(MatrixView<float> y) {
    const MatrixView<const float> x = x_.view();
    const std::size_t d = cfg_.features;
    inv_rms_.resize(x.rows);
    const float* gain = store_->value(gain_).data;
    detail::for_row_blocks(x.rows, [&](std::size_t i0, std::size_t rows) {
      kernels::rmsnorm_forward(x.row_range(i0, rows), {gain, d}, cfg_.eps, y.row_range(i0, rows),
                               {inv_rms_.data() + i0, rows});
    });
  }

  ParameterStore* store_;
  Config cfg_;
  ParamId gain_;
  static constexpr std::size_t kChunk = 64;
  detail::CachedInput<float> x_;
  std::vector<float> inv_rms_;
  std::vector<float> partial_;  // dgain per chunk of rows
};

static_assert(TokenwiseLayer<RMSNorm>);

}  // namespace pquant
