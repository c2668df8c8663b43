// pquant's own copy of the runtime-dispatched SIMD kernels, shared by the tests, examples and
// benchmarks (a user's program writes these two lines in one of its own .cpp files).
#define PQUANT_DISPATCH_IMPLEMENTATION
#include "pquant/kernels/dispatch.hpp"
