// Core types: errors, aligned buffers, matrices and their argument checks.
#pragma once

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
