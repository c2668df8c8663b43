// Umbrella header of pquant's kernels (target-independent API). The SIMD implementations are
// compiled once per program: see pquant/kernels/dispatch.hpp and docs/kernels.md.
#pragma once

#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/gemv.hpp"
#include "pquant/kernels/kernel_weights.hpp"
#include "pquant/kernels/reference.hpp"
#include "pquant/kernels/targets.hpp"
