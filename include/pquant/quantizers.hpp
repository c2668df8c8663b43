// Quantizers: weight quantizers (sign/absmean, ternary/absmean, INT8 absmax, k-means codebook),
// the per-token INT8 activation quantizer, the straight-through estimators, and the packed forms
// the inference engine serves them through.
#pragma once

#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/quantizers/int8_absmax.hpp"
#include "pquant/quantizers/keep_largest.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"
#include "pquant/quantizers/packed_form.hpp"
#include "pquant/quantizers/packed_fp32.hpp"
#include "pquant/quantizers/packed_int8.hpp"
#include "pquant/quantizers/packed_lut.hpp"
#include "pquant/quantizers/sign_absmean.hpp"
#include "pquant/quantizers/straight_through.hpp"
#include "pquant/quantizers/ternary_absmean.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"
