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

BENCHMARK(BM_TrainStep<pquant::FP>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::BitNet>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::BitNet158>)->Apply([](auto* b) { Args(b, false); });
BENCHMARK(BM_TrainStep<pquant::PQuant<>>)->Apply([](auto* b) { Args(b, true); });

}  // namespace

BENCHMARK_MAIN();
