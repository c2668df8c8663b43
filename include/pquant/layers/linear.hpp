// Linear: full-precision Y = X W^T (+ b). Used for the output head, the router, and the FP variant.
#pragma once

#include <cstddef>
#include <string>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/matmul.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

class Linear {
 public:
  struct Config {
    std::size_t in_features = 0;
    std::size_t out_features = 0;
    bool bias = false;
    double init_std = 0.02;  // W ~ N(0, init_std^2); 0: fan-in (init::linear_weight); bias 0
  };

  static constexpr bool kQuantized = false;
  /// Projection policy hook: FP projections never normalize their input (see layer.hpp).
  static Config make_config(std::size_t in, std::size_t out, bool /*normalize_input*/,
                            double init_std) {
    return {in, out, false, init_std};
  }

  /// Registers "<name>.weight" [out x in] (kWeight) and, with cfg.bias, "<name>.bias" [1 x out].
  Linear(ParameterStore& store, std::string name, Config cfg) : store_(&store), cfg_(cfg) {
    require<ShapeError>(cfg.in_features > 0 && cfg.out_features > 0, "Linear: config '", name,
                        "' needs in_features > 0 and out_features > 0, got ", cfg.in_features,
                        " and ", cfg.out_features);
    weight_ = store.add(detail::param_name(name, "weight"), cfg.out_features, cfg.in_features,
                        ParamRole::kWeight);
    if (cfg.bias)
      bias_ = store.add(detail::param_name(name, "bias"), 1, cfg.out_features, ParamRole::kBias);
  }

  void init(Rng& rng) {
    init::linear_weight(store_->value(weight_), rng, cfg_.init_std);
    if (bias_.valid()) init::constant(store_->value(bias_), 0.0f);
  }

  /// x [tokens x in] -> y [tokens x out]: y = x W^T + b. Caches x.
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    detail::check_forward_io(x, y, cfg_.in_features, cfg_.out_features, "Linear::forward");
    x_.copy(x);
    multiply(y);
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, BorrowedInput) {
    detail::check_forward_shapes(x, y, cfg_.in_features, cfg_.out_features, "Linear::forward");
    x_.borrow(x);
    multiply(y);
  }

  /// dy [tokens x out] -> dx [tokens x in] (overwritten; empty view skips it).
  /// Accumulates dW += dy^T x and db += column sums of dy.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    detail::check_backward_io(dy, dx, x_.rows(), cfg_.in_features, cfg_.out_features,
                              "Linear::backward");
    detail::matmul_acc_dyx<float>(dy, x_.view(), store_->grad(weight_));
    if (bias_.valid()) {
      MatrixView<float> db = store_->grad(bias_);
      for (std::size_t i = 0; i < dy.rows; ++i)
        for (std::size_t j = 0; j < dy.cols; ++j) db(0, j) += dy(i, j);
    }
    if (dx.rows != 0) detail::matmul_dyw<float>(dy, store_->value(weight_), dx);
  }

  std::size_t in_features() const { return cfg_.in_features; }
  std::size_t out_features() const { return cfg_.out_features; }
  const Config& config() const { return cfg_; }
  ParamId weight_id() const { return weight_; }
  ParamId bias_id() const { return bias_; }  // invalid without cfg.bias

 private:
  void multiply(MatrixView<float> y) {
    detail::matmul_xwt<float>(x_.view(), store_->value(weight_), y);
    if (ProductObserver* o = store_->observer())
      o->on_product(weight_, x_.view(), store_->value(weight_));
    if (bias_.valid()) {
      const MatrixView<const float> b = store_->value(bias_);
      for (std::size_t i = 0; i < y.rows; ++i)
        for (std::size_t j = 0; j < y.cols; ++j) y(i, j) += b(0, j);
    }
  }

  ParameterStore* store_;
  Config cfg_;
  ParamId weight_;
  ParamId bias_;
  detail::CachedInput<float> x_;
};

static_assert(Projection<Linear>);

}  // namespace pquant
