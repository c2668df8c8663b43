// DecoderModel<Variant>: a byte-level (or any-vocabulary) decoder-only transformer.
//
//   tokens -> Embedding (FP) -> L x TransformerBlock<Variant> -> RMSNorm -> Linear head (FP) ->
//   logits
// Embeddings and the output head stay full precision in every variant (docs/method.md section 3).
// All parameters live in the model's one ParameterStore; initialisation is deterministic by seed
// (construction order = registration order = initialisation order).
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/layers/cross_entropy.hpp"
#include "pquant/layers/embedding.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/loss_report.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/transformer_block.hpp"
#include "pquant/model/variant.hpp"

namespace pquant {

/// Per-layer quantities worth watching during training (empty when the variant has none).
struct ModelMetrics {
  std::vector<float> alpha;                       // decoupled FFN: INT8 branch scale per layer
  std::vector<float> beta;                        // decoupled FFN: 1-bit branch scale per layer
  std::vector<std::vector<double>> router_usage;  // tokens routed to each expert per layer
};

template <ModelVariant V>
class DecoderModel {
 public:
  using variant = V;
  using Block = TransformerBlock<V>;

  DecoderModel(const ModelConfig& config, std::uint64_t seed) : cfg_(configured(config)) {
    const ModelConfig& cfg = cfg_;
    embed_ = std::make_unique<Embedding>(
        store_, "embed",
        Embedding::Config{cfg.vocab, cfg.d_model,
                          cfg.embed_std >= 0 ? cfg.embed_std : cfg.init_std});
    for (std::size_t l = 0; l < cfg.layers; ++l)
      blocks_.push_back(std::make_unique<Block>(store_, "blocks." + std::to_string(l), cfg_));
    final_norm_ = std::make_unique<RMSNorm>(store_, "final_norm", RMSNorm::Config{cfg.d_model});
    head_ = std::make_unique<Linear>(store_, "head",
                                     Linear::Config{cfg.d_model, cfg.vocab, false, cfg.init_std});
    Rng rng(seed);
    embed_->init(rng);
    for (auto& b : blocks_) b->init(rng);
    final_norm_->init(rng);
    head_->init(rng);
  }
  DecoderModel(const DecoderModel&) = delete;
  DecoderModel& operator=(const DecoderModel&) = delete;

  static constexpr std::string_view variant_name() { return V::kName; }
  const ModelConfig& config() const { return cfg_; }
  ParameterStore& store() { return store_; }
  const ParameterStore& store() const { return store_; }
  Block& block(std::size_t l) { return *blocks_.at(l); }
  const Block& block(std::size_t l) const { return *blocks_.at(l); }

  /// Every trainable scalar.
  std::size_t parameter_count() const { return store_.parameter_count(); }
  /// Parameters that touch one token: all but the experts the router did not pick (a top-1
  /// mixture of N experts uses 1 of them per token).
  std::size_t active_parameter_count() const {
    // Experts are registered as "<ffn>.experts.<e>.*"; all but expert 0 count as inactive
    // (experts of one layer have the same size, so this is exact for top-1 routing).
    std::size_t inactive = 0;
    for (const ParamInfo& p : store_.infos()) {
      const std::size_t at = p.name.find(".experts.");
      if (at != std::string::npos && p.name.compare(at + 9, 2, "0.") != 0) inactive += p.size();
    }
    return parameter_count() - inactive;
  }

  /// tokens [B*T] -> logits [B*T x vocab] (rows of sequence b at [b*T, (b+1)*T)).
  void forward(std::span<const TokenId> tokens, SequenceShape shape, MatrixView<float> logits) {
    require<ShapeError>(shape.batch > 0 && shape.seq_len > 0 && tokens.size() == shape.tokens(),
                        "DecoderModel::forward: argument 'tokens' must have batch * seq_len = ",
                        shape.tokens(), " elements, got ", tokens.size());
    require<ShapeError>(shape.seq_len <= cfg_.context, "DecoderModel::forward: seq_len ",
                        shape.seq_len, " exceeds the model's context ", cfg_.context);
    const std::size_t n = tokens.size(), d = cfg_.d_model;
    acts_.resize(blocks_.size() + 1);
    for (auto& a : acts_) a.resize(n, d);
    normed_.resize(n, d);
    embed_->forward(tokens, acts_[0].view());
    // The activations are the model's own and stay unchanged until backward: every layer gets
    // them lent (no copies, no NaN/Inf scans inside the model; the loss is checked).
    for (std::size_t l = 0; l < blocks_.size(); ++l)
      detail::forward_borrowed(*blocks_[l], acts_[l].view(), acts_[l + 1].view(), shape);
    detail::forward_borrowed(*final_norm_, acts_.back().view(), normed_.view());
    detail::forward_borrowed(*head_, normed_.view(), logits);
  }

  /// Forward, mean cross-entropy over every target, backward: gradients accumulate in store().
  LossReport forward_backward(std::span<const TokenId> inputs,
                              std::span<const std::int32_t> targets, SequenceShape shape) {
    const std::size_t n = inputs.size();
    logits_.resize(n, cfg_.vocab);
    forward(inputs, shape, logits_.view());
    dlogits_.resize(n, cfg_.vocab);
    const CrossEntropyResult ce =
        softmax_cross_entropy<float>(logits_.view(), targets, dlogits_.view());
    LossReport report{ce.mean(), 0.0};
    for (auto& b : blocks_) {
      if constexpr (requires { b->ffn().aux_loss(); }) report.aux_loss += b->ffn().aux_loss();
    }
    grad_a_.resize(n, cfg_.d_model);
    grad_b_.resize(n, cfg_.d_model);
    head_->backward(dlogits_.view(), grad_a_.view());
    final_norm_->backward(grad_a_.view(), grad_b_.view());
    for (std::size_t l = blocks_.size(); l-- > 0;) {
      blocks_[l]->backward(grad_b_.view(), grad_a_.view());
      std::swap(grad_a_, grad_b_);
    }
    embed_->backward(grad_b_.view());
    return report;
  }

  /// Cross-entropy sum and count over the targets (no gradients).
  CrossEntropyResult evaluate(std::span<const TokenId> inputs,
                              std::span<const std::int32_t> targets, SequenceShape shape) {
    logits_.resize(inputs.size(), cfg_.vocab);
    forward(inputs, shape, logits_.view());
    return softmax_cross_entropy<float>(logits_.view(), targets, MatrixView<float>{});
  }

  /// alpha/beta per layer and tokens per expert since the previous call (training and evaluation
  /// forwards alike), where the variant's FFN has them. Resets the usage counters.
  ModelMetrics metrics() {
    ModelMetrics m;
    for (auto& b : blocks_) {
      auto& f = b->ffn();
      if constexpr (requires {
                      f.alpha_value();
                      f.beta_value();
                    }) {
        m.alpha.push_back(f.alpha_value());
        m.beta.push_back(f.beta_value());
      }
      if constexpr (requires {
                      f.total_usage();
                      f.reset_usage();
                    }) {
        const auto usage = f.total_usage();
        m.router_usage.emplace_back(usage.begin(), usage.end());
        f.reset_usage();
      }
    }
    return m;
  }

  /// The sign codes (W >= mean(W), one byte each) of every 1-bit weight tensor, in store order:
  /// what FlipRatio compares between reports. Empty when the variant has no 1-bit weights.
  void one_bit_codes(std::vector<std::uint8_t>& codes) const {
    codes.clear();
    if constexpr (requires(std::string_view s) {
                    { V::one_bit(s) } -> std::convertible_to<bool>;
                  }) {
      for (const ParamInfo& p : store_.infos()) {
        if (p.role != ParamRole::kWeight || !V::one_bit(p.name)) continue;
        const float* w = store_.values().data() + p.offset;
        double mean = 0;
        for (std::size_t i = 0; i < p.size(); ++i) mean += w[i];
        const auto mu = static_cast<float>(mean / static_cast<double>(p.size()));
        for (std::size_t i = 0; i < p.size(); ++i) codes.push_back(w[i] >= mu ? 1 : 0);
      }
    }
  }

 private:
  // The variant may fill in or check config values (PQuant<N, r>), then the sizes are validated.
  static ModelConfig configured(ModelConfig cfg) {
    if constexpr (requires {
                    { V::configure(cfg) } -> std::same_as<ModelConfig>;
                  })
      cfg = V::configure(cfg);
    cfg.validate("DecoderModel");
    return cfg;
  }

  ModelConfig cfg_;
  ParameterStore store_;
  std::unique_ptr<Embedding> embed_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<RMSNorm> final_norm_;
  std::unique_ptr<Linear> head_;
  std::vector<Matrix<float>> acts_;
  Matrix<float> normed_, logits_, dlogits_, grad_a_, grad_b_;
};

}  // namespace pquant
