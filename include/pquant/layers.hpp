// Umbrella header for pquant/layers: trainable layers with STE-aware backward passes.
#pragma once

#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/matmul.hpp"
#include "pquant/layers/linear.hpp"
