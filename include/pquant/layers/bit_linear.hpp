// BitLinear<WeightQuantizer, ActivationQuantizer, SteRule>: the quantization-aware linear layer.
//
// Forward (method.md section 3):  Y = (lambda / g) * (W_q . Q(RMSNorm(X)))
//   a   = RMSNorm(X) with a learnable gain when Config::normalize_input (default), else a = X
//         (composites that feed ONE normalized input to several projections, e.g. Q/K/V or the
//         two branches of the decoupled FFN, own that RMSNorm and pass normalize_input = false);
//   X_q = A::fake_quantize(a)       per-token INT8 absmax: q / g (exact dequantized values);
//   W_q = W::fake_quantize(W)       quantized every forward from the FP32 latent weights;
//   Y   = X_q W_q^T = (lambda / g) * (W_int . q): with INT8 activations and 1-bit, ternary or INT8
//         codes at per-tensor/per-row scales (kIntegerForward) the exact int32 product runs on
//         pquant::kernels' integer GEMM (gemm_int8_values, equal to the W1A8/W2A8/W8A8 kernels)
//         with the inference engine's epilogue, so QAT's
//         forward equals inference bit for bit; other policies use the dequantized FP32 product.
// Backward (STE, method.md section 2): every quantizer is the identity and the products use the
// quantized operands:  dX_q = dY W_q  (flows on as dA, then through RMSNorm),
//                      dW_q = dY^T X_q, dW_latent += Ste::backward(W, dW_q).
// Scales (lambda, g) get no gradient.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>
#include <cstdint>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/kernel_weights.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/matmul.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/quantizers/int8_absmax.hpp"
#include "pquant/quantizers/sign_absmean.hpp"
#include "pquant/quantizers/ternary_absmean.hpp"
#include "pquant/quantizers/straight_through.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"

namespace pquant {

template <WeightQuantizer WQ, ActivationQuantizer AQ = Int8AbsMaxPerToken,
          SteRule Ste = StraightThrough>
class BitLinear {
 public:
  using weight_quantizer = WQ;
  using activation_quantizer = AQ;
  using ste_rule = Ste;
  static constexpr bool kQuantized = true;
  /// True when the forward runs on the integer kernels (INT8 activations; 1-bit, ternary or INT8
  /// weight codes; per-tensor or per-row scales). Otherwise dequantized operands on FP32 GEMMs.
  static constexpr bool kIntegerForward =
      AQ::kQuantizes &&
      (std::is_same_v<typename WQ::scales_type, PerTensor> ||
       std::is_same_v<typename WQ::scales_type,
                      PerRow>)&&(std::is_same_v<typename WQ::format_type, SignBit> ||
                                 std::is_same_v<typename WQ::format_type, TernaryCode> ||
                                 std::is_same_v<typename WQ::format_type, Int8Code>);

  struct Config {
    std::size_t in_features = 0;
    std::size_t out_features = 0;
    bool normalize_input = true;  // own RMSNorm (learnable gain, eps 1e-5) on the input
    double init_std = 0.02;       // latent W ~ N(0, init_std^2)
  };

  static Config make_config(std::size_t in, std::size_t out, bool normalize_input,
                            double init_std) {
    return {in, out, normalize_input, init_std};
  }

  /// Registers "<name>.norm.gain" [1 x in] (with normalize_input) and "<name>.weight" [out x in].
  BitLinear(ParameterStore& store, std::string name, Config cfg) : store_(&store), cfg_(cfg) {
    require<ShapeError>(cfg.in_features > 0 && cfg.out_features > 0, "BitLinear: config '", name,
                        "' needs in_features > 0 and out_features > 0, got ", cfg.in_features,
                        " and ", cfg.out_features);
    if (cfg.normalize_input)
      norm_.emplace(store, detail::param_name(name, "norm"), RMSNorm::Config{cfg.in_features});
    weight_ = store.add(detail::param_name(name, "weight"), cfg.out_features, cfg.in_features,
                        ParamRole::kWeight);
  }

  void init(Rng& rng) {
    if (norm_) norm_->init(rng);
    init::normal(store_->value(weight_), rng, cfg_.init_std);
  }

  /// x [tokens x in] -> y [tokens x out]. Caches X_q and W_q (and the RMSNorm's input).
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    detail::check_forward_io(x, y, cfg_.in_features, cfg_.out_features, "BitLinear::forward");
    const std::size_t n = x.rows;
    detail::ensure_shape(xq_, n, cfg_.in_features);
    MatrixView<const float> a = x;
    if (norm_) {
      norm_->forward(x, xq_.view());  // a = RMSNorm(x), quantized in place below
      a = xq_.view();
    }
    detail::ensure_shape(wq_, cfg_.out_features, cfg_.in_features);
    if constexpr (kIntegerForward) {
      // The exact integer product on the kernels the inference engine runs, then one scale:
      // y = float(acc) * (lambda * (1/g)) (kernels/epilogue.hpp), bit-identical to inference.
      detail::ensure_shape(qx_, n, cfg_.in_features);
      gain_.resize(n);
      inv_gain_.resize(n);
      AQ::quantize(a, qx_.view(), gain_);
      for (std::size_t i = 0; i < n; ++i) {
        inv_gain_[i] = 1.0f / gain_[i];
        // X_q = q / g: the value fake_quantize gives, for the backward products.
        for (std::size_t c = 0; c < cfg_.in_features; ++c)
          xq_(i, c) = static_cast<float>(qx_(i, c)) / gain_[i];
      }
      const auto packed = WQ::quantize(store_->value(weight_));
      const auto pv = packed.view();
      detail::ensure_shape(wcodes_, cfg_.out_features, cfg_.in_features);
      for (std::size_t r = 0; r < cfg_.out_features; ++r)
        for (std::size_t c = 0; c < cfg_.in_features; ++c) {
          wcodes_(r, c) = static_cast<std::int8_t>(pv.value(r, c));
          wq_(r, c) = pv.dequantized(r, c);
        }
      // Weights change every step, so the unpacked-int8 entry point (same result as the packed
      // W1A8/W2A8/W8A8 kernels, without a packing pass).
      kernels::gemm_int8_values(qx_.view(), wcodes_.view(), {packed.params(), inv_gain_, {}}, y);
    } else {
      // Other formats (codebooks), per-group scales or FP activations: dequantized operands on
      // the FP32 GEMM (the same values; the sum is rounded in float instead of exact).
      AQ::fake_quantize(a, xq_.view());
      WQ::fake_quantize(store_->value(weight_), wq_.view());
      detail::matmul_xwt<float>(xq_.view(), wq_.view(), y);
    }
  }

  /// dy [tokens x out] -> dx [tokens x in] (overwritten; empty view skips it). Accumulates the
  /// latent weight gradient (and the RMSNorm gain's) into the store.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    detail::check_backward_io(dy, dx, xq_.rows(), cfg_.in_features, cfg_.out_features,
                              "BitLinear::backward");
    // dW_q = dY^T X_q, then the STE rule maps it onto the latent weights.
    if constexpr (std::is_same_v<Ste, StraightThrough>) {
      detail::matmul_acc_dyx<float>(dy, xq_.view(), store_->grad(weight_));
    } else {
      detail::ensure_shape(dwq_, cfg_.out_features, cfg_.in_features);
      for (float& v : dwq_.flat()) v = 0.0f;
      detail::matmul_acc_dyx<float>(dy, xq_.view(), dwq_.view());
      Ste::backward(store_->value(weight_), dwq_.view(), dwq_.view());
      MatrixView<float> g = store_->grad(weight_);
      for (std::size_t r = 0; r < g.rows; ++r)
        for (std::size_t c = 0; c < g.cols; ++c) g(r, c) += dwq_(r, c);
    }
    if (norm_) {
      detail::ensure_shape(da_, dy.rows, cfg_.in_features);
      detail::matmul_dyw<float>(dy, wq_.view(), da_.view());  // dA = dY W_q (STE through Q)
      norm_->backward(da_.view(), dx);
    } else if (dx.rows != 0) {
      detail::matmul_dyw<float>(dy, wq_.view(), dx);
    }
  }

  std::size_t in_features() const { return cfg_.in_features; }
  std::size_t out_features() const { return cfg_.out_features; }
  const Config& config() const { return cfg_; }
  ParamId weight_id() const { return weight_; }
  /// The input RMSNorm's gain (invalid without normalize_input).
  ParamId norm_gain_id() const { return norm_ ? norm_->gain_id() : ParamId{}; }
  /// W_q and X_q of the last forward ([out x in], [tokens x in]): dequantized values.
  MatrixView<const float> quantized_weight() const { return wq_.view(); }
  MatrixView<const float> quantized_input() const { return xq_.view(); }

 private:
  ParameterStore* store_;
  Config cfg_;
  std::optional<RMSNorm> norm_;
  ParamId weight_;
  Matrix<std::int8_t> qx_;              // INT8 codes of X (integer forward)
  Matrix<std::int8_t> wcodes_;          // integer weight codes (integer forward)
  std::vector<float> gain_, inv_gain_;  // per-token g and 1/g (integer forward)
  Matrix<float> xq_;                    // X_q [tokens x in]
  Matrix<float> wq_;                    // W_q [out x in]
  Matrix<float> da_;                    // dA scratch (before RMSNorm backward)
  Matrix<float> dwq_;                   // dW_q scratch for non-identity STE rules
};

/// 1-bit weights (sign, absmean per tensor) x INT8 activations: BitNet / pQuant attention and FFN.
using SignBitLinear = BitLinear<SignAbsMean<PerTensor>, Int8AbsMaxPerToken>;
/// Ternary weights (absmean per tensor) x INT8 activations: BitNet b1.58.
using TernaryBitLinear = BitLinear<TernaryAbsMean<PerTensor>, Int8AbsMaxPerToken>;
/// INT8 weights (absmax per output row) x INT8 activations: pQuant's high-precision branch.
using Int8BitLinear = BitLinear<Int8AbsMax<PerRow>, Int8AbsMaxPerToken>;

static_assert(Projection<SignBitLinear> && Projection<TernaryBitLinear> &&
              Projection<Int8BitLinear>);

}  // namespace pquant
