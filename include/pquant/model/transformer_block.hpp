// TransformerBlock<Variant>: pre-norm residual block  h = x + Attention(x),  y = h + Ffn(h).
// The sublayers (and their RMSNorms and quantizers) come from the variant policy.
// ModelConfig::block_norm adds a LLaMA-style block pre-norm in series with the sublayers' own:
// h = x + Attention(RMSNorm_a(x)),  y = h + Ffn(RMSNorm_f(h))  ("<name>.pre_attn.gain",
// "<name>.pre_ffn.gain"). At init (gains 1) the two norms in series equal one; they differ once
// the block gain is no longer uniform. Training only: export_model refuses such blocks.
#pragma once

#include <optional>
#include <string>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/variant.hpp"

namespace pquant {

template <ModelVariant V>
class TransformerBlock {
 public:
  using Attention = typename V::Attention;
  using Ffn = typename V::Ffn;

  /// Registers "<name>.attn.*" and "<name>.ffn.*" (and with block_norm "<name>.pre_attn.gain"
  /// before them, "<name>.pre_ffn.gain" between them).
  TransformerBlock(ParameterStore& store, const std::string& name, const ModelConfig& cfg)
      : pre_attn_(block_norm(cfg, store, name + ".pre_attn")),
        attn_(store, name + ".attn", V::attention_config(cfg)),
        pre_ffn_(block_norm(cfg, store, name + ".pre_ffn")),
        ffn_(store, name + ".ffn", V::ffn_config(cfg)) {}

  void init(Rng& rng) {
    if (pre_attn_) pre_attn_->init(rng);
    attn_.init(rng);
    if (pre_ffn_) pre_ffn_->init(rng);
    ffn_.init(rng);
  }

  /// x [tokens x d] -> y [tokens x d] (y must not alias x).
  void forward(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape) {
    attention_of(x, shape);  // copies x where it is kept (the caller's)
    residual_ffn(x, y);
  }
  /// The same with x lent by the caller (BorrowedInput: the model's activations).
  void forward(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape,
               BorrowedInput lent) {
    attention_of(x, shape, lent);
    residual_ffn(x, y);
  }

  /// dy [tokens x d] -> dx [tokens x d] (overwritten, must not alias dy); parameter grads +=.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    dh_.resize(dy.rows, dy.cols);
    if (pre_ffn_) {
      dnorm_.resize(dy.rows, dy.cols);
      ffn_.backward(dy, dnorm_.view());
      pre_ffn_->backward(dnorm_.view(), dh_.view());
    } else {
      ffn_.backward(dy, dh_.view());
    }
    detail::for_row_blocks(dy.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < dy.cols; ++c) dh_(i, c) += dy(i, c);  // residual
    });
    if (pre_attn_) {
      dnorm_.resize(dy.rows, dy.cols);
      attn_.backward(dh_.view(), dnorm_.view());
      pre_attn_->backward(dnorm_.view(), dx);
    } else {
      attn_.backward(dh_.view(), dx);
    }
    detail::for_row_blocks(dy.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < dy.cols; ++c) dx(i, c) += dh_(i, c);  // residual
    });
  }

  Attention& attention() { return attn_; }
  const Attention& attention() const { return attn_; }
  Ffn& ffn() { return ffn_; }
  const Ffn& ffn() const { return ffn_; }
  /// Whether the block has its own pre-norms before the sublayers (ModelConfig::block_norm).
  bool has_block_norm() const { return pre_attn_.has_value(); }

 private:
  static std::optional<RMSNorm> block_norm(const ModelConfig& cfg, ParameterStore& store,
                                           const std::string& name) {
    if (!cfg.block_norm) return std::nullopt;
    return std::optional<RMSNorm>(std::in_place, store, name, RMSNorm::Config{cfg.d_model});
  }

  // a_ = attention(pre_attn(x)) or attention(x); `lent` (none or BorrowedInput) is whether x
  // may be kept by reference instead of copied.
  template <class... Lent>
  void attention_of(MatrixView<const float> x, SequenceShape shape, Lent... lent) {
    a_.resize(x.rows, x.cols);
    if (pre_attn_) {
      u_.resize(x.rows, x.cols);
      pre_attn_->forward(x, u_.view(), lent...);
      detail::forward_borrowed(attn_, u_.view(), a_.view(), shape);  // u_ is ours
    } else if constexpr (sizeof...(Lent) == 0) {
      attn_.forward(x, a_.view(), shape);
    } else {
      detail::forward_borrowed(attn_, x, a_.view(), shape);
    }
  }

  // h = x + attention(x); y = h + ffn(h).
  void residual_ffn(MatrixView<const float> x, MatrixView<float> y) {
    h_.resize(x.rows, x.cols);
    detail::for_row_blocks(x.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < x.cols; ++c) h_(i, c) = x(i, c) + a_(i, c);
    });
    if (pre_ffn_) {
      v_.resize(x.rows, x.cols);
      pre_ffn_->forward(h_.view(), v_.view(), borrowed_input);  // h_ is ours
      detail::forward_borrowed(ffn_, v_.view(), y);
    } else {
      detail::forward_borrowed(ffn_, h_.view(), y);  // h_ is ours
    }
    detail::for_row_blocks(x.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < x.cols; ++c) y(i, c) += h_(i, c);
    });
  }

  std::optional<RMSNorm> pre_attn_;
  Attention attn_;
  std::optional<RMSNorm> pre_ffn_;
  Ffn ffn_;
  Matrix<float> a_, h_, dh_;
  Matrix<float> u_, v_, dnorm_;  // block_norm: the sublayers' normalized inputs, their gradient
};

}  // namespace pquant
