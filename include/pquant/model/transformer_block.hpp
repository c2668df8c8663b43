// TransformerBlock<Variant>: pre-norm residual block  h = x + Attention(x),  y = h + Ffn(h).
// The sublayers (and their RMSNorms and quantizers) come from the variant policy.
#pragma once

#include <string>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/variant.hpp"

namespace pquant {

template <ModelVariant V>
class TransformerBlock {
 public:
  using Attention = typename V::Attention;
  using Ffn = typename V::Ffn;

  /// Registers "<name>.attn.*" and "<name>.ffn.*".
  TransformerBlock(ParameterStore& store, const std::string& name, const ModelConfig& cfg)
      : attn_(store, name + ".attn", V::attention_config(cfg)),
        ffn_(store, name + ".ffn", V::ffn_config(cfg)) {}

  void init(Rng& rng) {
    attn_.init(rng);
    ffn_.init(rng);
  }

  /// x [tokens x d] -> y [tokens x d] (y must not alias x).
  void forward(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape) {
    detail::ensure_shape(a_, x.rows, x.cols);
    attn_.forward(x, a_.view(), shape);
    residual_ffn(x, y);
  }
  /// The same with x lent by the caller (BorrowedInput: the model's activations).
  void forward(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape, BorrowedInput) {
    detail::ensure_shape(a_, x.rows, x.cols);
    detail::forward_borrowed(attn_, x, a_.view(), shape);
    residual_ffn(x, y);
  }

  /// dy [tokens x d] -> dx [tokens x d] (overwritten, must not alias dy); parameter grads +=.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    detail::ensure_shape(dh_, dy.rows, dy.cols);
    ffn_.backward(dy, dh_.view());
    detail::for_row_blocks(dy.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < dy.cols; ++c) dh_(i, c) += dy(i, c);  // residual
    });
    attn_.backward(dh_.view(), dx);
    detail::for_row_blocks(dy.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < dy.cols; ++c) dx(i, c) += dh_(i, c);  // residual
    });
  }

  Attention& attention() { return attn_; }
  const Attention& attention() const { return attn_; }
  Ffn& ffn() { return ffn_; }
  const Ffn& ffn() const { return ffn_; }

 private:
  // h = x + attention(x); y = h + ffn(h).
  void residual_ffn(MatrixView<const float> x, MatrixView<float> y) {
    detail::ensure_shape(h_, x.rows, x.cols);
    detail::for_row_blocks(x.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < x.cols; ++c) h_(i, c) = x(i, c) + a_(i, c);
    });
    detail::forward_borrowed(ffn_, h_.view(), y);  // h_ is ours
    detail::for_row_blocks(x.rows, [&](std::size_t i0, std::size_t rows) {
      for (std::size_t i = i0; i < i0 + rows; ++i)
        for (std::size_t c = 0; c < x.cols; ++c) y(i, c) += h_(i, c);
    });
  }

  Attention attn_;
  Ffn ffn_;
  Matrix<float> a_, h_, dh_;
};

}  // namespace pquant
