// Top1Router: FP32 linear router d -> N, softmax, top-1 expert per token (docs/method.md
// section 3).
//
//   logits = a Wr^T,  p = softmax(logits) (max subtracted),  e_t = argmax_j p_tj (ties -> lowest j)
// The owner scales expert e_t's output by p_{t,e_t}, so the router gets a gradient through it.
// Optional Switch-Transformer load-balancing loss, added to the training loss by the caller:
//   L_aux = coef * N * sum_j f_j * P_j,  f_j = (tokens routed to j) / n,  P_j = mean_t p_tj
// f_j is piecewise constant (no gradient); dL_aux/dp_tj = coef * N * f_j / n. backward() adds it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

/// One token's router logits [experts] -> softmax probabilities in place (max subtracted); returns
/// the top-1 expert (the lowest index among equal probabilities). Shared by Top1Router and the
/// inference engine.
inline std::uint32_t top1_route(std::span<float> p) {
  const std::size_t e = p.size();
  float mx = p[0];
  for (std::size_t j = 1; j < e; ++j) mx = std::max(mx, p[j]);
  float z = 0;
  for (std::size_t j = 0; j < e; ++j) z += (p[j] = std::exp(p[j] - mx));
  std::uint32_t best = 0;
  for (std::size_t j = 0; j < e; ++j) {
    p[j] /= z;
    if (p[j] > p[best]) best = static_cast<std::uint32_t>(j);  // strict: ties keep the lowest
  }
  return best;
}

class Top1Router {
 public:
  struct Config {
    std::size_t d_model = 0;
    std::size_t experts = 0;
    float load_balance_coef = 0.01f;  // 0 disables the auxiliary loss
    double init_std = 0.02;
  };

  /// Registers "<name>.weight" [experts x d_model] (FP32, ParamRole::kWeight).
  Top1Router(ParameterStore& store, const std::string& name, Config cfg)
      : cfg_(checked(cfg, name)),
        linear_(store, name, {cfg.d_model, cfg.experts, false, cfg.init_std}),
        usage_(cfg.experts, 0),
        total_usage_(cfg.experts, 0) {}

  void init(Rng& rng) { linear_.init(rng); }

  /// a [tokens x d_model]: computes probabilities, choices, usage and the auxiliary loss.
  void forward(MatrixView<const float> a) {
    const std::size_t n = a.rows, e = cfg_.experts;
    probs_.resize(n, e);
    linear_.forward(a, probs_.view());
    choice_.assign(n, 0);
    std::fill(usage_.begin(), usage_.end(), 0);
    for (std::size_t t = 0; t < n; ++t) {
      const std::uint32_t best = top1_route(probs_.row(t));
      choice_[t] = best;
      ++usage_[best];
    }
    for (std::size_t j = 0; j < e; ++j) total_usage_[j] += usage_[j];
    aux_loss_ = 0;
    if (cfg_.load_balance_coef > 0) {
      for (std::size_t j = 0; j < e; ++j) {
        double mean_p = 0;
        for (std::size_t t = 0; t < n; ++t) mean_p += probs_(t, j);
        aux_loss_ += static_cast<double>(usage_[j]) / static_cast<double>(n) * mean_p /
                     static_cast<double>(n);
      }
      aux_loss_ *= static_cast<double>(cfg_.load_balance_coef) * static_cast<double>(e);
    }
  }

  /// dprob [tokens]: dL/dp_{t,e_t} of the chosen probability; the auxiliary loss's gradient is
  /// added here. -> da [tokens x d_model] (overwritten; empty view skips it); dWr +=.
  void backward(std::span<const float> dprob, MatrixView<float> da) {
    const std::size_t n = choice_.size(), e = cfg_.experts;
    require<ValueError>(n > 0, "Top1Router::backward: called before forward");
    check::size(dprob, n, "Top1Router::backward", "dprob");
    dlogits_.resize(n, e);
    std::vector<float> aux(e, 0.0f);
    if (cfg_.load_balance_coef > 0)
      for (std::size_t j = 0; j < e; ++j)
        aux[j] = static_cast<float>(static_cast<double>(cfg_.load_balance_coef) *
                                    static_cast<double>(e) * static_cast<double>(usage_[j]) /
                                    (static_cast<double>(n) * static_cast<double>(n)));
    for (std::size_t t = 0; t < n; ++t) {
      // dlogit_j = p_j * (dp_j - sum_k p_k dp_k)
      float dot = 0;
      for (std::size_t j = 0; j < e; ++j) {
        const float dp = aux[j] + (j == choice_[t] ? dprob[t] : 0.0f);
        dlogits_(t, j) = dp;
        dot += probs_(t, j) * dp;
      }
      for (std::size_t j = 0; j < e; ++j) dlogits_(t, j) = probs_(t, j) * (dlogits_(t, j) - dot);
    }
    linear_.backward(dlogits_.view(), da);
  }

  std::size_t experts() const { return cfg_.experts; }
  const Config& config() const { return cfg_; }
  ParamId weight_id() const { return linear_.weight_id(); }
  /// Of the last forward: softmax probabilities [tokens x experts], chosen expert per token, its
  /// probability, tokens per expert, and the (coefficient-scaled) auxiliary loss.
  MatrixView<const float> probabilities() const { return probs_.view(); }
  std::span<const std::uint32_t> choices() const { return choice_; }
  float chosen_probability(std::size_t t) const { return probs_(t, choice_.at(t)); }
  std::span<const std::uint64_t> usage() const { return usage_; }
  double aux_loss() const { return aux_loss_; }
  /// Tokens per expert summed over every forward since construction or reset_usage().
  std::span<const std::uint64_t> total_usage() const { return total_usage_; }
  void reset_usage() { std::fill(total_usage_.begin(), total_usage_.end(), 0); }

 private:
  static Config checked(Config cfg, const std::string& name) {
    require<ShapeError>(cfg.d_model > 0 && cfg.experts > 0, "Top1Router: config '", name,
                        "' needs d_model > 0 and experts > 0");
    require<ValueError>(cfg.load_balance_coef >= 0 && std::isfinite(cfg.load_balance_coef),
                        "Top1Router: config '", name,
                        "' needs a finite load_balance_coef >= 0, got ", cfg.load_balance_coef);
    return cfg;
  }

  Config cfg_;
  Linear linear_;
  Matrix<float> probs_, dlogits_;
  std::vector<std::uint32_t> choice_;
  std::vector<std::uint64_t> usage_, total_usage_;
  double aux_loss_ = 0;
};

}  // namespace pquant
