// The paper's ablations that change a variant's parts rather than its sizes (docs/results.md,
// "Ablations"), each a variant policy composed from library parts, as a user's variant would be
// (docs/variants.md):
//
//   PQuantFixedScales<N, r>  pQuant with alpha, beta fixed at their init (feature scaling off)
//   BitNetKeep5              BitNet whose projections keep the 5% largest-|w| latent weights of
//                            each tensor in FP32 (naive mixed precision, KeepLargest)
//   BitNetKeep1p3            the same with 1.3%: 1 + 0.013 * 31 = 1.40 bits per weight, pQuant
//                            N=1's budget at r = D_ff / 12 (positions not counted)
//   BitNetRowScales          BitNet with one 1-bit scale per output row instead of per tensor
//   BitNetGroup64            BitNet with one 1-bit scale per 64 input columns of a row
//   BitNetKMeans             BitNet with a two-centroid k-means codebook per output row instead
//                            of sign x absmean ("1-Bit Wonder"'s 1-bit format), trained with STE
//
// Only BitNet and pQuant name their 1-bit tensors (one_bit) for train_lm's flip ratio, whose
// codes are W >= mean(W) per tensor: the other sign codes here are not those.
// StudyVariants lists the paper's four and these; train_lm trains all of them. The inference
// engine serves only the paper's four from train_lm's checkpoints (generate refuses the others'
// names); KeepLargest has no packed form at all (docs/inference.md).
#pragma once

#include <cstddef>
#include <string_view>

#include "pquant/layers/bit_linear.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/quantizers/keep_largest.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"
#include "pquant/quantizers/sign_absmean.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

/// 1-bit projections of the ablations (INT8 per-token activations, identity STE).
using SignRowBitLinear = BitLinear<SignAbsMean<PerRow>>;
using SignGroup64BitLinear = BitLinear<SignAbsMean<PerGroup<64>>>;
using KMeans1RowBitLinear = BitLinear<KMeansCodebook<1, PerRow>>;
/// 1-bit (sign x absmean per tensor) with the 5% largest |W| of the tensor in FP32.
using Keep5SignBitLinear = BitLinear<KeepLargest<SignAbsMean<PerTensor>, 50>>;
/// The same with the 1.3% largest.
using Keep1p3SignBitLinear = BitLinear<KeepLargest<SignAbsMean<PerTensor>, 13>>;

namespace variants {

/// pQuant with alpha, beta fixed at ModelConfig::alpha_init / beta_init (the paper fixes both
/// at 1: train_lm --alpha-init 1 --beta-init 1).
template <std::size_t N = 0, std::size_t R = 0>
struct PQuantFixedScales : PQuant<N, R> {
  static constexpr std::string_view kName = "pquant-fixed-scales";
  static typename PQuant<N, R>::Ffn::Config ffn_config(const ModelConfig& c) {
    auto f = PQuant<N, R>::ffn_config(c);
    f.learn_scales = false;
    return f;
  }
};

struct BitNetKeep5 : Dense<Keep5SignBitLinear> {
  static constexpr std::string_view kName = "bitnet-keep5";
};

struct BitNetKeep1p3 : Dense<Keep1p3SignBitLinear> {
  static constexpr std::string_view kName = "bitnet-keep1.3";
};

struct BitNetRowScales : Dense<SignRowBitLinear> {
  static constexpr std::string_view kName = "bitnet-row";
};

struct BitNetGroup64 : Dense<SignGroup64BitLinear> {
  static constexpr std::string_view kName = "bitnet-group64";
};

struct BitNetKMeans : Dense<KMeans1RowBitLinear> {
  static constexpr std::string_view kName = "bitnet-kmeans";
};

}  // namespace variants

using PQuantFixedScales = DecoderModel<variants::PQuantFixedScales<>>;
using BitNetKeep5 = DecoderModel<variants::BitNetKeep5>;
using BitNetKeep1p3 = DecoderModel<variants::BitNetKeep1p3>;
using BitNetRowScales = DecoderModel<variants::BitNetRowScales>;
using BitNetGroup64 = DecoderModel<variants::BitNetGroup64>;
using BitNetKMeans = DecoderModel<variants::BitNetKMeans>;

/// The paper's four variants and the ablations' (train_lm --variant).
using StudyVariants =
    VariantList<variants::FP, variants::BitNet, variants::BitNet158, variants::PQuant<>,
                variants::PQuantFixedScales<>, variants::BitNetKeep5, variants::BitNetKeep1p3,
                variants::BitNetRowScales, variants::BitNetGroup64, variants::BitNetKMeans>;

}  // namespace pquant
