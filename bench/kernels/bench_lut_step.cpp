// What bounds the LUT GEMV's inner loop (docs/kernels.md, "What bounds it"): a standalone AVX2
// copy of one step (4 groups x 32 rows = 512 weights) over L1-resident indices and tables, and
// the same step with one part of the work removed or replaced. Not a kernel: the sums of the
// ablations are wrong on purpose; only the time per step matters. Run with
//   bench_lut_step --benchmark_repetitions=40 --benchmark_report_aggregates_only=true
// Counter ns_per_step = time per 512 weights; quote the "_min" rows.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace {

enum class Step { full, no_and, shuffle_as_add, no_widening };

constexpr std::size_t kPairs = 64;  // 2 KB of indices, 4 KB of tables: L1-resident

template <Step kStep>
__attribute__((target("avx2"), noinline)) std::uint64_t run_steps(const std::uint8_t* idx,
                                                                  const std::uint8_t* tab,
                                                                  int reps) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i weights = _mm256_set1_epi16(0x1001);  // (1, 16) multipliers
  __m256i lower = _mm256_setzero_si256(), upper = lower;
  for (int r = 0; r < reps; ++r) {
    for (std::size_t p = 0; p < kPairs; p += 2) {
      const __m256i v0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + p * 32));
      const __m256i v1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + p * 32 + 32));
      __m256i i0 = v0, i1 = _mm256_srli_epi16(v0, 4), i2 = v1, i3 = _mm256_srli_epi16(v1, 4);
      if constexpr (kStep != Step::no_and) {
        i0 = _mm256_and_si256(i0, nibble);
        i1 = _mm256_and_si256(i1, nibble);
        i2 = _mm256_and_si256(i2, nibble);
        i3 = _mm256_and_si256(i3, nibble);
      }
      const std::uint8_t* t = tab + p * 64;
      const auto lookup = [&](int j, __m256i i) __attribute__((target("avx2"))) {
        const __m256i table = _mm256_broadcastsi128_si256(
            _mm_load_si128(reinterpret_cast<const __m128i*>(t + 16 * j)));
        if constexpr (kStep == Step::shuffle_as_add) return _mm256_add_epi8(table, i);
        return _mm256_shuffle_epi8(table, i);
      };
      __m256i lo = lookup(0, i0), hi = lookup(1, i0);
      lo = _mm256_add_epi8(lo, lookup(2, i1));
      hi = _mm256_add_epi8(hi, lookup(3, i1));
      lo = _mm256_add_epi8(lo, lookup(4, i2));
      hi = _mm256_add_epi8(hi, lookup(5, i2));
      lo = _mm256_add_epi8(lo, lookup(6, i3));
      hi = _mm256_add_epi8(hi, lookup(7, i3));
      if constexpr (kStep == Step::no_widening) {
        lower = _mm256_add_epi8(lower, lo);
        upper = _mm256_add_epi8(upper, hi);
      } else {
        lower =
            _mm256_add_epi16(lower, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(lo, hi), weights));
        upper =
            _mm256_add_epi16(upper, _mm256_maddubs_epi16(_mm256_unpackhi_epi8(lo, hi), weights));
      }
    }
  }
  const __m256i both = _mm256_xor_si256(lower, upper);
  return static_cast<std::uint64_t>(_mm256_extract_epi64(both, 0));
}

template <Step kStep>
void BM_lut_step(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("needs AVX2");
    return;
  }
  alignas(32) static std::uint8_t idx[kPairs * 32];
  alignas(32) static std::uint8_t tab[kPairs * 64];
  std::uint32_t seed = 1;
  const auto next = [&] {
    return static_cast<std::uint8_t>((seed = seed * 1664525u + 1013904223u) >> 24);
  };
  for (auto& v : idx) v = next();
  for (auto& v : tab) v = static_cast<std::uint8_t>(next() % 61);  // table bytes are <= 60
  constexpr int kReps = 64;
  for (auto _ : state) benchmark::DoNotOptimize(run_steps<kStep>(idx, tab, kReps));
  // (steps / 1e9) per iteration as an inverted rate: nanoseconds per step.
  state.counters["ns_per_step"] = benchmark::Counter(
      double(kReps) * (kPairs / 2) / 1e9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// The machine is shared: the minimum over many short repetitions is the undisturbed time.
double min_of(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}
#define PQUANT_LUT_STEP(kind)        \
  BENCHMARK(BM_lut_step<Step::kind>) \
      ->Name("BM_lut_step/" #kind)   \
      ->MinTime(0.05)                \
      ->ComputeStatistics("min", min_of)
PQUANT_LUT_STEP(full);
PQUANT_LUT_STEP(no_and);
PQUANT_LUT_STEP(shuffle_as_add);
PQUANT_LUT_STEP(no_widening);

}  // namespace
#endif

BENCHMARK_MAIN();
