// RMSNorm with a learnable gain: y = x / sqrt(mean(x^2) + eps) * gain, eps = 1e-5 (method.md).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

inline constexpr float kRmsNormEps = 1e-5f;

/// x [n x d], gain [d] -> y [n x d]; inv_rms [n] receives 1/sqrt(mean(x^2) + eps) per row.
template <class T>
void rmsnorm_forward(MatrixView<const T> x, const T* gain, T eps, MatrixView<T> y, T* inv_rms) {
  const std::size_t d = x.cols;
  for (std::size_t i = 0; i < x.rows; ++i) {
    T ss = 0;
    for (std::size_t c = 0; c < d; ++c) ss += x(i, c) * x(i, c);
    const T r = T(1) / std::sqrt(ss / static_cast<T>(d) + eps);
    inv_rms[i] = r;
    for (std::size_t c = 0; c < d; ++c) y(i, c) = x(i, c) * r * gain[c];
  }
}

/// dy [n x d] -> dx [n x d] (overwritten; may be skipped with dx.rows == 0); dgain [d] +=.
/// With u = g*dy: dx = r*u - r^3 * x * mean(u*x), dgain += dy * x * r.
template <class T>
void rmsnorm_backward(MatrixView<const T> dy, MatrixView<const T> x, const T* gain,
                      const T* inv_rms, MatrixView<T> dx, T* dgain) {
  const std::size_t d = x.cols;
  for (std::size_t i = 0; i < x.rows; ++i) {
    const T r = inv_rms[i];
    T dot = 0;
    for (std::size_t c = 0; c < d; ++c) {
      dot += gain[c] * dy(i, c) * x(i, c);
      dgain[c] += dy(i, c) * x(i, c) * r;
    }
    if (dx.rows == 0) continue;
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

  /// x [tokens x d] -> y [tokens x d]. Caches x and 1/rms per token.
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    detail::check_forward_io(x, y, cfg_.features, cfg_.features, "RMSNorm::forward");
    detail::copy_into(x, x_);
    inv_rms_.resize(x.rows);
    rmsnorm_forward<float>(x_.view(), store_->value(gain_).data, cfg_.eps, y, inv_rms_.data());
  }

  /// dy [tokens x d] -> dx [tokens x d] (overwritten; empty view skips it); dgain +=.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    detail::check_backward_io(dy, dx, x_.rows(), cfg_.features, cfg_.features, "RMSNorm::backward");
    rmsnorm_backward<float>(dy, x_.view(), store_->value(gain_).data, inv_rms_.data(), dx,
                            store_->grad(gain_).data);
  }

  std::size_t in_features() const { return cfg_.features; }
  std::size_t out_features() const { return cfg_.features; }
  const Config& config() const { return cfg_; }
  ParamId gain_id() const { return gain_; }
  /// 1/rms per token of the last forward.
  std::span<const float> inv_rms() const { return inv_rms_; }

 private:
  ParameterStore* store_;
  Config cfg_;
  ParamId gain_;
  Matrix<float> x_;
  std::vector<float> inv_rms_;
};

static_assert(TokenwiseLayer<RMSNorm>);

}  // namespace pquant
