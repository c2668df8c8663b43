// pquant: header-only C++20 building blocks for extremely low-bit language models.
// Umbrella header: includes every target-independent part of the library. SIMD kernels with
// runtime dispatch are set up once per program; see docs/getting-started.md.
#pragma once

#include "pquant/version.hpp"
#include "pquant/core.hpp"
#include "pquant/storage.hpp"
#include "pquant/layers.hpp"
#include "pquant/quantizers.hpp"
#include "pquant/kernels.hpp"
#include "pquant/model.hpp"
#include "pquant/training.hpp"
#include "pquant/inference.hpp"
