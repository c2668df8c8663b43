// ModelVariant: what a transformer variant is, as a type (the paper's FP, BitNet, BitNet b1.58 and
// pQuant are four of them; docs/variants.md shows how to write a fifth in application code).
//
// A variant names the block's two sublayers and builds their configs from the runtime ModelConfig:
//   struct MyVariant {
//     static constexpr std::string_view kName = "my-variant";
//     using Attention = ...;   // a SequenceLayer (causal self-attention), [n x d] -> [n x d]
//     using Ffn = ...;         // a TokenwiseLayer, [n x d] -> [n x d]
//     static Attention::Config attention_config(const ModelConfig&);
//     static Ffn::Config ffn_config(const ModelConfig&);
//   };
// Both sublayers own their pre-normalization (RMSNorm) so the block only adds residuals:
//   h = x + Attention(x),  y = h + Ffn(h).
#pragma once

#include <concepts>
#include <string_view>

#include "pquant/layers/layer.hpp"
#include "pquant/model/model_config.hpp"

namespace pquant {

template <class V>
concept ModelVariant = requires(const ModelConfig& c) {
  { V::kName } -> std::convertible_to<std::string_view>;
  typename V::Attention;
  typename V::Ffn;
  { V::attention_config(c) } -> std::same_as<typename V::Attention::Config>;
  { V::ffn_config(c) } -> std::same_as<typename V::Ffn::Config>;
}
&&SequenceLayer<typename V::Attention>&& TokenwiseLayer<typename V::Ffn>;

}  // namespace pquant
