// Umbrella header for pquant/model: the transformer block, the decoder-only model and the paper's
// variants (FP, BitNet, BitNet158, PQuant<N, r>) as type aliases. See docs/variants.md.
#pragma once

#include "pquant/model/model_config.hpp"
#include "pquant/model/variant.hpp"
#include "pquant/model/transformer_block.hpp"
#include "pquant/model/decoder_model.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/model/ablation_variants.hpp"
