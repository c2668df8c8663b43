// bench_decode: batch-1 decoding speed of packed models at the paper's 700M shape (d 1536,
// 24 layers, D_ff 4096, r 256, 12 heads), randomly initialised directly in packed form.
//   BM_decode/<variant>/<experts>/<threads>
// Each iteration decodes one token at a position in [16, 128) (KV cache pre-filled with 16
// tokens; reset when full). Counters: tokens_per_s, weight_bytes_per_token (bytes of weights one
// decode step streams: every linear it runs, one expert, head, norms, one embedding row).
// Environment: PQUANT_BENCH_LAYERS overrides the layer count (quick runs).
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/random_model.hpp"
#include "pquant/inference/sampler.hpp"

using namespace pquant::inference;

namespace {

InferenceConfig paper_700m(Variant v, std::size_t experts) {
  InferenceConfig c;
  c.variant = v;
  c.vocab = 256;
  c.d_model = 1536;
  c.layers = 24;
  if (const char* l = std::getenv("PQUANT_BENCH_LAYERS")) c.layers = std::strtoul(l, nullptr, 10);
  c.heads = 12;
  c.d_ff = 4096;
  c.r = v == Variant::kPQuant ? 256 : 0;
  c.experts = v == Variant::kPQuant ? experts : 1;
  c.context = 128;  // decode positions 16..127 (16-token prompt)
  return c;
}

// One model at a time (the FP32 one is 2.8 GB): rebuilt when the benchmark's model changes.
const PackedModel& model_for(Variant v, std::size_t experts) {
  static std::unique_ptr<PackedModel> cached;
  static std::pair<Variant, std::size_t> key{Variant::kFp, 0};
  if (!cached || key != std::pair{v, experts}) {
    cached.reset();
    cached = std::make_unique<PackedModel>(random_packed_model(paper_700m(v, experts), 2026));
    key = {v, experts};
  }
  return *cached;
}

void BM_decode(benchmark::State& state, Variant v, std::size_t experts, std::size_t threads) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  const PackedModel& m = model_for(v, experts);
  Engine engine(m);
  std::vector<int> prompt(16);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int>((i * 37 + 11) % 256);
  (void)engine.prefill(prompt);
  int token = 1;
  for (auto _ : state) {
    if (engine.position() == m.config.context) {
      state.PauseTiming();
      engine.reset();
      (void)engine.prefill(prompt);
      state.ResumeTiming();
    }
    const auto logits = engine.step(token);
    token = Sampler::argmax(logits);
    benchmark::DoNotOptimize(token);
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weight_bytes_per_token"] =
      static_cast<double>(m.accounting().active_bytes_per_token);
}

void register_all() {
  struct V {
    const char* name;
    Variant v;
    std::vector<long> experts;
  };
  for (const V& v :
       {V{"pquant", Variant::kPQuant, {1, 8}}, V{"bitnet158", Variant::kBitNet158, {1}},
        V{"bitnet", Variant::kBitNet, {1}}, V{"fp32", Variant::kFp, {1}}})
    for (long e : v.experts)
      for (long t : {1, 2}) {
        const std::string name =
            std::string("BM_decode/") + v.name + "/" + std::to_string(e) + "/" + std::to_string(t);
        benchmark::RegisterBenchmark(name.c_str(), BM_decode, v.v, static_cast<std::size_t>(e),
                                     static_cast<std::size_t>(t))
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MinTime(0.5);
      }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
