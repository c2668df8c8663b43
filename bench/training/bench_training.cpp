// Training throughput: one optimizer step (forward, backward, clip, AdamW) of each variant on the
// issue's reference shape (d_model 128, 4 layers, 4 heads, D_ff 384, r 32, context 128, batch 16),
// at 1 and 2 threads. Reports tokens/s as items_per_second.
//   BM_FmaPeak: the FP32 multiply-add peak of one core (register-resident FMA loop on the best
//   Highway target), GFLOP_per_s on the thread's CPU clock.
//   BM_Gemm: the FP32 GEMMs of a training step; at 1 thread also cpu_GFLOP_per_s (the thread's CPU
//   clock: other processes' load does not count) and of_peak = cpu_GFLOP_per_s / BM_FmaPeak's.
//   bench_training --benchmark_filter=.   (Release build; see docs/training.md)
#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "pquant/kernels/detail/hwy_config.hpp"  // before any Highway header
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "fma_peak-inl.h"
#include "hwy/foreach_target.h"  // must precede highway.h
#include "hwy/highway.h"
#include "fma_peak-inl.h"

namespace pquant_bench {
HWY_EXPORT(FmaLoop);
}  // namespace pquant_bench

#include "pquant/model.hpp"
#include "pquant/training.hpp"

namespace {

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// FLOP/s of the FMA loop on this thread's CPU clock (best of 5 runs of ~50 ms).
std::size_t fma_lanes = 0;
double fma_peak_flops() {
  static const double peak = [] {
    double best = 0.0;
    constexpr std::int64_t kIters = 20'000'000;
    for (int r = 0; r < 5; ++r) {
      std::size_t lanes = 0;
      const double t0 = thread_cpu_s();
      const float s = HWY_DYNAMIC_DISPATCH(pquant_bench::FmaLoop)(kIters, 1.0f, &lanes);
      const double t = thread_cpu_s() - t0;
      benchmark::DoNotOptimize(s);
      best = std::max(best, 2.0 * 12.0 * double(lanes) * double(kIters) / t);
      fma_lanes = lanes;
    }
    return best;
  }();
  return peak;
}

void BM_FmaPeak(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(fma_peak_flops());
  state.counters["GFLOP_per_s"] = fma_peak_flops() * 1e-9;
  state.SetLabel(std::to_string(32 * fma_lanes) + "-bit vectors");
}
BENCHMARK(BM_FmaPeak)->Iterations(1);

const pquant::ByteDataset& corpus() {
  static const pquant::ByteDataset data([] {
    std::string s;
    pquant::Rng rng(1);
    const char* words[] = {"the ",  "king ", "and ", "queen ", "of ",  "a ", "castle ",
                           "said ", "to ",   "his ", "her ",   "man ", "\n"};
    while (s.size() < 200000) s += words[rng.below(13)];
    return s;
  }());
  return data;
}

template <class Model>
void BM_TrainStep(benchmark::State& state) {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(state.range(0)));
  pquant::ModelConfig c;  // defaults: 128 / 4 / 4 / 384 / 128, r 32
  c.experts = static_cast<std::size_t>(state.range(1));
  Model model(c, 1);
  pquant::TrainerConfig tc;
  tc.batch = 16;
  tc.seq_len = 128;
  tc.schedule =
      pquant::ConstantSchedule{.peak_lr = 1e-3f, .warmup_steps = 0, .total_steps = 1u << 30};
  pquant::Trainer trainer(model, corpus(), tc);
  trainer.step();  // warm caches and scratch allocations
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step().loss);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(tc.batch * tc.seq_len));
}

void Args(benchmark::internal::Benchmark* b, bool experts) {
  for (int t : {1, 2}) {
    if (experts) {
      b->Args({t, 1});
      b->Args({t, 4});
    } else {
      b->Args({t, 1});
    }
  }
  b->ArgNames({"threads", "experts"})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
}

// The FP32 GEMMs of one training step at the reference shape (2048 tokens): forward Y = X W^T,
// backward-data dX = dY W, backward-weights dW += dY^T X, for the d x d, d x D_ff and D_ff x d
// projections and one attention head (T x T x head_dim). GFLOP_per_s = 2 M N K / time.
enum class GemmOp { forward, backward_data, backward_weights };

void BM_Gemm(benchmark::State& state) {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(state.range(0)));
  const auto op = static_cast<GemmOp>(state.range(1));
  const auto m = static_cast<std::size_t>(state.range(2)),
             n = static_cast<std::size_t>(state.range(3)),
             k = static_cast<std::size_t>(state.range(4));
  auto filled = [](std::size_t r, std::size_t c) {
    pquant::Matrix<float> x(r, c);
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 17) * 0.01f - 0.08f;
    return x;
  };
  // forward: x [m x k], w [n x k], y [m x n]; backward_data: dy [m x k], w [k x n], dx [m x n];
  // backward_weights: dy [k x m], x [k x n], dw [m x n] (M N K = output rows, cols, reduction).
  pquant::Matrix<float> a = op == GemmOp::backward_weights ? filled(k, m) : filled(m, k);
  pquant::Matrix<float> b = op == GemmOp::forward ? filled(n, k) : filled(k, n);
  pquant::Matrix<float> c(m, n);
  const double t0 = thread_cpu_s();
  for (auto _ : state) {
    switch (op) {
      case GemmOp::forward:
        pquant::kernels::gemm_forward(a.view(), b.view(), c.view());
        break;
      case GemmOp::backward_data:
        pquant::kernels::gemm_backward_data(a.view(), b.view(), c.view());
        break;
      case GemmOp::backward_weights:
        pquant::kernels::gemm_backward_weights(a.view(), b.view(), c.view());
        break;
    }
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * double(m) * double(n) * double(k) * double(state.iterations());
  if (state.range(0) == 1) {
    const double cpu = flops / (thread_cpu_s() - t0);
    state.counters["cpu_GFLOP_per_s"] = cpu * 1e-9;
    state.counters["of_peak"] = cpu / fma_peak_flops();
  }
  state.counters["GFLOP_per_s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k),
                                                     benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Gemm)
    ->ArgNames({"threads", "op", "M", "N", "K"})
    ->Args({1, 0, 2048, 384, 128})
    ->Args({1, 0, 2048, 128, 384})
    ->Args({1, 0, 2048, 128, 128})
    ->Args({1, 1, 2048, 128, 384})
    ->Args({1, 1, 2048, 384, 128})
    ->Args({1, 2, 384, 128, 2048})
    ->Args({1, 2, 128, 384, 2048})
    ->Args({1, 2, 128, 128, 2048})
    ->Args({1, 0, 128, 128, 32})
    ->Args({1, 1, 128, 32, 128})
    ->Args({1, 2, 128, 32, 128})
    ->Args({2, 0, 2048, 384, 128})
    ->Args({2, 1, 2048, 128, 384})
    ->Args({2, 2, 384, 128, 2048})
    ->UseRealTime();

BENCHMARK(BM_TrainStep<pquant::FP>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::BitNet>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::BitNet158>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::PQuant<>>)->Apply([](auto* b) { Args(b, true); });

}  // namespace

BENCHMARK_MAIN();
