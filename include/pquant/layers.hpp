// Umbrella header for pquant/layers: trainable layers with STE-aware backward passes.
#pragma once

#include "pquant/quantizers.hpp"

#include "pquant/layers/product_observer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/matmul.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/normed_linear.hpp"
#include "pquant/layers/fast_exp.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/layers/embedding.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/cross_entropy.hpp"
#include "pquant/layers/loss_report.hpp"
#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/rope.hpp"
#include "pquant/layers/attention.hpp"
#include "pquant/layers/ffn.hpp"
#include "pquant/layers/top1_router.hpp"
#include "pquant/layers/decoupled_ffn.hpp"
