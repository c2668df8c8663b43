// GEMV benchmarks: BM_gemv/<kind>/<rows>/<cols>/<threads> for f32, w8a8, w2a8, w1a8 and
// codebook2 on one weight matrix (cache-resident when it fits the last-level cache), and
// BM_read_bandwidth/<bytes>/<threads>, the plain streaming read of one buffer. The DRAM rows
// BM_gemv_dram/<kind>/<rows>/<cols>/<threads> and BM_read_bandwidth_dram/<bytes>/<threads> rotate
// over copies whose total is at least twice the last-level cache that sysfs reports (each
// iteration reads the next copy, last touched a whole rotation earlier), so they stream from DRAM
// on any machine; their ratio is the kernel's share of the read bandwidth measured in the same run.
// Every row has the counters weights_per_s and weight_bytes_per_s. Run with
//   bench_gemv --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Timing does not depend on the weight values, so weights are filled with a cheap pattern.
#include <benchmark/benchmark.h>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <string>
#include <vector>

#include "pquant/kernels.hpp"

namespace {

using namespace pquant;

void fill_pattern(std::uint8_t* p, std::size_t n, std::uint32_t seed) {
  std::uint32_t s = seed;
  for (std::size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = static_cast<std::uint8_t>(s >> 24);
  }
}

void set_counters(benchmark::State& state, double weights, double bytes) {
  state.counters["weights_per_s"] =
      benchmark::Counter(weights, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_bytes_per_s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

template <class Body>
void run_in_arena(benchmark::State& state, int threads, Body body) {
  tbb::task_arena arena(threads);
  arena.execute([&] {
    for (auto _ : state) body();
  });
}

std::vector<std::int8_t> activations(std::size_t k) {
  std::vector<std::int8_t> x(k);
  fill_pattern(reinterpret_cast<std::uint8_t*>(x.data()), k, 7);
  return x;
}

// The last-level cache as sysfs reports it for cpu0 (the largest size among the highest level's
// data or unified caches), or 0 when it cannot be read (then the DRAM rows assume 256 MiB).
std::size_t last_level_cache_bytes() {
  std::size_t best_level = 0, best = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), size_file(dir + "size"), type_file(dir + "type");
    std::size_t level = 0;
    std::string size, type;
    if (!(level_file >> level) || !(size_file >> size) || !(type_file >> type)) continue;
    if (type == "Instruction" || size.empty()) continue;
    std::size_t bytes = std::stoull(size);
    const char unit = size.back();
    if (unit == 'K') bytes <<= 10;
    if (unit == 'M') bytes <<= 20;
    if (unit == 'G') bytes <<= 30;
    if (level > best_level || (level == best_level && bytes > best)) {
      best_level = level;
      best = bytes;
    }
  }
  return best;
}

const std::size_t kLlcBytes = last_level_cache_bytes();
const std::size_t kDramTotal = 2 * (kLlcBytes != 0 ? kLlcBytes : std::size_t{256} << 20);

// Copies of `bytes` each whose total is at least kDramTotal (1 for the cache-resident rows).
std::size_t copies_for(std::size_t bytes, bool dram) {
  return dram ? std::max<std::size_t>(1, (kDramTotal + bytes - 1) / bytes) : 1;
}

template <class W>
void fill_weights(W& w, std::uint32_t seed) {
  fill_pattern(w.data(), w.bytes(), seed);  // any 4-bit index is a valid table entry for timing
}

// One GEMV per iteration, on copy (iteration mod copies).
template <class W, class Run>
void bench_rotating(benchmark::State& state, std::vector<W>& copies, int threads, Run run) {
  std::size_t c = 0;
  run_in_arena(state, threads, [&] {
    run(copies[c]);
    c = c + 1 == copies.size() ? 0 : c + 1;
  });
  state.counters["copies"] = static_cast<double>(copies.size());
}

void BM_gemv_w1a8(benchmark::State& state, std::size_t rows, std::size_t cols, int threads,
                  bool dram) {
  std::vector<kernels::SignWeights> w;
  for (std::size_t i = 0, n = copies_for(rows * cols / 8, dram); i < n; ++i) {
    w.emplace_back(rows, cols);
    fill_weights(w.back(), 1);
  }
  const auto x = activations(cols);
  std::vector<float> y(rows), scale(rows, 0.5f);
  bench_rotating(state, w, threads, [&](const kernels::SignWeights& m) {
    kernels::gemv_w1a8(x, m, {scale, 0.01f, {}}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(w[0].bytes()));
}

void BM_gemv_w2a8(benchmark::State& state, std::size_t rows, std::size_t cols, int threads,
                  bool dram) {
  std::vector<kernels::TernaryWeights> w;
  for (std::size_t i = 0, n = copies_for(rows * cols / 4, dram); i < n; ++i) {
    w.emplace_back(rows, cols);
    fill_weights(w.back(), 2);
  }
  const auto x = activations(cols);
  std::vector<float> y(rows), scale(rows, 0.5f);
  bench_rotating(state, w, threads, [&](const kernels::TernaryWeights& m) {
    kernels::gemv_w2a8(x, m, {scale, 0.01f, {}}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(w[0].bytes()));
}

void BM_gemv_codebook2(benchmark::State& state, std::size_t rows, std::size_t cols, int threads,
                       bool dram) {
  std::vector<kernels::CodebookWeights<2>> w;
  for (std::size_t i = 0, n = copies_for(rows * cols / 4, dram); i < n; ++i) {
    w.emplace_back(rows, cols);
    fill_weights(w.back(), 3);
  }
  const auto x = activations(cols);
  std::vector<float> y(rows);
  bench_rotating(state, w, threads, [&](const kernels::CodebookWeights<2>& m) {
    kernels::gemv_codebook<2>(x, m, 0.01f, {}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(w[0].bytes()));
}

void BM_gemv_w8a8(benchmark::State& state, std::size_t rows, std::size_t cols, int threads,
                  bool dram) {
  std::vector<kernels::Int8Weights> w;
  for (std::size_t i = 0, n = copies_for(rows * cols, dram); i < n; ++i) {
    kernels::Int8Weights& m = w.emplace_back(rows, cols);
    fill_pattern(reinterpret_cast<std::uint8_t*>(m.data()), rows * m.stride(), 4);
    // INT8 weights from the absmax quantizer lie in [-127, 127]: use that path.
    for (std::size_t j = 0; j < rows * m.stride(); ++j)
      if (m.data()[j] == -128) m.data()[j] = -127;
    m.update_symmetry();
  }
  const auto x = activations(cols);
  std::vector<float> y(rows), scale(rows, 0.5f);
  bench_rotating(state, w, threads, [&](const kernels::Int8Weights& m) {
    kernels::gemv_w8a8(x, m, {scale, 0.01f, {}}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(rows) * double(w[0].stride()));
}

void BM_gemv_f32(benchmark::State& state, std::size_t rows, std::size_t cols, int threads,
                 bool dram) {
  std::vector<Matrix<float>> w;
  for (std::size_t i = 0, n = copies_for(rows * cols * 4, dram); i < n; ++i) {
    Matrix<float>& m = w.emplace_back(rows, cols);
    for (std::size_t j = 0; j < m.size(); ++j) m.data()[j] = float(j % 17) * 0.01f - 0.08f;
  }
  std::vector<float> x(cols, 0.5f), y(rows);
  bench_rotating(state, w, threads, [&](const Matrix<float>& m) {
    kernels::gemv_f32(x, m, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(rows) * double(cols) * 4.0);
}

// Streaming read of `bytes` (the ceiling every GEMV is measured against); weights_per_s counts the
// 1-bit weights those bytes would hold (8 per byte).
// One task's streaming read: kStreams interleaved sequential streams, each prefetched kAhead
// bytes ahead (one stream per core leaves most of the DRAM bandwidth unused on this machine type,
// and the hardware prefetchers stop at page boundaries). With AVX2 where the CPU has it, so that
// the bound is the fastest plain read we know how to write, not a slow loop.
constexpr std::size_t kStreams = 4;
constexpr std::size_t kAhead = 512;

std::uint64_t read_streams_scalar(const std::uint64_t* p, std::size_t words) {
  const std::size_t len = words / kStreams;
  std::uint64_t s[kStreams] = {};
  for (std::size_t i = 0; i < len; ++i)
    for (std::size_t j = 0; j < kStreams; ++j) s[j] += p[j * len + i];
  std::uint64_t total = 0;
  for (std::size_t i = kStreams * len; i < words; ++i) total += p[i];
  for (std::uint64_t v : s) total += v;
  return total;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) std::uint64_t read_streams_avx2(const std::uint64_t* p,
                                                                 std::size_t words) {
  const std::size_t len = words / kStreams / 4 * 4;  // whole 32-byte vectors per stream
  __m256i s[kStreams];
  for (auto& v : s) v = _mm256_setzero_si256();
  for (std::size_t i = 0; i < len; i += 4)
    for (std::size_t j = 0; j < kStreams; ++j) {
      const std::uint64_t* q = p + j * len + i;
      _mm_prefetch(reinterpret_cast<const char*>(q) + kAhead, _MM_HINT_T0);
      s[j] = _mm256_add_epi64(s[j], _mm256_load_si256(reinterpret_cast<const __m256i*>(q)));
    }
  __m256i t = s[0];
  for (std::size_t j = 1; j < kStreams; ++j) t = _mm256_add_epi64(t, s[j]);
  std::uint64_t total = static_cast<std::uint64_t>(_mm256_extract_epi64(t, 0)) +
                        static_cast<std::uint64_t>(_mm256_extract_epi64(t, 1)) +
                        static_cast<std::uint64_t>(_mm256_extract_epi64(t, 2)) +
                        static_cast<std::uint64_t>(_mm256_extract_epi64(t, 3));
  for (std::size_t i = kStreams * len; i < words; ++i) total += p[i];
  return total;
}
const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
#endif

std::uint64_t read_streams(const std::uint64_t* p, std::size_t words) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (kHaveAvx2) return read_streams_avx2(p, words);
#endif
  return read_streams_scalar(p, words);
}

// Reads one buffer of `bytes` per iteration, rotating over copies (see copies_for).
void BM_read_bandwidth(benchmark::State& state, std::size_t bytes, int threads, bool dram) {
  const std::size_t n = bytes / sizeof(std::uint64_t);
  std::vector<AlignedBuffer<std::uint64_t>> bufs;
  for (std::size_t i = 0, copies = copies_for(bytes, dram); i < copies; ++i) {
    bufs.emplace_back(n);
    fill_pattern(reinterpret_cast<std::uint8_t*>(bufs.back().data()), n * 8, 5);
  }
  const std::size_t chunk = 1 << 16;  // 512 KiB per task, dynamically scheduled like the kernels
  std::vector<std::uint64_t> sums((n + chunk - 1) / chunk);
  std::size_t c = 0;
  run_in_arena(state, threads, [&] {
    const std::uint64_t* buf = bufs[c].data();
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, sums.size(), 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t i = r.begin(); i != r.end(); ++i)
            sums[i] = read_streams(buf + i * chunk, std::min(chunk, n - i * chunk));
        },
        tbb::simple_partitioner());
    benchmark::DoNotOptimize(sums.data());
    c = c + 1 == bufs.size() ? 0 : c + 1;
  });
  state.counters["copies"] = static_cast<double>(bufs.size());
  set_counters(state, double(bytes) * 8.0, double(bytes));
}

struct Shape {
  std::size_t rows, cols;
};

int register_all() {
  benchmark::AddCustomContext("last_level_cache_bytes", std::to_string(kLlcBytes));
  benchmark::AddCustomContext("dram_rotation_bytes", std::to_string(kDramTotal));
  using Fn = void (*)(benchmark::State&, std::size_t, std::size_t, int, bool);
  const std::pair<const char*, Fn> kinds[] = {{"f32", BM_gemv_f32},
                                              {"w8a8", BM_gemv_w8a8},
                                              {"w2a8", BM_gemv_w2a8},
                                              {"w1a8", BM_gemv_w1a8},
                                              {"codebook2", BM_gemv_codebook2}};
  const Shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {2048, 5460}};
  // The DRAM rows: the headline shape, every kind but the (compute-bound) codebook.
  const Shape dram = {4096, 4096};
  for (int threads : {1, 2}) {
    auto name = [&](const char* prefix, const char* kind, Shape s) {
      return std::string(prefix) + kind + "/" + std::to_string(s.rows) + "/" +
             std::to_string(s.cols) + "/" + std::to_string(threads);
    };
    for (Shape s : shapes)
      for (auto [kind, fn] : kinds)
        benchmark::RegisterBenchmark(name("BM_gemv/", kind, s).c_str(), fn, s.rows, s.cols,
                                     threads, false)
            ->UseRealTime();
    for (auto [kind, fn] : kinds)
      if (std::string(kind) != "codebook2")
        benchmark::RegisterBenchmark(name("BM_gemv_dram/", kind, dram).c_str(), fn, dram.rows,
                                     dram.cols, threads, true)
            ->UseRealTime();
    // The INT8 expert of a 700M pQuant block (d 1536, r 256): its up (gate and up, 2r rows) and
    // down projections, small enough that the per-call input and epilogue work shows.
    for (Shape s : {Shape{512, 1536}, Shape{1536, 256}})
      for (bool from_dram : {false, true})
        benchmark::RegisterBenchmark(
            name(from_dram ? "BM_gemv_dram/" : "BM_gemv/", "w8a8", s).c_str(), BM_gemv_w8a8,
            s.rows, s.cols, threads, from_dram)
            ->UseRealTime();
    // Read bandwidth: 2 MiB (an L2-sized buffer, read again every iteration), and from DRAM in
    // buffers the size of the W1A8 and W2A8 DRAM rows' copies.
    const std::size_t w1_bytes = dram.rows * dram.cols / 8;
    benchmark::RegisterBenchmark(
        ("BM_read_bandwidth/" + std::to_string(std::size_t{2} << 20) + "/" +
         std::to_string(threads))
            .c_str(),
        BM_read_bandwidth, std::size_t{2} << 20, threads, false)
        ->UseRealTime();
    for (std::size_t bytes : {w1_bytes, 2 * w1_bytes})
      benchmark::RegisterBenchmark(("BM_read_bandwidth_dram/" + std::to_string(bytes) + "/" +
                                    std::to_string(threads))
                                       .c_str(),
                                   BM_read_bandwidth, bytes, threads, true)
          ->UseRealTime();
  }
  return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
