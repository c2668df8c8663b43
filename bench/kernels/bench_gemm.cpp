// Training GEMM benchmarks: BM_gemm/<op>/<M>/<N>/<K>/<threads> for the forward (Y = X W^T),
// backward-data (dX = dY W) and backward-weights (dW += dY^T X) FP32 GEMMs and the integer W1A8
// and W2A8 GEMMs of the QAT forward, at the training shapes (M = batch * T = 2048 tokens, d_model
// 128-256, FFN widths up to 4 d_model). Counter GFLOP_per_s = 2 M N K / time, tokens_per_s = M /
// time. The prefill rows (M = 8, 24, 32 tokens through 4096 x 4096) come with the W1A8 GEMV of the
// same matrix (BM_gemm/gemv_w1a8/1/4096/4096/<threads>), so their time per token can be compared
// with one GEMV in the same run.
#include <benchmark/benchmark.h>

#include <oneapi/tbb/task_arena.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pquant/kernels.hpp"

namespace {

using namespace pquant;

Matrix<float> filled(std::size_t r, std::size_t c, float phase) {
  Matrix<float> m(r, c);
  for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = float((i * 7 + 3) % 23) * 0.01f - phase;
  return m;
}

enum class Op { forward, backward_data, backward_weights, w1a8, w2a8, w8a8, gemv_w1a8 };

void BM_gemm(benchmark::State& state, Op op, std::size_t m, std::size_t n, std::size_t k,
             int threads) {
  const auto x = filled(m, k, 0.1f), w = filled(n, k, 0.11f), dy = filled(m, n, 0.12f);
  Matrix<float> y(m, n), dx(m, k), dw(n, k);
  Matrix<std::int8_t> xq(m, k), wq(n, k);
  for (std::size_t i = 0; i < xq.size(); ++i) xq.data()[i] = static_cast<std::int8_t>(i * 37 % 255);
  for (std::size_t i = 0; i < wq.size(); ++i) wq.data()[i] = (i * 13 % 7) < 3 ? 1 : -1;
  const auto w1 = kernels::pack_sign(wq);
  const auto w2 = kernels::pack_ternary(wq);
  const auto w8 = kernels::pack_int8(wq);
  tbb::task_arena arena(threads);
  arena.execute([&] {
    for (auto _ : state) {
      switch (op) {
        case Op::forward:
          kernels::gemm_forward(x, w, y);
          break;
        case Op::backward_data:
          kernels::gemm_backward_data(dy, w, dx);
          break;
        case Op::backward_weights:
          kernels::gemm_backward_weights(dy, x, dw);
          break;
        case Op::w1a8:
          kernels::gemm_w1a8(xq, w1, {}, y);
          break;
        case Op::w2a8:
          kernels::gemm_w2a8(xq, w2, {}, y);
          break;
        case Op::w8a8:
          kernels::gemm_w8a8(xq, w8, {}, y);
          break;
        case Op::gemv_w1a8:
          kernels::gemv_w1a8(xq.row(0), w1, {}, y.row(0));
          break;
      }
      benchmark::ClobberMemory();
    }
  });
  state.counters["GFLOP_per_s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(m), benchmark::Counter::kIsIterationInvariantRate);
}

int register_all() {
  struct Shape {
    std::size_t m, n, k;
  };
  const Shape shapes[] = {
      {2048, 128, 128}, {2048, 256, 256}, {2048, 768, 256}, {2048, 256, 768}, {2048, 1024, 256}};
  const std::pair<Op, const char*> ops[] = {{Op::forward, "forward"},
                                            {Op::backward_data, "backward_data"},
                                            {Op::backward_weights, "backward_weights"},
                                            {Op::w1a8, "w1a8"},
                                            {Op::w2a8, "w2a8"}};
  auto add = [](Op op, const char* op_name, Shape s, int threads) {
    benchmark::RegisterBenchmark(
        (std::string("BM_gemm/") + op_name + "/" + std::to_string(s.m) + "/" + std::to_string(s.n) +
         "/" + std::to_string(s.k) + "/" + std::to_string(threads))
            .c_str(),
        BM_gemm, op, s.m, s.n, s.k, threads)
        ->UseRealTime();
  };
  // Prompt prefill: a few tokens through a large low-bit or INT8 matrix (weights read once per
  // call).
  const Shape prefill[] = {{8, 4096, 4096}, {24, 4096, 4096}, {32, 4096, 4096}, {32, 1536, 1536}};
  for (int threads : {1, 2}) {
    add(Op::gemv_w1a8, "gemv_w1a8", {1, 4096, 4096}, threads);
    for (auto [op, op_name] : {std::pair{Op::w1a8, "w1a8"}, std::pair{Op::w2a8, "w2a8"},
                               std::pair{Op::w8a8, "w8a8"}})
      for (Shape s : prefill) add(op, op_name, s, threads);
  }
  for (int threads : {1, 2})
    for (auto [op, op_name] : ops)
      for (Shape s : shapes) add(op, op_name, s, threads);
  return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
