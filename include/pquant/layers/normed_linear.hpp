// NormedLinear: a full-precision projection that honours `normalize_input` like BitLinear does,
//   y = RMSNorm(x) W^T  (normalize_input: own RMSNorm with learnable gain, eps 1e-5)
//   y = x W^T           (otherwise: exactly Linear)
// It is the FP twin of BitLinear with every quantizer replaced by the identity, so the FP variant
// has the same architecture as BitNet / BitNet b1.58 / pQuant (the O and down projections
// normalize their input) and differs from them only in precision (docs/variants.md).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"

namespace pquant {

class NormedLinear {
 public:
  struct Config {
    std::size_t in_features = 0;
    std::size_t out_features = 0;
    bool normalize_input = true;  // own RMSNorm (learnable gain, eps 1e-5) on the input
    double init_std = 0.02;       // W ~ N(0, init_std^2); 0: fan-in (init.hpp)
  };

  static constexpr bool kQuantized = false;
  static Config make_config(std::size_t in, std::size_t out, bool normalize_input,
                            double init_std) {
    return {in, out, normalize_input, init_std};
  }

  /// Registers "<name>.norm.gain" [1 x in] (with normalize_input) and "<name>.weight" [out x in].
  NormedLinear(ParameterStore& store, const std::string& name, Config cfg)
      : cfg_(cfg),
        linear_(store, name,
                Linear::Config{cfg.in_features, cfg.out_features, false, cfg.init_std}) {
    if (cfg.normalize_input)
      norm_.emplace(store, detail::param_name(name, "norm"), RMSNorm::Config{cfg.in_features});
  }

  void init(Rng& rng) {
    if (norm_) norm_->init(rng);
    linear_.init(rng);
  }

  /// x [tokens x in] -> y [tokens x out]. Caches what backward needs.
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    if (!norm_) return linear_.forward(x, y);
    detail::check_forward_io(x, y, cfg_.in_features, cfg_.out_features, "NormedLinear::forward");
    a_.resize(x.rows, cfg_.in_features);
    norm_->forward(x, a_.view());                   // copies x (the caller's)
    linear_.forward(a_.view(), y, borrowed_input);  // a_ is ours
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, BorrowedInput) {
    if (!norm_) return linear_.forward(x, y, borrowed_input);
    detail::check_forward_shapes(x, y, cfg_.in_features, cfg_.out_features,
                                 "NormedLinear::forward");
    a_.resize(x.rows, cfg_.in_features);
    norm_->forward(x, a_.view(), borrowed_input);
    linear_.forward(a_.view(), y, borrowed_input);
  }

  /// dy [tokens x out] -> dx [tokens x in] (overwritten; empty view skips it); gradients +=.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    if (!norm_) return linear_.backward(dy, dx);
    da_.resize(dy.rows, cfg_.in_features);
    linear_.backward(dy, da_.view());
    norm_->backward(da_.view(), dx);
  }

  std::size_t in_features() const { return cfg_.in_features; }
  std::size_t out_features() const { return cfg_.out_features; }
  const Config& config() const { return cfg_; }
  ParamId weight_id() const { return linear_.weight_id(); }
  /// The input RMSNorm's gain (invalid without normalize_input).
  ParamId norm_gain_id() const { return norm_ ? norm_->gain_id() : ParamId{}; }

 private:
  Config cfg_;
  std::optional<RMSNorm> norm_;
  Linear linear_;
  Matrix<float> a_, da_;  // RMSNorm(x) and its gradient
};

static_assert(Projection<NormedLinear>);

}  // namespace pquant
