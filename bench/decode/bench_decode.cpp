// bench_decode: batch-1 decoding speed of packed models at the paper's 700M shape (d 1536,
// 24 layers, D_ff 4096, r 256, 12 heads), randomly initialised (the variants' own init) and
// packed one block at a time.
//   BM_decode/<variant>/<experts>/<threads>
// Each iteration decodes one token at a position in [16, 128) (KV cache pre-filled with 16
// tokens; reset when full). Counters: tokens_per_s, weight_bytes_per_token (bytes of weights one
// decode step streams: every linear it runs, one expert, head, norms, one embedding row), and the
// engine against its weight products in the same run: gemvs_us is the time of the projections one
// step runs (every block's QKV, O, FFN branch and one expert, the head), timed alone on fixed
// inputs as many times as the step; decode_over_gemvs = step time / gemvs_us. kv_bytes_per_token:
// the K and V the step's attention reads (mean over the steps), which the projections alone do not. At 1 thread both are
// the calling thread's CPU time (the work runs on it; other processes' load does not count); at 2
// threads, wall time.
//   BM_norm_quantize/<fused|separate>/<cols>
// One token's residual add + RMSNorm + INT8 quantization (a projection's input side) through the
// fused kernel or as the add and two kernels.
//   BM_load/<read|map>
// load_model of the pQuant N=1 model of that shape, saved once to a temporary file (in the page
// cache), read into one buffer or memory-mapped; the weights are used where they lie in either.
// Counters: file_bytes, resident_bytes (growth of the process's resident set by the first load:
// the file's pages plus what the loader allocates).
// Environment: PQUANT_BENCH_LAYERS overrides the layer count (quick runs); PQUANT_BENCH_ITERATIONS
// fixes BM_decode's step count (profiling under an instruction counter, where time means little).
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <unistd.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/random_model.hpp"
#include "pquant/inference/sampler.hpp"
#include "pquant/model/variants.hpp"

using namespace pquant;
using namespace pquant::inference;

namespace {

ModelConfig paper_700m(std::size_t experts) {
  ModelConfig c;
  c.vocab = 256;
  c.d_model = 1536;
  c.layers = 24;
  if (const char* l = std::getenv("PQUANT_BENCH_LAYERS")) c.layers = std::strtoul(l, nullptr, 10);
  c.heads = 12;
  c.d_ff = 4096;
  c.r = 256;
  c.experts = experts;
  c.context = 128;  // decode positions 16..127 (16-token prompt)
  return c;
}

// One model at a time (the FP32 one is 2.8 GB): rebuilt when the benchmark's model changes.
template <class V>
const PackedModel& model_for(std::size_t experts) {
  static std::unique_ptr<PackedModel> cached;
  static std::pair<std::string, std::size_t> key{"", 0};
  const std::pair<std::string, std::size_t> want{std::string(V::kName), experts};
  if (!cached || key != want) {
    cached.reset();
    cached = std::make_unique<PackedModel>(random_packed_model<V>(paper_700m(experts), 2026));
    key = want;
  }
  return *cached;
}

// Seconds on the calling thread's CPU clock (threads == 1) or the wall clock.
double now_s(bool cpu) {
  if (!cpu)
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The projections of one decode step, alone: fixed normalized (and quantized) inputs of each
// width, every block's QKV, O, FFN branch up and down, expert 0's up and down, and the head.
class GemvsAlone {
 public:
  explicit GemvsAlone(const PackedModel& m) : m_(m) {
    const ModelStructure& s = m.structure;
    Rng rng(7);
    auto input = [&](std::size_t width, ActivationBuffer& buf, Matrix<float>& x) {
      x = Matrix<float>(1, width);
      for (float& v : x.row(0)) v = static_cast<float>(rng.normal());
      normalize_quantize(x.view(), {}, {}, s.norm_eps, true, buf);
    };
    input(s.d_model, d_, xd_);
    const PackedBlock& b = m.blocks[0];
    input(b.branch.down.cols(), w_, xw_);
    if (!b.experts.empty()) input(b.experts[0].down.cols(), r_, xr_);
    y_ = Matrix<float>(1, 3 * s.d_model + 2 * std::max(b.branch.up.rows(), s.vocab));
  }
  [[gnu::noinline]] void run() {  // a symbol of its own for profilers
    for (const PackedBlock& b : m_.blocks) {
      apply(b.qkv, d_);
      apply(b.o, d_);
      apply(b.branch.up, d_);
      apply(b.branch.down, w_);
      if (!b.experts.empty()) {
        apply(b.experts[0].up, d_);
        apply(b.experts[0].down, r_);
      }
    }
    kernels::gemv_f32(d_.src.row(0), m_.head.view(), y_.row(0).subspan(0, m_.structure.vocab));
  }

 private:
  void apply(const PackedLinear& l, const ActivationBuffer& in) {
    // Each form reads the input it was packed for: FP32 forms the activations, INT8 forms q.
    ActivationRows rows = in.rows();
    if (l.input() == FormInput::kFp32) rows = {in.src, {}, {}, {}};
    l.apply(rows, MatrixView<float>(y_.data(), 1, l.rows(), y_.cols()));
  }
  const PackedModel& m_;
  Matrix<float> xd_, xw_, xr_, y_;
  ActivationBuffer d_, w_, r_;
};

// One decode step (a symbol of its own for profilers: its cost against GemvsAlone::run).
[[gnu::noinline]] int decode_step(Engine& engine, int token) {
  return Sampler::argmax(engine.step(token));
}

template <class V>
void BM_decode(benchmark::State& state, std::size_t experts, std::size_t threads) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  const PackedModel& m = model_for<V>(experts);
  Engine engine(m);
  std::vector<int> prompt(16);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int>((i * 37 + 11) % 256);
  (void)engine.prefill(prompt);
  int token = 1;
  const bool cpu = threads == 1;
  double step_s = 0.0, keys = 0.0;
  for (auto _ : state) {
    if (engine.position() == engine.context()) {
      state.PauseTiming();
      engine.reset();
      (void)engine.prefill(prompt);
      state.ResumeTiming();
    }
    keys += static_cast<double>(engine.position() + 1);
    const double t0 = now_s(cpu);
    token = decode_step(engine, token);
    step_s += now_s(cpu) - t0;
    benchmark::DoNotOptimize(token);
  }
  GemvsAlone gemvs(m);
  gemvs.run();  // warm, as the engine is by its prompt
  const double t0 = now_s(cpu);
  for (std::int64_t i = 0; i < state.iterations(); ++i) gemvs.run();
  const double gemvs_s = now_s(cpu) - t0;
  const double steps = static_cast<double>(state.iterations());
  state.counters["gemvs_us"] = 1e6 * gemvs_s / steps;
  state.counters["step_us"] = 1e6 * step_s / steps;
  state.counters["decode_over_gemvs"] = step_s / gemvs_s;
  // K and V read by the attention (FP32, every layer, the step's keys; mean over the steps).
  const ModelStructure& st = m.structure;
  state.counters["kv_bytes_per_token"] = 2.0 * static_cast<double>(st.layers() * st.d_model) *
                                         sizeof(float) * keys / steps;
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weight_bytes_per_token"] =
      static_cast<double>(m.accounting().active_bytes_per_token);
}

// The input side of one projection for one token: residual add, RMSNorm and INT8 quantization,
// fused (kernels::rmsnorm_quantize) or as three kernels. Counter: ns per token.
void BM_norm_quantize(benchmark::State& state, bool fused, std::size_t cols) {
  Rng rng(3);
  Matrix<float> x(1, cols), res(1, cols), a(1, cols), xq(1, cols);
  Matrix<std::int8_t> q(1, cols);
  std::vector<float> gain(cols), inv_rms(1), g(1);
  for (std::size_t c = 0; c < cols; ++c) {
    x(0, c) = static_cast<float>(rng.normal());
    res(0, c) = 1e-3f * static_cast<float>(rng.normal());
    gain[c] = 1.0f + 0.1f * static_cast<float>(rng.normal());
  }
  for (auto _ : state) {
    if (fused) {
      kernels::rmsnorm_quantize(x.view(), res.view(), gain, 1e-5f, a.view(), inv_rms, q.view(), g,
                                xq.view());
    } else {
      for (std::size_t c = 0; c < cols; ++c) x(0, c) += res(0, c);
      kernels::rmsnorm_forward(x.view(), gain, 1e-5f, a.view(), inv_rms);
      kernels::int8_absmax_quantize(a.view(), q.view(), g, xq.view());
    }
    benchmark::DoNotOptimize(q.data());
    benchmark::ClobberMemory();
  }
}

// Resident bytes of this process (/proc/self/statm), 0 where unavailable.
double resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0.0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return got == 2 ? static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE))
                  : 0.0;
}

// The pQuant N=1 file, written once per process and removed at exit.
const std::string& model_path() {
  struct File {
    std::filesystem::path dir;
    std::string path;
    File() {
      std::string pattern = (std::filesystem::temp_directory_path() / "bench_load_XXXXXX").string();
      dir = ::mkdtemp(pattern.data());
      path = (dir / "pquant700m.safetensors").string();
      save_model(random_packed_model<variants::PQuant<>>(paper_700m(1), 2026), path);
    }
    ~File() { std::filesystem::remove_all(dir); }
  };
  static const File file;
  return file.path;
}

void BM_load(benchmark::State& state, io::LoadMode mode) {
  const std::string& path = model_path();
  double grown = -1.0;
  for (auto _ : state) {
    const double before = resident_bytes();
    PackedModel m = load_model(path, mode);
    // The first load's growth: later ones may reuse memory the allocator kept from the previous.
    if (grown < 0.0) grown = resident_bytes() - before;
    benchmark::DoNotOptimize(m.blocks.data());
  }
  state.counters["file_bytes"] = static_cast<double>(std::filesystem::file_size(path));
  state.counters["resident_bytes"] = grown;
}

template <class V>
void register_variant(const char* name, std::vector<long> experts) {
  for (long e : experts)
    for (long t : {1, 2}) {
      const std::string full =
          std::string("BM_decode/") + name + "/" + std::to_string(e) + "/" + std::to_string(t);
      auto* b = benchmark::RegisterBenchmark(full.c_str(), BM_decode<V>, static_cast<std::size_t>(e),
                                             static_cast<std::size_t>(t))
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
      if (const char* n = std::getenv("PQUANT_BENCH_ITERATIONS"))
        b->Iterations(static_cast<benchmark::IterationCount>(std::strtoll(n, nullptr, 10)));
      else
        b->MinTime(0.5);
    }
}

void register_all() {
  for (long cols : {1536, 4096})
    for (bool fused : {true, false})
      benchmark::RegisterBenchmark(
          (std::string("BM_norm_quantize/") + (fused ? "fused/" : "separate/") +
           std::to_string(cols))
              .c_str(),
          BM_norm_quantize, fused, static_cast<std::size_t>(cols));
  register_variant<variants::PQuant<>>("pquant", {1, 8});
  register_variant<variants::BitNet158>("bitnet158", {1});
  register_variant<variants::BitNet>("bitnet", {1});
  register_variant<variants::FP>("fp32", {1});
  for (const auto& [name, mode] : {std::pair{"read", io::LoadMode::kRead},
                                   std::pair{"map", io::LoadMode::kMap}})
    benchmark::RegisterBenchmark((std::string("BM_load/") + name).c_str(), BM_load, mode)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(0.5);
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
