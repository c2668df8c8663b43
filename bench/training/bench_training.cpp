// Training throughput: one optimizer step (forward, backward, clip, AdamW) of each variant on the
// issue's reference shape (d_model 128, 4 layers, 4 heads, D_ff 384, r 32, context 128, batch 16),
// at 1 and 2 threads. Reports tokens/s as items_per_second.
//   BM_FmaPeak: the FP32 multiply-add peak of one core (register-resident FMA loop on the best
//   Highway target), GFLOP_per_s on the thread's CPU clock.
//   BM_Gemm: the FP32 GEMMs of a training step; at 1 thread also cpu_GFLOP_per_s (the thread's CPU
//   clock: other processes' load does not count) and of_peak = cpu_GFLOP_per_s / BM_FmaPeak's.
//   BM_TrainStepContext: pQuant N=4 at contexts 512 and 1024 (2048 tokens per step, 1 thread).
//   bench_training --benchmark_filter=.   (Release build; see docs/training.md)
#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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

// One step of a model of config c on batches of `batch` x `seq_len` tokens.
template <class Model>
void run_train_step(benchmark::State& state, const pquant::ModelConfig& c, std::size_t batch,
                    std::size_t seq_len) {
  Model model(c, 1);
  pquant::TrainerConfig tc;
  tc.batch = batch;
  tc.seq_len = seq_len;
  tc.schedule =
      pquant::ConstantSchedule{.peak_lr = 1e-3f, .warmup_steps = 0, .total_steps = 1u << 30};
  pquant::Trainer trainer(model, corpus(), tc);
  trainer.step();  // warm caches and scratch allocations
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step().loss);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch * seq_len));
}

template <class Model>
void BM_TrainStep(benchmark::State& state) {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(state.range(0)));
  pquant::ModelConfig c;  // defaults: 128 / 4 / 4 / 384 / 128, r 32
  c.experts = static_cast<std::size_t>(state.range(1));
  run_train_step<Model>(state, c, 16, 128);
}

// The reference model at longer contexts, 2048 tokens per step (batch 2048 / context): the
// attention's share of the step grows with the context.
template <class Model>
void BM_TrainStepContext(benchmark::State& state) {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, 1);
  pquant::ModelConfig c;
  c.experts = 4;
  c.context = static_cast<std::size_t>(state.range(0));
  run_train_step<Model>(state, c, 2048 / c.context, c.context);
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

// The element-wise kernels of a training step at its shapes, on one thread: RMSNorm forward and
// backward over 2048 tokens of width d (128: the block norms; 352: the 1-bit branch's down
// projection input), the SwiGLU forward and backward, and the causal softmax and its backward over
// one head's 128 x 128 scores (rows of one head, as the attention calls them per block).
enum class ElementwiseOp {
  norm_forward,
  norm_backward,
  swiglu_forward,
  swiglu_backward,
  softmax,
  softmax_backward
};

void BM_Elementwise(benchmark::State& state, ElementwiseOp op) {
  const std::size_t rows = static_cast<std::size_t>(state.range(0)),
                    cols = static_cast<std::size_t>(state.range(1));
  pquant::Rng rng(3);
  auto random = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(rng.normal(0.0, 1.0));
    return v;
  };
  std::vector<float> a = random(rows * cols), b = random(rows * cols), c(rows * cols),
                     e(rows * cols), gain = random(cols), dgain(cols), inv(rows, 0.5f);
  const pquant::MatrixView<float> av(a.data(), rows, cols), bv(b.data(), rows, cols),
      cv(c.data(), rows, cols), ev(e.data(), rows, cols);
  const float scale = 1.0f / std::sqrt(32.0f);
  std::copy(a.begin(), a.end(), c.begin());  // the softmaxes' scores; p of the backward
  if (op == ElementwiseOp::softmax_backward) pquant::kernels::causal_softmax(cv, 0, scale);
  for (auto _ : state) {
    switch (op) {
      case ElementwiseOp::norm_forward:
        pquant::kernels::rmsnorm_forward(av, gain, 1e-5f, cv, inv);
        break;
      case ElementwiseOp::norm_backward:
        pquant::kernels::rmsnorm_backward(bv, av, gain, inv, cv, dgain);
        break;
      case ElementwiseOp::swiglu_forward:
        pquant::kernels::swiglu_forward(av, bv, cv);
        break;
      case ElementwiseOp::swiglu_backward:
        pquant::kernels::swiglu_backward(av, bv, av, cv, ev);
        break;
      case ElementwiseOp::softmax:  // in place: each pass normalizes the last one's output
        pquant::kernels::causal_softmax(cv, 0, scale);
        break;
      case ElementwiseOp::softmax_backward:  // dp re-copied (64 KiB): dS overwrites it
        std::copy(b.begin(), b.end(), e.begin());
        pquant::kernels::causal_softmax_backward(ev, cv, 0, scale);
        break;
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::DoNotOptimize(e.data());
  }
}
// BM_Elementwise/<kernel>/rows:<n>/cols:<d>, one name per kernel and the step's shapes of it.
const int kElementwiseRegistered = [] {
  struct Case {
    const char* name;
    ElementwiseOp op;
    std::vector<std::pair<int, int>> shapes;
  };
  const Case cases[] = {{"norm_forward", ElementwiseOp::norm_forward, {{2048, 128}}},
                        {"norm_backward", ElementwiseOp::norm_backward, {{2048, 128}, {2048, 352}}},
                        {"swiglu_forward", ElementwiseOp::swiglu_forward, {{2048, 352}}},
                        {"swiglu_backward", ElementwiseOp::swiglu_backward, {{2048, 352}}},
                        {"softmax", ElementwiseOp::softmax, {{128, 128}}},
                        {"softmax_backward", ElementwiseOp::softmax_backward, {{128, 128}}}};
  for (const Case& c : cases) {
    auto* b = benchmark::RegisterBenchmark((std::string("BM_Elementwise/") + c.name).c_str(),
                                          BM_Elementwise, c.op);
    b->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond);
    for (const auto& [rows, cols] : c.shapes) b->Args({rows, cols});
  }
  return 0;
}();

BENCHMARK(BM_TrainStep<pquant::FP>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::BitNet>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::BitNet158>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::PQuant<>>)->Apply([](auto* b) { Args(b, true); });
BENCHMARK(BM_TrainStepContext<pquant::PQuant<>>)
    ->ArgName("context")
    ->Arg(512)
    ->Arg(1024)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
