// Bit-packed storage: code formats, scale granularities, layouts, packed matrices, accounting.
#pragma once

#include "pquant/storage/code_format.hpp"
#include "pquant/storage/layout.hpp"
#include "pquant/storage/memory_footprint.hpp"
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"
