// The paper's four variants (docs/method.md sections 3 and 6) as variant policies and model type
// aliases.
// Each is a plain struct a user could have written (docs/variants.md writes a fifth):
//
//   FP        all projections full precision (BitNet's blocks with the identity as quantizer)
//   BitNet    every projection BitLinear, 1-bit weights (SignAbsMean), INT8 activations
//   BitNet158 every projection BitLinear, ternary weights (TernaryAbsMean), INT8 activations
//   PQuant<N, r>  1-bit attention; decoupled FFN: N INT8 experts of width r (top-1 router) beside
//             a 1-bit branch of width d_ff - r, scaled by learnable alpha, beta
//
// Why PQuant<N, r> takes its numbers as template arguments at all, when model sizes are otherwise
// runtime values (sizes as types multiply instantiations and compile time): N and r are the
// variant's *name* in the paper ("pQuant N=8"), so a user can spell the exact variant as a type,
// but they shape no kernel. They are therefore only defaults:
// PQuant<N, r> fills ModelConfig::experts / ::r with N and r (a config that already sets other
// non-default values is a ValueError, so the type never lies), and PQuant<> (= PQuant<0, 0>)
// takes both from the runtime config, which is what train_lm uses. Both instantiate the same
// layer code: only the policy struct differs, not the kernels.
#pragma once

#include <cmath>
#include <cstddef>
#include <string_view>

#include "pquant/layers/attention.hpp"
#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/decoupled_ffn.hpp"
#include "pquant/layers/ffn.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/normed_linear.hpp"
#include "pquant/model/decoder_model.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/variant.hpp"

namespace pquant {

namespace variants {

/// The layers' init_std for the block weights: ModelConfig::init_std when > 0, else the fan-in
/// value of ModelConfig::fan_in (kFanInInit or kFanInNormalInit, init.hpp).
inline double init_std(const ModelConfig& c) {
  if (c.init_std > 0) return c.init_std;
  return c.fan_in == FanInInit::kNormal ? kFanInNormalInit : kFanInInit;
}

/// GPT-2's residual-output scaling: output projections start at init_std / sqrt(2 * layers)
/// (fan-in: stays fan-in, whose scale already follows the width).
inline double out_init_std(const ModelConfig& c) {
  if (c.init_std <= 0) return init_std(c);
  return c.init_std / std::sqrt(2.0 * static_cast<double>(c.layers));
}

/// Dense variants: one projection policy for attention and FFN alike.
template <Projection Proj>
struct Dense {
  using Attention = CausalSelfAttention<Proj>;
  using Ffn = pquant::Ffn<Proj>;
  static typename Attention::Config attention_config(const ModelConfig& c) {
    return {.d_model = c.d_model,
            .heads = c.heads,
            .rope_base = c.rope_theta,
            .init_std = init_std(c),
            .out_init_std = out_init_std(c),
            .fused_qkv = c.fused_qkv};
  }
  static typename Ffn::Config ffn_config(const ModelConfig& c) {
    return {.d_model = c.d_model,
            .hidden = c.d_ff,
            .activation = c.activation,
            .init_std = init_std(c),
            .out_init_std = out_init_std(c)};
  }
};

/// Decoupled variants: attention on AttnProj; a decoupled FFN whose INT8 branch is N experts on
/// Int8Proj (top-1 router) beside a low-bit branch on Int1Proj, scaled by learnable alpha, beta.
/// pQuant is Decoupled<SignBitLinear, Int8BitLinear, SignBitLinear>; a user's variant derives from
/// it with other projections (docs/variants.md).
template <Projection AttnProj, Projection Int8Proj, Projection Int1Proj>
struct Decoupled {
  using Attention = CausalSelfAttention<AttnProj>;
  using Ffn = DecoupledFfn<Int8Proj, Int1Proj>;
  static typename Attention::Config attention_config(const ModelConfig& c) {
    return Dense<AttnProj>::attention_config(c);
  }
  static typename Ffn::Config ffn_config(const ModelConfig& c) {
    typename Ffn::Config f;
    f.d_model = c.d_model;
    f.d_ff = c.d_ff;
    f.r = c.r;
    f.experts = c.experts;
    f.activation = c.activation;
    f.load_balance_coef = c.aux_loss_coef;
    f.alpha_init = c.alpha_init;
    f.beta_init = c.beta_init;
    f.init_std = init_std(c);
    f.out_init_std = out_init_std(c);
    return f;
  }
};

/// FP is BitNet's network with every quantizer the identity (NormedLinear: the O and down
/// projections keep BitLinear's input RMSNorm), so it differs from the quantized variants only in
/// precision. A LLaMA-style FP (one norm per sublayer) is Dense<Linear> (docs/variants.md).
struct FP : Dense<NormedLinear> {
  static constexpr std::string_view kName = "fp";
};

struct BitNet : Dense<SignBitLinear> {
  static constexpr std::string_view kName = "bitnet";
  /// Every block weight is 1-bit (embedding and head stay FP).
  static bool one_bit(std::string_view tensor) { return tensor.starts_with("blocks."); }
};

struct BitNet158 : Dense<TernaryBitLinear> {
  static constexpr std::string_view kName = "bitnet158";
};

/// pQuant: 1-bit attention, decoupled FFN with N INT8 experts of width r beside a 1-bit branch.
/// N, R = 0 take experts / r from the runtime ModelConfig (see the header comment).
template <std::size_t N = 0, std::size_t R = 0>
struct PQuant : Decoupled<SignBitLinear, Int8BitLinear, SignBitLinear> {
  static constexpr std::string_view kName = "pquant";

  /// Fills experts / r from N / R; a config that asks for other non-default values is refused.
  static ModelConfig configure(ModelConfig c) {
    const ModelConfig defaults;
    if constexpr (N != 0) {
      require<ValueError>(c.experts == N || c.experts == defaults.experts, "PQuant<", N, ", ", R,
                          ">: ModelConfig::experts is ", c.experts, ", the type says ", N);
      c.experts = N;
    }
    if constexpr (R != 0) {
      require<ValueError>(c.r == R || c.r == defaults.r, "PQuant<", N, ", ", R,
                          ">: ModelConfig::r is ", c.r, ", the type says ", R);
      c.r = R;
    }
    return c;
  }
  /// 1-bit tensors: the attention projections and the FFN's 1-bit branch.
  static bool one_bit(std::string_view tensor) {
    return tensor.find(".attn.") != std::string_view::npos ||
           tensor.find(".ffn.int1.") != std::string_view::npos;
  }
};

}  // namespace variants

using FP = DecoderModel<variants::FP>;
using BitNet = DecoderModel<variants::BitNet>;
using BitNet158 = DecoderModel<variants::BitNet158>;
template <std::size_t N = 0, std::size_t R = 0>
using PQuant = DecoderModel<variants::PQuant<N, R>>;

}  // namespace pquant
