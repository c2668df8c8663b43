// Training throughput: one optimizer step (forward, backward, clip, AdamW) of each variant on the
// issue's reference shape (d_model 128, 4 layers, 4 heads, D_ff 384, r 32, context 128, batch 16),
// at 1 and 2 threads. Reports tokens/s as items_per_second.
//   bench_training --benchmark_filter=.   (Release build; see docs/training.md)
#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>

#include <string>

#include "pquant/model.hpp"
#include "pquant/training.hpp"

namespace {

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
