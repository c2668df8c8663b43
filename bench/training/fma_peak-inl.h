// The FP32 multiply-add peak of one core, one expansion per Highway target (bench_training's
// foreach_target): 12 independent accumulator vectors, register-resident, as many as the GEMM
// microkernel's C tile, so that the loop is bound by FMA throughput rather than latency.

#if defined(PQUANT_BENCH_FMA_PEAK_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PQUANT_BENCH_FMA_PEAK_INL_H_
#undef PQUANT_BENCH_FMA_PEAK_INL_H_
#else
#define PQUANT_BENCH_FMA_PEAK_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace pquant_bench::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// `iters` x 12 vector FMAs; returns their sum (so nothing is dead) and the lane count in *lanes.
HWY_NOINLINE float FmaLoop(std::int64_t iters, float seed, std::size_t* lanes) {
  const hn::ScalableTag<float> df;
  *lanes = hn::Lanes(df);
  const auto a = hn::Set(df, 0.999999f), b = hn::Set(df, 1e-7f * seed);
  // Distinct starting values: identical chains would be computed once.
  auto c0 = hn::Set(df, seed), c1 = hn::Set(df, seed + 1), c2 = hn::Set(df, seed + 2);
  auto c3 = hn::Set(df, seed + 3), c4 = hn::Set(df, seed + 4), c5 = hn::Set(df, seed + 5);
  auto c6 = hn::Set(df, seed + 6), c7 = hn::Set(df, seed + 7), c8 = hn::Set(df, seed + 8);
  auto c9 = hn::Set(df, seed + 9), c10 = hn::Set(df, seed + 10), c11 = hn::Set(df, seed + 11);
  for (std::int64_t i = 0; i < iters; ++i) {
    c0 = hn::MulAdd(c0, a, b), c1 = hn::MulAdd(c1, a, b), c2 = hn::MulAdd(c2, a, b);
    c3 = hn::MulAdd(c3, a, b), c4 = hn::MulAdd(c4, a, b), c5 = hn::MulAdd(c5, a, b);
    c6 = hn::MulAdd(c6, a, b), c7 = hn::MulAdd(c7, a, b), c8 = hn::MulAdd(c8, a, b);
    c9 = hn::MulAdd(c9, a, b), c10 = hn::MulAdd(c10, a, b), c11 = hn::MulAdd(c11, a, b);
  }
  const auto s = hn::Add(hn::Add(hn::Add(hn::Add(c0, c1), hn::Add(c2, c3)),
                                 hn::Add(hn::Add(c4, c5), hn::Add(c6, c7))),
                         hn::Add(hn::Add(c8, c9), hn::Add(c10, c11)));
  return hn::GetLane(hn::SumOfLanes(df, s));
}

}  // namespace pquant_bench::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // toggle guard
