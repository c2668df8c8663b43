// DecoupledFfn: pQuant's FFN (docs/method.md section 3).
//
//   a = RMSNorm(x)                                      ONE norm, shared by every branch
//   Y = alpha * p_t * FFN_int8^(e_t)(a) + beta * FFN_int1(a)
// FFN_int8^(e) are N experts of hidden width r (Int8Proj projections, INT8 weights and
// activations by default); FFN_int1 has hidden width D_ff - r (Int1Proj, 1-bit by default).
// With N > 1 a Top1Router picks e_t and p_t = its softmax probability (Switch convention); with
// N = 1 there is no router and p_t = 1. alpha, beta are learnable scalars (ParamRole::kScalar,
// init 1.0 and 1.0; the paper's 2.0 and 0.2 through Config; Config::learn_scales = false keeps
// them at their init, the paper's feature scaling ablation: they get no gradient, so AdamW, which
// does not decay scalars, never moves them). The optional load-balancing loss (N > 1) is
// aux_loss(); its gradient is included by backward(), so the caller adds aux_loss() to the
// reported training loss.
// Experts that receive no token in a forward are skipped (their gradients stay untouched).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/ffn.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/layers/top1_router.hpp"

namespace pquant {

/// Tokens of each expert, in token order: rows[e] = {t : choice[t] == e} (rows resized to
/// `experts`; clear() keeps each list's capacity). Shared by DecoupledFfn and the inference engine.
inline void group_by_expert(std::span<const std::uint32_t> choice, std::size_t experts,
                            std::vector<std::vector<std::size_t>>& rows) {
  rows.resize(experts);
  for (auto& r : rows) r.clear();
  for (std::size_t t = 0; t < choice.size(); ++t) rows[choice[t]].push_back(t);
}

/// An expert's output rows (out row i belongs to token rows[i]) scaled by the token's router
/// probability into y8: y8[rows[i]] = prob[rows[i]] * out[i].
inline void scatter_expert_output(std::span<const std::size_t> rows, std::span<const float> prob,
                                  MatrixView<const float> out, MatrixView<float> y8) {
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const float p = prob[rows[i]];
    float* dst = &y8(rows[i], 0);
    for (std::size_t c = 0; c < out.cols; ++c) dst[c] = p * out(i, c);
  }
}

/// Rows [t0, t0 + n) of the decoupled FFN's output: y = alpha * y8 + beta * y1.
inline void decoupled_combine(float alpha, MatrixView<const float> y8, float beta,
                              MatrixView<const float> y1, MatrixView<float> y, std::size_t t0,
                              std::size_t n) {
  for (std::size_t t = t0; t < t0 + n; ++t)
    for (std::size_t c = 0; c < y.cols; ++c) y(t, c) = alpha * y8(t, c) + beta * y1(t, c);
}

template <Projection Int8Proj = Int8BitLinear, Projection Int1Proj = SignBitLinear>
class DecoupledFfn {
 public:
  struct Config {
    std::size_t d_model = 0;
    std::size_t d_ff = 0;     // total hidden width: r (INT8 branch) + d_ff - r (1-bit branch)
    std::size_t r = 0;        // INT8 hidden width per expert, 0 < r < d_ff
    std::size_t experts = 1;  // N in 1..; N > 1 adds the router
    FfnActivation activation = FfnActivation::kSwiGLU;
    float alpha_init = 1.0f;  // the paper's 2.0 / 0.2 is an option (docs/method.md section 3)
    float beta_init = 1.0f;
    bool learn_scales = true;  // false: alpha, beta stay at their init (no gradient)
    float load_balance_coef = 0.01f;  // 0 disables the auxiliary loss
    double init_std = 0.02;
    double out_init_std = 0.02;
  };

  /// Registers "<name>.norm.gain", "<name>.alpha", "<name>.beta", "<name>.router.weight" (N > 1),
  /// "<name>.experts.<e>.{gate,up,down}.*" and "<name>.int1.{gate,up,down}.*".
  DecoupledFfn(ParameterStore& store, const std::string& name, Config cfg)
      : store_(&store),
        cfg_(checked(cfg, name)),
        norm_(store, detail::param_name(name, "norm"), RMSNorm::Config{cfg.d_model}) {
    alpha_ = store.add(detail::param_name(name, "alpha"), 1, 1, ParamRole::kScalar);
    beta_ = store.add(detail::param_name(name, "beta"), 1, 1, ParamRole::kScalar);
    if (cfg.experts > 1)
      router_.emplace(
          store, detail::param_name(name, "router"),
          Top1Router::Config{cfg.d_model, cfg.experts, cfg.load_balance_coef, cfg.init_std});
    for (std::size_t e = 0; e < cfg.experts; ++e)
      experts_.push_back(std::make_unique<FfnBranch<Int8Proj>>(
          store, name + ".experts." + std::to_string(e),
          typename FfnBranch<Int8Proj>::Config{cfg.d_model, cfg.r, cfg.activation, cfg.init_std,
                                               cfg.out_init_std}));
    int1_.emplace(
        store, detail::param_name(name, "int1"),
        typename FfnBranch<Int1Proj>::Config{cfg.d_model, cfg.d_ff - cfg.r, cfg.activation,
                                             cfg.init_std, cfg.out_init_std});
    set_scalars();
  }

  void init(Rng& rng) {
    norm_.init(rng);
    set_scalars();
    if (router_) router_->init(rng);
    for (auto& e : experts_) e->init(rng);
    int1_->init(rng);
  }

  /// x [tokens x d_model] -> y [tokens x d_model] (the residual is the caller's).
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    detail::check_forward_io(x, y, cfg_.d_model, cfg_.d_model, "DecoupledFfn::forward");
    detail::copy_into(x, x_);  // x is the caller's; the norm's backward reads this copy
    run(x_.view(), y);
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, BorrowedInput) {
    detail::check_forward_shapes(x, y, cfg_.d_model, cfg_.d_model, "DecoupledFfn::forward");
    run(x, y);
  }

  /// dy [tokens x d_model] -> dx (overwritten; empty view skips it); parameter gradients += (incl.
  /// alpha, beta, router and the load-balancing loss's gradient).
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    const std::size_t n = dy.rows, d = cfg_.d_model;
    detail::check_backward_io(dy, dx, a_.rows(), d, d, "DecoupledFfn::backward");
    const float alpha = alpha_value(), beta = beta_value();
    // A sequential sum in token order: the same rounding for any thread count.
    if (cfg_.learn_scales) {
      double dalpha = 0, dbeta = 0;
      for (std::size_t t = 0; t < n; ++t)
        for (std::size_t c = 0; c < d; ++c) {
          dalpha += static_cast<double>(dy(t, c)) * y8_(t, c);
          dbeta += static_cast<double>(dy(t, c)) * y1_(t, c);
        }
      store_->grad(alpha_)(0, 0) += static_cast<float>(dalpha);
      store_->grad(beta_)(0, 0) += static_cast<float>(dbeta);
    }
    for (Matrix<float>* m : {&dbranch_, &da_, &dexpert_out_, &dexpert_in_})
      m->resize(n, d);
    // 1-bit branch: dY1 = beta * dY.
    for_tokens(n, [&](std::size_t t) {
      for (std::size_t c = 0; c < d; ++c) dbranch_(t, c) = beta * dy(t, c);
    });
    // Experts: dOut_e = alpha * p_t * dY; dp_t = alpha * <dY_t, Out_e,t>. Concurrent with each
    // other and with the 1-bit branch; each expert writes its own packed rows of dexpert_in_ and
    // dprob_ of its own tokens (disjoint), the 1-bit branch writes da_.
    dprob_.assign(n, 0.0f);
    auto run_expert = [&](std::size_t e) {
      const std::vector<std::size_t>& rows = rows_[e];
      if (rows.empty()) return;
      const MatrixView<float> dout = dexpert_out_.view().row_range(first_[e], rows.size());
      const MatrixView<float> din = dexpert_in_.view().row_range(first_[e], rows.size());
      const MatrixView<float> out = expert_out_.view().row_range(first_[e], rows.size());
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const std::size_t t = rows[i];
        float dot = 0;
        for (std::size_t c = 0; c < d; ++c) {
          dout(i, c) = alpha * prob_[t] * dy(t, c);
          dot += dy(t, c) * out(i, c);
        }
        dprob_[t] = alpha * dot;
      }
      experts_[e]->backward(dout, din);
    };
    tbb::parallel_invoke([&] { int1_->backward(dbranch_.view(), da_.view()); },
                         [&] { tbb::parallel_for(std::size_t{0}, cfg_.experts, run_expert); });
    // dA_t = dA1_t + dA8_t: every token has exactly one expert, so one addition per element in a
    // fixed order (1-bit first, then its expert), whatever ran where.
    tbb::parallel_for(std::size_t{0}, cfg_.experts, [&](std::size_t e) {
      const std::vector<std::size_t>& rows = rows_[e];
      for (std::size_t i = 0; i < rows.size(); ++i) {
        float* dst = &da_(rows[i], 0);
        const float* src = &dexpert_in_(first_[e] + i, 0);
        for (std::size_t c = 0; c < d; ++c) dst[c] += src[c];
      }
    });
    if (router_) {
      router_->backward(dprob_, dbranch_.view());
      for_tokens(n, [&](std::size_t t) {
        for (std::size_t c = 0; c < d; ++c) da_(t, c) += dbranch_(t, c);
      });
    }
    norm_.backward(da_.view(), dx);
  }

  std::size_t in_features() const { return cfg_.d_model; }
  std::size_t out_features() const { return cfg_.d_model; }
  const Config& config() const { return cfg_; }
  ParamId alpha_id() const { return alpha_; }
  ParamId beta_id() const { return beta_; }
  float alpha_value() const { return store_->value(alpha_)(0, 0); }
  float beta_value() const { return store_->value(beta_)(0, 0); }
  const RMSNorm& norm() const { return norm_; }
  /// The router (absent when experts == 1).
  const std::optional<Top1Router>& router() const { return router_; }
  const FfnBranch<Int8Proj>& expert(std::size_t e) const { return *experts_.at(e); }
  const FfnBranch<Int1Proj>& int1_branch() const { return *int1_; }
  /// The coefficient-scaled load-balancing loss of the last forward (0 without router/coef).
  double aux_loss() const { return router_ ? router_->aux_loss() : 0.0; }
  /// Tokens routed to each expert in the last forward / since construction or reset_usage().
  std::vector<std::uint64_t> usage() const {
    std::vector<std::uint64_t> u(cfg_.experts, 0);
    for (std::size_t e = 0; e < rows_.size(); ++e) u[e] = rows_[e].size();
    return u;
  }
  std::span<const std::uint64_t> total_usage() const { return total_usage_; }
  void reset_usage() {
    std::fill(total_usage_.begin(), total_usage_.end(), 0);
    if (router_) router_->reset_usage();
  }

 private:
  // x (lent to the norm) -> y; the branches read the layer's own buffers (lent).
  void run(MatrixView<const float> x, MatrixView<float> y) {
    const std::size_t n = x.rows, d = cfg_.d_model;
    for (Matrix<float>* m : {&a_, &y8_, &y1_, &expert_in_, &expert_out_})
      m->resize(n, d);
    norm_.forward(x, a_.view(), borrowed_input);
    // Routing: tokens of each expert, in token order (clear() keeps the capacity: no allocation).
    prob_.assign(n, 1.0f);
    if (router_) {
      router_->forward(a_.view());
      group_by_expert(router_->choices(), cfg_.experts, rows_);
      for (std::size_t t = 0; t < n; ++t) prob_[t] = router_->chosen_probability(t);
    } else {
      rows_.resize(cfg_.experts);
      rows_[0].resize(n);
      for (std::size_t t = 0; t < n; ++t) rows_[0][t] = t;
    }
    // Expert e's tokens are packed in rows [first_[e], first_[e] + |rows_e|) of one n x d buffer.
    first_.resize(cfg_.experts);
    total_usage_.resize(cfg_.experts, 0);
    for (std::size_t e = 0, off = 0; e < cfg_.experts; ++e) {
      first_[e] = off;
      off += rows_[e].size();
      total_usage_[e] += rows_[e].size();
    }
    // Experts are tiny GEMMs (~n/N tokens x d x r): run them concurrently with each other and with
    // the 1-bit branch. Each task touches only its own parameters, its own packed rows and the
    // rows of y8_ of its tokens (disjoint), so the result does not depend on the thread count.
    auto run_expert = [&](std::size_t e) {
      const std::vector<std::size_t>& rows = rows_[e];
      if (rows.empty()) return;
      const MatrixView<float> in = expert_in_.view().row_range(first_[e], rows.size());
      const MatrixView<float> out = expert_out_.view().row_range(first_[e], rows.size());
      for (std::size_t i = 0; i < rows.size(); ++i) std::copy_n(&a_(rows[i], 0), d, &in(i, 0));
      experts_[e]->forward(in, out, borrowed_input);  // rows of expert_in_ (ours)
      scatter_expert_output(rows, prob_, out, y8_.view());
    };
    tbb::parallel_invoke([&] { int1_->forward(a_.view(), y1_.view(), borrowed_input); },
                         [&] { tbb::parallel_for(std::size_t{0}, cfg_.experts, run_expert); });
    const float alpha = alpha_value(), beta = beta_value();
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, 64),
                      [&](const tbb::blocked_range<std::size_t>& b) {
                        decoupled_combine(alpha, y8_.view(), beta, y1_.view(), y, b.begin(),
                                          b.size());
                      });
  }

  static Config checked(Config cfg, const std::string& name) {
    require<ShapeError>(cfg.d_model > 0 && cfg.r > 0 && cfg.r < cfg.d_ff && cfg.experts > 0,
                        "DecoupledFfn: config '", name,
                        "' needs d_model > 0, 0 < r < d_ff and experts > 0, got d_model ",
                        cfg.d_model, ", r ", cfg.r, ", d_ff ", cfg.d_ff, ", experts ", cfg.experts);
    return cfg;
  }
  // f(t) for every token, split over tokens (element-wise work: deterministic).
  template <class F>
  static void for_tokens(std::size_t n, F&& f) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, 64),
                      [&](const tbb::blocked_range<std::size_t>& b) {
                        for (std::size_t t = b.begin(); t != b.end(); ++t) f(t);
                      });
  }
  void set_scalars() {
    store_->value(alpha_)(0, 0) = cfg_.alpha_init;
    store_->value(beta_)(0, 0) = cfg_.beta_init;
  }

  ParameterStore* store_;
  Config cfg_;
  RMSNorm norm_;
  ParamId alpha_, beta_;
  std::optional<Top1Router> router_;
  std::vector<std::unique_ptr<FfnBranch<Int8Proj>>> experts_;
  std::optional<FfnBranch<Int1Proj>> int1_;
  // Caches of the last forward.
  Matrix<float> x_, a_, y8_, y1_;  // x_: copy of a non-lent input
  std::vector<std::vector<std::size_t>> rows_;
  std::vector<float> prob_;
  std::vector<std::size_t> first_;        // first packed row of each expert
  Matrix<float> expert_in_, expert_out_;  // [tokens x d_model], packed by expert
  std::vector<std::uint64_t> total_usage_;
  // Backward scratch.
  Matrix<float> dbranch_, da_, dexpert_out_, dexpert_in_;
  std::vector<float> dprob_;
};

}  // namespace pquant
