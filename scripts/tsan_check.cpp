// scripts/tsan.sh's check of its own toolchain: a tbb::parallel_for with a data race (argument
// "race": every chunk adds into one float) must be reported by ThreadSanitizer, the same loop
// without it must not (Debian's uninstrumented libtbb fails the second part). It also prints how
// many threads ran chunks: a race needs two.
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "race") == 0;
  std::vector<float> v(1 << 20, 1.0f);
  float sum = 0.0f;
  std::atomic<unsigned> threads{0};
  for (int rep = 0; rep < 20; ++rep) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, v.size(), 1024), [&](const auto& r) {
      threads.fetch_or(1u << (tbb::this_task_arena::current_thread_index() % 32));
      for (std::size_t i = r.begin(); i < r.end(); ++i) {
        v[i] = v[i] * 0.5f + 1.0f;  // disjoint elements: no race
        if (race && i % 4096 == 0) sum += v[i];
      }
    });
  }
  std::printf("threads that ran chunks: %d, sum %g\n", std::popcount(threads.load()),
              static_cast<double>(sum));
  return 0;
}
