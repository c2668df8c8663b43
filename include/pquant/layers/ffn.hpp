// Feed-forward networks: FfnBranch<Proj> (one gated FFN on an already-normalized input) and
// Ffn<Proj> (the dense pre-norm FFN of the FP, BitNet and BitNet b1.58 variants).
//
//   SwiGLU: y = down(silu(a Wg^T) * (a Wu^T))     ReLU^2: y = down(max(a Wu^T, 0)^2)
// The gate/up projections read the caller's normalized input a (normalize_input off); a quantized
// down projection normalizes its own input (BitNet's per-BitLinear RMSNorm), an FP one does not.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"

namespace pquant {

template <Projection Proj>
class FfnBranch {
 public:
  struct Config {
    std::size_t d_model = 0;
    std::size_t hidden = 0;
    FfnActivation activation = FfnActivation::kSwiGLU;
    double init_std = 0.02;      // gate, up
    double out_init_std = 0.02;  // down
  };

  /// Registers "<name>.gate" (SwiGLU only), "<name>.up", "<name>.down" (Proj's tensors each).
  FfnBranch(ParameterStore& store, const std::string& name, Config cfg) : cfg_(checked(cfg, name)) {
    if (cfg.activation == FfnActivation::kSwiGLU)
      gate_.emplace(store, detail::param_name(name, "gate"),
                    Proj::make_config(cfg.d_model, cfg.hidden, false, cfg.init_std));
    up_.emplace(store, detail::param_name(name, "up"),
                Proj::make_config(cfg.d_model, cfg.hidden, false, cfg.init_std));
    down_.emplace(store, detail::param_name(name, "down"),
                  Proj::make_config(cfg.hidden, cfg.d_model, true, cfg.out_init_std));
  }

  void init(Rng& rng) {
    if (gate_) gate_->init(rng);
    up_->init(rng);
    down_->init(rng);
  }

  /// a [tokens x d_model] (normalized by the owner) -> y [tokens x d_model].
  void forward(MatrixView<const float> a, MatrixView<float> y) { run<false>(a, y); }
  /// The same with a lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> a, MatrixView<float> y, BorrowedInput) { run<true>(a, y); }

  /// dy [tokens x d_model] -> da [tokens x d_model] (overwritten; required).
  void backward(MatrixView<const float> dy, MatrixView<float> da) {
    const std::size_t n = dy.rows, h = cfg_.hidden;
    require<ValueError>(h_.rows() == n, "FfnBranch::backward: called before forward or with ", n,
                        " tokens after a forward of ", h_.rows());
    dh_.resize(n, h);
    du_.resize(n, h);
    down_->backward(dy, dh_.view());
    if (gate_) {
      dg_.resize(n, h);
      by_rows(n, [&](std::size_t i, std::size_t m) {
        kernels::swiglu_backward(dh_.view().row_range(i, m), g_.view().row_range(i, m),
                                 u_.view().row_range(i, m), dg_.view().row_range(i, m),
                                 du_.view().row_range(i, m));
      });
      da_part_.resize(n, cfg_.d_model);
      // Concurrent (own parameters and outputs); then da = dA_up + dA_gate in a fixed order.
      tbb::parallel_invoke([&] { up_->backward(du_.view(), da); },
                           [&] { gate_->backward(dg_.view(), da_part_.view()); });
      by_rows(n, [&](std::size_t i0, std::size_t m) {
        for (std::size_t i = i0; i < i0 + m; ++i)
          for (std::size_t c = 0; c < cfg_.d_model; ++c) da(i, c) += da_part_(i, c);
      });
    } else {
      by_rows(n, [&](std::size_t i, std::size_t m) {
        relu2_backward<float>(dh_.view().row_range(i, m), u_.view().row_range(i, m),
                              du_.view().row_range(i, m));
      });
      up_->backward(du_.view(), da);
    }
  }

  std::size_t in_features() const { return cfg_.d_model; }
  std::size_t out_features() const { return cfg_.d_model; }
  const Config& config() const { return cfg_; }
  /// The projections (gate is empty with ReLU^2).
  const std::optional<Proj>& gate() const { return gate_; }
  const Proj& up() const { return *up_; }
  const Proj& down() const { return *down_; }

 private:
  template <bool kLent>
  void project(Proj& p, MatrixView<const float> a, MatrixView<float> out) {
    if constexpr (SharedInputProjection<Proj>)
      detail::forward_shared_borrowed(p, shared_, out);  // shared_ is ours
    else if constexpr (kLent)
      detail::forward_borrowed(p, a, out);
    else
      p.forward(a, out);
  }
  template <bool kLent>
  void run(MatrixView<const float> a, MatrixView<float> y) {
    const std::size_t n = a.rows, h = cfg_.hidden;
    u_.resize(n, h);
    h_.resize(n, h);
    if constexpr (SharedInputProjection<Proj>)  // gate and up read one quantized copy of a
      Proj::quantize_input(a, shared_);
    auto up = [&] { project<kLent>(*up_, a, u_.view()); };
    if (gate_) {
      g_.resize(n, h);
      // gate and up are independent (own parameters and outputs): run them concurrently.
      tbb::parallel_invoke(up, [&] { project<kLent>(*gate_, a, g_.view()); });
      by_rows(n, [&](std::size_t i, std::size_t m) {
        kernels::swiglu_forward(g_.view().row_range(i, m), u_.view().row_range(i, m),
                                h_.view().row_range(i, m));
      });
    } else {
      up();
      by_rows(n, [&](std::size_t i, std::size_t m) {
        relu2_forward<float>(u_.view().row_range(i, m), h_.view().row_range(i, m));
      });
    }
    detail::forward_borrowed(*down_, h_.view(), y);  // h_ is ours
  }

  // f(first, count) over blocks of rows, in parallel: element-wise work, so the result does not
  // depend on the thread count (the activations are a large serial share otherwise).
  template <class F>
  static void by_rows(std::size_t n, F&& f) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, 64),
                      [&](const tbb::blocked_range<std::size_t>& b) { f(b.begin(), b.size()); });
  }
  static Config checked(Config cfg, const std::string& name) {
    require<ShapeError>(cfg.d_model > 0 && cfg.hidden > 0, "FfnBranch: config '", name,
                        "' needs d_model > 0 and hidden > 0, got ", cfg.d_model, " and ",
                        cfg.hidden);
    return cfg;
  }

  Config cfg_;
  std::optional<Proj> gate_, up_, down_;
  Matrix<float> g_, u_, h_, dh_, dg_, du_, da_part_;
  typename detail::shared_input_of<Proj>::type shared_;
};

/// The dense pre-norm FFN: y = FfnBranch(RMSNorm(x)); the residual is the caller's.
template <Projection Proj>
class Ffn {
 public:
  using Config = typename FfnBranch<Proj>::Config;

  /// Registers "<name>.norm.gain", then the branch's "<name>.{gate,up,down}.*".
  Ffn(ParameterStore& store, const std::string& name, Config cfg)
      : norm_(store, detail::param_name(name, "norm"), RMSNorm::Config{cfg.d_model}),
        branch_(store, name, cfg) {}

  void init(Rng& rng) {
    norm_.init(rng);
    branch_.init(rng);
  }

  /// x [tokens x d_model] -> y [tokens x d_model].
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    const std::size_t d = branch_.config().d_model;
    detail::check_forward_io(x, y, d, d, "Ffn::forward");
    detail::copy_into(x, x_);  // x is the caller's; the norm's backward reads this copy
    run(x_.view(), y);
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, BorrowedInput) {
    const std::size_t d = branch_.config().d_model;
    detail::check_forward_shapes(x, y, d, d, "Ffn::forward");
    run(x, y);
  }

  /// dy [tokens x d_model] -> dx (overwritten; empty view skips it); parameter gradients +=.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    const std::size_t d = branch_.config().d_model;
    detail::check_backward_io(dy, dx, a_.rows(), d, d, "Ffn::backward");
    da_.resize(dy.rows, d);
    branch_.backward(dy, da_.view());
    norm_.backward(da_.view(), dx);
  }

  std::size_t in_features() const { return branch_.config().d_model; }
  std::size_t out_features() const { return branch_.config().d_model; }
  const Config& config() const { return branch_.config(); }
  const RMSNorm& norm() const { return norm_; }
  const FfnBranch<Proj>& branch() const { return branch_; }

 private:
  void run(MatrixView<const float> x, MatrixView<float> y) {  // x lent to the norm
    a_.resize(x.rows, branch_.config().d_model);
    norm_.forward(x, a_.view(), borrowed_input);
    branch_.forward(a_.view(), y, borrowed_input);  // a_ is ours
  }

  RMSNorm norm_;
  FfnBranch<Proj> branch_;
  Matrix<float> x_, a_, da_;  // x_: copy of a non-lent input
};

}  // namespace pquant
