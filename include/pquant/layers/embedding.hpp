// Embedding: token ids -> rows of a full-precision table (embeddings stay FP: docs/method.md
// section 3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

/// Token ids are std::int32_t throughout pquant/layers (byte-level vocabularies and up).
using TokenId = std::int32_t;

class Embedding {
 public:
  struct Config {
    std::size_t vocab = 0;
    std::size_t features = 0;
    double init_std = 0.02;  // table ~ N(0, init_std^2); 0: N(0, 1) (one-hot fan-in 1)
  };

  /// Registers "<name>.table" [vocab x features] (ParamRole::kEmbedding).
  Embedding(ParameterStore& store, std::string name, Config cfg) : store_(&store), cfg_(cfg) {
    require<ShapeError>(cfg.vocab > 0 && cfg.features > 0, "Embedding: config '", name,
                        "' needs vocab > 0 and features > 0, got ", cfg.vocab, " and ",
                        cfg.features);
    table_ = store.add(detail::param_name(name, "table"), cfg.vocab, cfg.features,
                       ParamRole::kEmbedding);
  }

  void init(Rng& rng) {
    init::normal(store_->value(table_), rng, cfg_.init_std == 0.0 ? 1.0 : cfg_.init_std);
  }

  /// tokens [n] -> y [n x features]: y[i] = table[tokens[i]]. Ids outside [0, vocab) are a
  /// ValueError. Caches the ids.
  void forward(std::span<const TokenId> tokens, MatrixView<float> y) {
    require<ShapeError>(!tokens.empty(), "Embedding::forward: argument 'tokens' must be non-empty");
    check::shape(y, tokens.size(), cfg_.features, "Embedding::forward", "y");
    for (std::size_t i = 0; i < tokens.size(); ++i)
      require<ValueError>(tokens[i] >= 0 && static_cast<std::size_t>(tokens[i]) < cfg_.vocab,
                          "Embedding::forward: argument 'tokens' must be in [0, ", cfg_.vocab,
                          "), got ", tokens[i], " at ", i);
    tokens_.assign(tokens.begin(), tokens.end());
    const MatrixView<const float> t = store_->value(table_);
    for (std::size_t i = 0; i < tokens.size(); ++i)
      for (std::size_t c = 0; c < cfg_.features; ++c)
        y(i, c) = t(static_cast<std::size_t>(tokens[i]), c);
  }

  /// dy [n x features]: table gradient rows += dy rows (repeated ids accumulate). No input grad.
  void backward(MatrixView<const float> dy) {
    require<ValueError>(!tokens_.empty(), "Embedding::backward: called before forward");
    check::shape(dy, tokens_.size(), cfg_.features, "Embedding::backward", "dy");
    MatrixView<float> g = store_->grad(table_);
    for (std::size_t i = 0; i < tokens_.size(); ++i)
      for (std::size_t c = 0; c < cfg_.features; ++c)
        g(static_cast<std::size_t>(tokens_[i]), c) += dy(i, c);
  }

  std::size_t vocab() const { return cfg_.vocab; }
  std::size_t features() const { return cfg_.features; }
  const Config& config() const { return cfg_; }
  ParamId table_id() const { return table_; }

 private:
  ParameterStore* store_;
  Config cfg_;
  ParamId table_;
  std::vector<TokenId> tokens_;
};

}  // namespace pquant
