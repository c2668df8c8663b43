// ProductObserver: a read-only look at the operands of every projection's product Y = X W^T, for
// analysis tools (pquant/analysis: input Hessians and weight sensitivity) that must see what the
// trained model computes without copying its forward code.
//
// A ParameterStore holds at most one observer (set_observer); every projection of the model
// (Linear, NormedLinear, BitLinear) calls it once per forward, after its product, when one is set.
// Unset, the cost is one pointer test per projection and forward.
#pragma once

#include "pquant/core/matrix.hpp"

namespace pquant {

struct ParamId;

class ProductObserver {
 public:
  /// After y = x w^T of the projection whose latent weight tensor is `weight`:
  ///   x [tokens x in]  the operand the weights multiply (BitLinear: X_q = Q(RMSNorm(X)), the
  ///                    quantized activations; NormedLinear: RMSNorm(X); Linear: X);
  ///   w [out x in]     the effective weights of the product (BitLinear: W_q, the dequantized
  ///                    codes; full precision: the weights themselves).
  /// Both views are valid only during the call. Projections of one model run concurrently (Q/K/V,
  /// gate/up, experts), so calls for different weights may overlap in time; calls for one weight
  /// never do.
  virtual void on_product(ParamId weight, MatrixView<const float> x, MatrixView<const float> w) = 0;

 protected:
  ~ProductObserver() = default;
};

}  // namespace pquant
