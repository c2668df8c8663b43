// BitLinear<WeightQuantizer, ActivationQuantizer, SteRule>: the quantization-aware linear layer.
// The weight quantizer need only be a TrainableWeightQuantizer (fake_quantize); one that packs
// (WeightQuantizer) can also take the integer forward below and be exported.
//
// Forward (docs/method.md section 3):  Y = (lambda / g) * (W_q . Q(RMSNorm(X)))
//   a   = RMSNorm(X) with a learnable gain when Config::normalize_input (default), else a = X
//         (composites that feed ONE normalized input to several projections, e.g. Q/K/V or the
//         two branches of the decoupled FFN, own that RMSNorm and pass normalize_input = false);
//   X_q = A::fake_quantize(a)       per-token INT8 absmax: q / g (exact dequantized values);
//   W_q = W::fake_quantize(W)       quantized every forward from the FP32 latent weights;
//   Y   = X_q W_q^T = (lambda / g) * (W_int . q): with INT8 activations and 1-bit, ternary or INT8
//         codes at per-tensor/per-row scales (kIntegerForward) the exact int32 product runs on
//         pquant::kernels' integer GEMMs with the inference engine's epilogue: 1-bit weights on
//         the engine's LUT GEMM (gemm_w1a8, repacked every forward), ternary and INT8 on
//         gemm_int8_values (equal to the W2A8/W8A8 kernels), so QAT's forward equals inference
//         bit for bit; other policies use the dequantized FP32 product.
// Backward (STE, docs/method.md section 2): every quantizer is the identity and the products use
// the quantized operands:  dX_q = dY W_q  (flows on as dA, then through RMSNorm),
//                      dW_q = dY^T X_q, dW_latent += Ste::backward(W, dW_q).
// Scales (lambda, g) get no gradient.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>
#include <cstdint>
#include <span>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/kernel_weights.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/linear.hpp"
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

template <TrainableWeightQuantizer WQ, ActivationQuantizer AQ = Int8AbsMaxPerToken,
          SteRule Ste = StraightThrough>
class BitLinear {
 public:
  using weight_quantizer = WQ;
  using activation_quantizer = AQ;
  using ste_rule = Ste;
  static constexpr bool kQuantized = true;
  /// True when the forward runs on the integer kernels (INT8 activations; 1-bit, ternary or INT8
  /// weight codes; per-tensor or per-row scales). Otherwise dequantized operands on FP32 GEMMs.
  static constexpr bool kIntegerForward = [] {
    if constexpr (!AQ::kQuantizes || !WeightQuantizer<WQ>) {
      return false;  // FP activations, or values no packed code format holds
    } else {
      using S = typename WQ::scales_type;
      using F = typename WQ::format_type;
      return (std::is_same_v<S, PerTensor> || std::is_same_v<S, PerRow>)&&(
          std::is_same_v<F, SignBit> || std::is_same_v<F, TernaryCode> ||
          std::is_same_v<F, Int8Code>);
    }
  }();

  struct Config {
    std::size_t in_features = 0;
    std::size_t out_features = 0;
    bool normalize_input = true;  // own RMSNorm (learnable gain, eps 1e-5) on the input
    double init_std = 0.02;       // latent W ~ N(0, init_std^2); 0: fan-in (init.hpp)
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
    init::linear_weight(store_->value(weight_), rng, cfg_.init_std);
  }

  /// x [tokens x in] -> y [tokens x out]. Caches X_q and W_q (and the RMSNorm's input).
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    detail::check_forward_io(x, y, cfg_.in_features, cfg_.out_features, "BitLinear::forward");
    MatrixView<const float> a = x;
    if (norm_) {
      normed_.resize(x.rows, cfg_.in_features);
      norm_->forward(x, normed_.view());  // a = RMSNorm(x); copies x (the caller's)
      a = normed_.view();
    }
    quantize(a, y);
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, BorrowedInput) {
    detail::check_forward_shapes(x, y, cfg_.in_features, cfg_.out_features, "BitLinear::forward");
    MatrixView<const float> a = x;
    if (norm_) {
      normed_.resize(x.rows, cfg_.in_features);
      norm_->forward(x, normed_.view(), borrowed_input);
      a = normed_.view();
    }
    quantize(a, y);
  }

  /// The activation operand of a forward: X_q = q / g, and (INT8 activations) the codes q and
  /// per-token 1/g. Projections that read the same input (Q/K/V, gate/up) quantize it once with
  /// quantize_input and each call forward_shared: same result as forward, one quantization.
  struct SharedInput {
    Matrix<float> xq;           // [tokens x in]
    Matrix<std::int8_t> codes;  // [tokens x in] (INT8 activations)
    std::vector<float> inv_gain;
    std::vector<float> gain;  // scratch
  };

  // a [tokens x in] -> in. Tokens are quantized independently (per-token activation policies), so
  // blocks of rows run in parallel with the same result for any thread count.
  static void quantize_input(MatrixView<const float> a, SharedInput& in) {
    const std::size_t n = a.rows, k = a.cols;
    in.xq.resize(n, k);
    if constexpr (AQ::kQuantizes) {
      in.codes.resize(n, k);
      in.gain.resize(n);
      in.inv_gain.resize(n);
      detail::for_row_blocks(n, [&](std::size_t i0, std::size_t rows) {
        const MatrixView<const float> x = a.row_range(i0, rows);
        const MatrixView<std::int8_t> codes = in.codes.view().row_range(i0, rows);
        const std::span<float> gain = std::span<float>(in.gain).subspan(i0, rows);
        // X_q = q / g: exactly the value AQ::fake_quantize gives, for the backward products.
        if constexpr (std::is_same_v<AQ, Int8AbsMaxPerToken>) {  // the SIMD kernel, same bits
          if (!kernels::int8_absmax_quantize(x, codes, gain, in.xq.view().row_range(i0, rows)))
            AQ::quantize(x, codes, gain);  // a NaN/Inf: the quantizer's error names it
        } else {
          AQ::quantize(x, codes, gain);
          for (std::size_t i = i0; i < i0 + rows; ++i) {
            const std::int8_t* q = &in.codes(i, 0);
            float* xq = &in.xq(i, 0);
            for (std::size_t c = 0; c < k; ++c) xq[c] = static_cast<float>(q[c]) / in.gain[i];
          }
        }
        for (std::size_t i = i0; i < i0 + rows; ++i) in.inv_gain[i] = 1.0f / in.gain[i];
      });
    } else {
      detail::for_row_blocks(n, [&](std::size_t i0, std::size_t rows) {
        AQ::fake_quantize(a.row_range(i0, rows), in.xq.view().row_range(i0, rows));
      });
    }
  }

  /// Forward on an input already normalized and quantized by the caller (normalize_input must be
  /// false). Caches a copy of X_q (what backward needs), so `in` may be reused after the call.
  void forward_shared(const SharedInput& in, MatrixView<float> y) {
    constexpr const char* fn = "BitLinear::forward_shared";
    require<ValueError>(!norm_, fn, ": the layer normalizes its own input; call forward()");
    detail::check_forward_io(in.xq.view(), y, cfg_.in_features, cfg_.out_features, fn);
    // Copy into the existing cache (no reallocation when the token count is unchanged).
    detail::copy_into(in.xq.view(), own_.xq);
    lent_ = nullptr;
    multiply(in, y);
  }
  /// The same with `in` lent by the caller (BorrowedInput): unchanged until backward, no copy.
  void forward_shared(const SharedInput& in, MatrixView<float> y, BorrowedInput) {
    constexpr const char* fn = "BitLinear::forward_shared";
    require<ValueError>(!norm_, fn, ": the layer normalizes its own input; call forward()");
    detail::check_forward_shapes(in.xq.view(), y, cfg_.in_features, cfg_.out_features, fn);
    lent_ = &in;
    multiply(in, y);
  }
  /// dy [tokens x out] -> dx [tokens x in] (overwritten; empty view skips it). Accumulates the
  /// latent weight gradient (and the RMSNorm gain's) into the store.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    const MatrixView<const float> xq = quantized_input();
    detail::check_backward_io(dy, dx, xq.rows, cfg_.in_features, cfg_.out_features,
                              "BitLinear::backward");
    // dW_q = dY^T X_q, then the STE rule maps it onto the latent weights.
    if constexpr (std::is_same_v<Ste, StraightThrough>) {
      detail::matmul_acc_dyx<float>(dy, xq, store_->grad(weight_));
    } else {
      dwq_.resize(cfg_.out_features, cfg_.in_features);
      for (float& v : dwq_.flat()) v = 0.0f;
      detail::matmul_acc_dyx<float>(dy, xq, dwq_.view());
      Ste::backward(store_->value(weight_), dwq_.view(), dwq_.view());
      MatrixView<float> g = store_->grad(weight_);
      for (std::size_t r = 0; r < g.rows; ++r)
        for (std::size_t c = 0; c < g.cols; ++c) g(r, c) += dwq_(r, c);
    }
    if (norm_) {
      da_.resize(dy.rows, cfg_.in_features);
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
  MatrixView<const float> quantized_input() const {
    return lent_ != nullptr ? lent_->xq.view() : own_.xq.view();
  }

 private:
  void quantize(MatrixView<const float> a, MatrixView<float> y) {
    quantize_input(a, own_);
    lent_ = nullptr;
    multiply(own_, y);
  }

  // y = X_q W_q^T with W_q quantized now from the latent weights.
  void multiply(const SharedInput& in, MatrixView<float> y) {
    wq_.resize(cfg_.out_features, cfg_.in_features);
    if constexpr (kIntegerForward) {
      // The exact integer product, then one scale per output: y = float(acc) * (lambda * (1/g))
      // (kernels/epilogue.hpp), bit-identical to the inference engine. Weights change every
      // step, so the unpacked-int8 entry point (same result as the packed W1A8/W2A8/W8A8 kernels).
      const MatrixView<const float> w = store_->value(weight_);
      wcodes_.resize(cfg_.out_features, cfg_.in_features);
      wscales_.resize(WQ::scales_type::count(w.rows, w.cols));
      if constexpr (requires(std::span<float> l) {
                      WQ::quantize_unpacked(w, wcodes_.view(), wq_.view(), l);
                    }) {
        WQ::quantize_unpacked(w, wcodes_.view(), wq_.view(), wscales_);  // no packed storage
      } else {
        const auto packed = WQ::quantize(w);
        const auto pv = packed.view();
        for (std::size_t r = 0; r < cfg_.out_features; ++r)
          for (std::size_t c = 0; c < cfg_.in_features; ++c) {
            wcodes_(r, c) = static_cast<std::int8_t>(pv.value(r, c));
            wq_(r, c) = pv.dequantized(r, c);
          }
        std::copy(packed.params().begin(), packed.params().end(), wscales_.begin());
      }
      const kernels::Epilogue ep{wscales_, in.inv_gain, {}};
      if constexpr (std::is_same_v<typename WQ::format_type, SignBit>) {
        // 1-bit: the engine's own LUT GEMM (1.5-2x the FP32 product at the training shapes,
        // docs/training.md), on weights repacked from this step's signs.
        kernels::pack_sign(wcodes_.view(), wsign_);
        kernels::gemm_w1a8(in.codes.view(), wsign_, ep, y);
      } else {
        kernels::gemm_int8_values(in.codes.view(), wcodes_.view(), ep, y);
      }
    } else {
      // Other formats (codebooks), per-group scales or FP activations: dequantized operands on
      // the FP32 GEMM (the same values; the sum is rounded in float instead of exact).
      WQ::fake_quantize(store_->value(weight_), wq_.view());
      detail::matmul_xwt<float>(in.xq.view(), wq_.view(), y);
    }
    if (ProductObserver* o = store_->observer()) o->on_product(weight_, in.xq.view(), wq_.view());
  }

  ParameterStore* store_;
  Config cfg_;
  std::optional<RMSNorm> norm_;
  ParamId weight_;
  SharedInput own_;  // X_q (and, after forward(), codes and 1/g) of the last forward
  const SharedInput* lent_ = nullptr;  // the caller's X_q instead (forward_shared, borrowed)
  Matrix<float> normed_;               // RMSNorm(x) scratch
  Matrix<std::int8_t> wcodes_;         // integer weight codes (integer forward)
  std::vector<float> wscales_;         // their scales (lambda per scale group)
  kernels::SignWeights wsign_;         // 1-bit codes in the LUT layout (1-bit integer forward)
  Matrix<float> wq_;                   // W_q [out x in]
  Matrix<float> da_;                   // dA scratch (before RMSNorm backward)
  Matrix<float> dwq_;                  // dW_q scratch for non-identity STE rules
};

/// A projection whose activation operand can be quantized once and shared by several projections
/// reading the same input (BitLinear without its own norm): see BitLinear::SharedInput.
template <class P>
concept SharedInputProjection = Projection<P> &&
    requires(P& p, MatrixView<const float> a, typename P::SharedInput& in, MatrixView<float> y) {
  P::quantize_input(a, in);
  p.forward_shared(in, y);
};

namespace detail {
struct NoSharedInput {};
template <class P>
struct shared_input_of {
  using type = NoSharedInput;
};
template <SharedInputProjection P>
struct shared_input_of<P> {
  using type = typename P::SharedInput;
};

/// p.forward_shared(in, y, borrowed_input) where the policy takes a lent shared input (the caller
/// keeps `in` unchanged until backward), else p.forward_shared(in, y).
template <SharedInputProjection P>
void forward_shared_borrowed(P& p, const typename P::SharedInput& in, MatrixView<float> y) {
  if constexpr (requires { p.forward_shared(in, y, borrowed_input); })
    p.forward_shared(in, y, borrowed_input);
  else
    p.forward_shared(in, y);
}
}  // namespace detail

/// 1-bit weights (sign, absmean per tensor) x INT8 activations: BitNet / pQuant attention and FFN.
using SignBitLinear = BitLinear<SignAbsMean<PerTensor>, Int8AbsMaxPerToken>;
/// Ternary weights (absmean per tensor) x INT8 activations: BitNet b1.58.
using TernaryBitLinear = BitLinear<TernaryAbsMean<PerTensor>, Int8AbsMaxPerToken>;
/// INT8 weights (absmax per output row) x INT8 activations: pQuant's high-precision branch.
using Int8BitLinear = BitLinear<Int8AbsMax<PerRow>, Int8AbsMaxPerToken>;

static_assert(SharedInputProjection<SignBitLinear> && SharedInputProjection<TernaryBitLinear> &&
              SharedInputProjection<Int8BitLinear> && !SharedInputProjection<Linear>);

}  // namespace pquant
