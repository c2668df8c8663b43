// Umbrella header for pquant/analysis: weight sensitivity of trained models (docs/analysis.md).
// Needs Eigen 3 (Debian: libeigen3-dev) besides pquant's own dependencies; pquant/pquant.hpp does
// not include it.
#pragma once

#include "pquant/model.hpp"

#include "pquant/analysis/input_hessian.hpp"
#include "pquant/analysis/product_capture.hpp"
#include "pquant/analysis/sensitivity_stats.hpp"
#include "pquant/analysis/sensitivity.hpp"
#include "pquant/analysis/projection_sensitivity.hpp"
