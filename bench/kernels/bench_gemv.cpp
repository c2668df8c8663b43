// GEMV benchmarks (issue 3): BM_gemv/<kind>/<rows>/<cols>/<threads> for f32, w8a8, w2a8, w1a8 and
// codebook2, and BM_read_bandwidth/<bytes>/<threads>, all with counters weights_per_s and
// weight_bytes_per_s so every ratio can be taken from one run. Run with
//   bench_gemv --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Timing does not depend on the weight values, so weights are filled with a cheap pattern.
#include <benchmark/benchmark.h>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdint>
#include <cstring>
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

void BM_gemv_w1a8(benchmark::State& state, std::size_t rows, std::size_t cols, int threads) {
  kernels::SignWeights w(rows, cols);
  fill_pattern(w.data(), w.bytes(), 1);
  const auto x = activations(cols);
  std::vector<float> y(rows), scale(rows, 0.5f);
  run_in_arena(state, threads, [&] {
    kernels::gemv_w1a8(x, w, {scale, 0.01f, {}}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(w.bytes()));
}

void BM_gemv_w2a8(benchmark::State& state, std::size_t rows, std::size_t cols, int threads) {
  kernels::TernaryWeights w(rows, cols);
  fill_pattern(w.data(), w.bytes(), 2);  // any 4-bit index is a valid table entry for timing
  const auto x = activations(cols);
  std::vector<float> y(rows), scale(rows, 0.5f);
  run_in_arena(state, threads, [&] {
    kernels::gemv_w2a8(x, w, {scale, 0.01f, {}}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(w.bytes()));
}

void BM_gemv_codebook2(benchmark::State& state, std::size_t rows, std::size_t cols, int threads) {
  kernels::CodebookWeights<2> w(rows, cols);
  fill_pattern(w.data(), w.bytes(), 3);
  const auto x = activations(cols);
  std::vector<float> y(rows);
  run_in_arena(state, threads, [&] {
    kernels::gemv_codebook<2>(x, w, 0.01f, {}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(w.bytes()));
}

void BM_gemv_w8a8(benchmark::State& state, std::size_t rows, std::size_t cols, int threads) {
  kernels::Int8Weights w(rows, cols);
  fill_pattern(reinterpret_cast<std::uint8_t*>(w.data()), rows * w.stride(), 4);
  // INT8 weights from the absmax quantizer lie in [-127, 127]: use that (faster) path.
  for (std::size_t i = 0; i < rows * w.stride(); ++i)
    if (w.data()[i] == -128) w.data()[i] = -127;
  w.update_symmetry();
  const auto x = activations(cols);
  std::vector<float> y(rows), scale(rows, 0.5f);
  run_in_arena(state, threads, [&] {
    kernels::gemv_w8a8(x, w, {scale, 0.01f, {}}, y);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(state, double(rows) * double(cols), double(rows) * double(w.stride()));
}

void BM_gemv_f32(benchmark::State& state, std::size_t rows, std::size_t cols, int threads) {
  Matrix<float> w(rows, cols);
  for (std::size_t i = 0; i < w.size(); ++i) w.data()[i] = float(i % 17) * 0.01f - 0.08f;
  std::vector<float> x(cols, 0.5f), y(rows);
  run_in_arena(state, threads, [&] {
    kernels::gemv_f32(x, w, y);
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

void BM_read_bandwidth(benchmark::State& state, std::size_t bytes, int threads) {
  const std::size_t n = bytes / sizeof(std::uint64_t);
  AlignedBuffer<std::uint64_t> buf(n);
  fill_pattern(reinterpret_cast<std::uint8_t*>(buf.data()), n * 8, 5);
  const std::size_t chunk = 1 << 16;  // 512 KiB per task, dynamically scheduled like the kernels
  std::vector<std::uint64_t> sums((n + chunk - 1) / chunk);
  run_in_arena(state, threads, [&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, sums.size(), 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t c = r.begin(); c != r.end(); ++c)
            sums[c] = read_streams(buf.data() + c * chunk, std::min(chunk, n - c * chunk));
        },
        tbb::simple_partitioner());
    benchmark::DoNotOptimize(sums.data());
  });
  set_counters(state, double(bytes) * 8.0, double(bytes));
}

struct Shape {
  std::size_t rows, cols;
};

// The DRAM-resident shape: 32768 x 20480 1-bit weights = 80 MiB packed (> 64 MiB, L3 is 32 MiB).
constexpr Shape kDram{32768, 20480};

int register_all() {
  const Shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {2048, 5460}};
  for (int threads : {1, 2}) {
    auto name = [&](const char* kind, Shape s) {
      return std::string("BM_gemv/") + kind + "/" + std::to_string(s.rows) + "/" +
             std::to_string(s.cols) + "/" + std::to_string(threads);
    };
    for (Shape s : shapes) {
      benchmark::RegisterBenchmark(name("f32", s).c_str(), BM_gemv_f32, s.rows, s.cols, threads)
          ->UseRealTime();
      benchmark::RegisterBenchmark(name("w8a8", s).c_str(), BM_gemv_w8a8, s.rows, s.cols, threads)
          ->UseRealTime();
      benchmark::RegisterBenchmark(name("w2a8", s).c_str(), BM_gemv_w2a8, s.rows, s.cols, threads)
          ->UseRealTime();
      benchmark::RegisterBenchmark(name("w1a8", s).c_str(), BM_gemv_w1a8, s.rows, s.cols, threads)
          ->UseRealTime();
      benchmark::RegisterBenchmark(name("codebook2", s).c_str(), BM_gemv_codebook2, s.rows, s.cols,
                                   threads)
          ->UseRealTime();
    }
    // F32 and INT8 at the DRAM shape would need 2.5 GiB / 640 MiB; the 11008x4096 F32 (172 MiB)
    // and W8A8 (43 MiB) rows above are already DRAM-resident.
    benchmark::RegisterBenchmark(name("w2a8", kDram).c_str(), BM_gemv_w2a8, kDram.rows, kDram.cols,
                                 threads)
        ->UseRealTime();
    benchmark::RegisterBenchmark(name("w1a8", kDram).c_str(), BM_gemv_w1a8, kDram.rows, kDram.cols,
                                 threads)
        ->UseRealTime();
    for (std::size_t bytes :
         {std::size_t{2} << 20, kDram.rows * kDram.cols / 8, std::size_t{11008} * 4096 * 4}) {
      benchmark::RegisterBenchmark(
          ("BM_read_bandwidth/" + std::to_string(bytes) + "/" + std::to_string(threads)).c_str(),
          BM_read_bandwidth, bytes, threads)
          ->UseRealTime();
    }
  }
  return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
