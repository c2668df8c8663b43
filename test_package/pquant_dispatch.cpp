// The one translation unit of the program that compiles pquant's SIMD kernels for every Highway
// target; the best one for the CPU is picked at run time (docs/using.md, docs/kernels.md).
#define PQUANT_DISPATCH_IMPLEMENTATION
#include <pquant/kernels/dispatch.hpp>
