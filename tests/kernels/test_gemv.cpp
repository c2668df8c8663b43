// GEMV kernels vs the scalar references, on every supported target: bit-exact on integer paths.
#include <gtest/gtest.h>

#include <oneapi/tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "kernel_test_util.hpp"
#include "pquant/kernels.hpp"

namespace pquant::test {
namespace {

using kernels::GemvEpilogue;

struct Shape {
  std::size_t n, k;
};
// Not multiples of anything (1x1, 3x7, 127x129), tile/vector edges, and the headline shape.
const Shape kShapes[] = {{1, 1}, {3, 7}, {127, 129}, {32, 8}, {33, 264}, {65, 4096}, {4096, 4096}};

enum class Kind { w1, w2, w8 };

Matrix<std::int8_t> weights_for(Kind kind, std::size_t n, std::size_t k, std::uint32_t seed) {
  switch (kind) {
    case Kind::w1:
      return random_sign(n, k, seed);
    case Kind::w2:
      return random_int8(n, k, -1, 1, seed);
    default:
      return random_int8(n, k, -128, 127, seed);
  }
}

void run_kernel(Kind kind, std::span<const std::int8_t> x, MatrixView<const std::int8_t> w,
                const GemvEpilogue& ep, std::span<float> y) {
  switch (kind) {
    case Kind::w1:
      kernels::gemv_w1a8(x, kernels::pack_sign(w), ep, y);
      break;
    case Kind::w2:
      kernels::gemv_w2a8(x, kernels::pack_ternary(w), ep, y);
      break;
    case Kind::w8:
      kernels::gemv_w8a8(x, kernels::pack_int8(w), ep, y);
      break;
  }
}

// Compares bit patterns (so -0 vs +0 or a NaN would show up too).
void expect_bit_equal(std::span<const float> a, std::span<const float> b) {
  ASSERT_EQ(a.size(), b.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && bad++ < 5)
      ADD_FAILURE() << "element " << i << ": " << a[i] << " vs reference " << b[i];
  EXPECT_EQ(bad, 0u);
}

void check_kind(Kind kind, std::size_t n, std::size_t k, std::uint32_t seed, bool residual) {
  SCOPED_TRACE(testing::Message() << "kind " << int(kind) << " shape " << n << "x" << k);
  const auto w = weights_for(kind, n, k, seed);
  const auto xm = random_int8(1, k, -128, 127, seed + 1);
  std::span<const std::int8_t> x(xm.data(), k);
  const auto row_scale = random_floats(n, 0.01f, 2.0f, seed + 2);
  const auto res = random_floats(n, -3.0f, 3.0f, seed + 3);
  GemvEpilogue ep{row_scale, 0.0123f,
                  residual ? std::span<const float>(res) : std::span<const float>()};
  std::vector<float> y(n), ref(n);
  run_kernel(kind, x, w, ep, y);
  kernels::reference::gemv_int(x, w, ep, ref);
  expect_bit_equal(y, ref);
}

class Gemv : public PerTarget {};

TEST_P(Gemv, W1A8MatchesReferenceBitExactly) {
  for (const Shape& s : kShapes) check_kind(Kind::w1, s.n, s.k, 11, s.n % 2 == 1);
}
TEST_P(Gemv, W2A8MatchesReferenceBitExactly) {
  for (const Shape& s : kShapes) check_kind(Kind::w2, s.n, s.k, 12, s.n % 2 == 0);
}
TEST_P(Gemv, W8A8MatchesReferenceBitExactly) {
  for (const Shape& s : kShapes) check_kind(Kind::w8, s.n, s.k, 13, s.n % 2 == 1);
}

TEST_P(Gemv, W8A8SymmetricWeightsPathIsExact) {
  // Weights in [-127, 127] (what the absmax quantizer produces) take the |x| * sign(w, x) path on
  // x86; -128 anywhere falls back to widening. Both must equal the reference.
  for (const Shape& s : kShapes) {
    auto w = random_int8(s.n, s.k, -127, 127, 61);
    const auto packed = kernels::pack_int8(w);
    ASSERT_TRUE(packed.symmetric());
    const auto xm = random_int8(1, s.k, -128, 127, 62);
    std::span<const std::int8_t> x(xm.data(), s.k);
    const auto rs = random_floats(s.n, 0.1f, 1.0f, 63);
    std::vector<float> y(s.n), ref(s.n);
    kernels::gemv_w8a8(x, packed, {rs, 0.5f, {}}, y);
    kernels::reference::gemv_int(x, w, {rs, 0.5f, {}}, ref);
    expect_bit_equal(y, ref);
    w(s.n - 1, s.k - 1) = -128;
    EXPECT_FALSE(kernels::pack_int8(w).symmetric());
  }
  // Extremes of the symmetric path: x = -128 against w = -127 everywhere (pairs of 16256).
  const std::size_t k = 4096;
  Matrix<std::int8_t> x(1, k), w(5, k);
  for (auto& v : x.flat()) v = -128;
  for (auto& v : w.flat()) v = -127;
  std::vector<float> y(5);
  kernels::gemv_w8a8({x.data(), k}, kernels::pack_int8(w), {}, y);
  for (float v : y) EXPECT_EQ(v, 4096.0f * 16256.0f);
}

TEST_P(Gemv, ResidualMayBeTheOutput) {
  // y += W x / 10 in place, with no row scale, one per tensor, and one per row: the fused
  // epilogues of the LUT and INT8 kernels read each residual before they write its row.
  const std::size_t n = 100, k = 300;
  const auto xm = random_int8(1, k, -128, 127, 72);
  std::span<const std::int8_t> x(xm.data(), k);
  const auto res = random_floats(n, -1.0f, 1.0f, 73);
  const auto per_row = random_floats(n, 0.5f, 2.0f, 74);
  const float per_tensor[] = {0.75f};
  for (Kind kind : {Kind::w1, Kind::w2, Kind::w8})
    for (std::span<const float> rs : {std::span<const float>(), std::span<const float>(per_tensor),
                                      std::span<const float>(per_row)}) {
      SCOPED_TRACE(testing::Message() << "kind " << int(kind) << ", " << rs.size() << " scales");
      const auto w = weights_for(kind, n, k, 71);
      std::vector<float> y(res), ref(n);
      run_kernel(kind, x, w, {rs, 0.1f, y}, y);
      kernels::reference::gemv_int(x, w, {rs, 0.1f, res}, ref);
      expect_bit_equal(y, ref);
    }
}

TEST_P(Gemv, W1A8LargeShape11008x4096) {
  check_kind(Kind::w1, 11008, 4096, 14, true);
}

TEST_P(Gemv, IntegerExtremesAreExact) {
  // Largest |accumulator| per kernel: all activations -128 against all weights of one sign, and
  // +127 against +1; the LUT kernel's 16-step uint16 blocks then sit exactly at their bound
  // (65280). K = 3140: whole 128-group visits, then a partial one ending in a partial block.
  for (std::size_t k : {std::size_t{4096}, std::size_t{4095}, std::size_t{3140}}) {
    for (int xv : {-128, 127}) {
      for (int wv : {-1, 1}) {
        Matrix<std::int8_t> x(1, k), w(37, k), w8(37, k);
        for (auto& v : x.flat()) v = static_cast<std::int8_t>(xv);
        for (auto& v : w.flat()) v = static_cast<std::int8_t>(wv);
        for (auto& v : w8.flat()) v = static_cast<std::int8_t>(wv < 0 ? -128 : 127);
        std::vector<float> y(37), ref(37);
        const GemvEpilogue ep{};
        std::span<const std::int8_t> xs(x.data(), k);
        kernels::gemv_w1a8(xs, kernels::pack_sign(w), ep, y);
        kernels::reference::gemv_int(xs, w, ep, ref);
        expect_bit_equal(y, ref);
        EXPECT_EQ(y[0], static_cast<float>(static_cast<long>(k) * xv * wv));
        kernels::gemv_w2a8(xs, kernels::pack_ternary(w), ep, y);
        expect_bit_equal(y, ref);
        kernels::gemv_w8a8(xs, kernels::pack_int8(w8), ep, y);
        kernels::reference::gemv_int(xs, w8, ep, ref);
        expect_bit_equal(y, ref);
      }
    }
  }
}

TEST_P(Gemv, W8A8AtTheInt32LimitIsExactAndBeyondIsAnError) {
  // K = kMaxKInt8 with every product at +16384 is the largest int32 sum: 2147467264.
  const std::size_t k = kernels::kMaxKInt8;
  Matrix<std::int8_t> x(1, k), w(2, k);
  for (auto& v : x.flat()) v = -128;
  for (auto& v : w.flat()) v = -128;
  std::vector<float> y(2);
  kernels::gemv_w8a8({x.data(), k}, kernels::pack_int8(w), {}, y);
  EXPECT_EQ(y[0], static_cast<float>(2147467264));
  Matrix<std::int8_t> x2(1, k + 1), w2(1, k + 1);
  std::vector<float> y2(1);
  EXPECT_THROW(kernels::gemv_w8a8({x2.data(), k + 1}, kernels::pack_int8(w2), {}, y2), ShapeError);
}

TEST_P(Gemv, W8A8LargeUnsignedOffsetSumsAreExact) {
  // AVX3_DL adds (x + 128) w into int32 lanes: with x = 127 the biased sums pass 2^31 and wrap
  // before the 128 sum(w) correction brings them back (w = 127: +2114060159, w = -128: -2130705408).
  const std::size_t k = kernels::kMaxKInt8;
  Matrix<std::int8_t> x(1, k), w(2, k);
  for (auto& v : x.flat()) v = 127;
  for (std::size_t c = 0; c < k; ++c) {
    w(0, c) = 127;
    w(1, c) = -128;
  }
  std::vector<float> y(2), ref(2);
  kernels::gemv_w8a8({x.data(), k}, kernels::pack_int8(w), {}, y);
  kernels::reference::gemv_int({x.data(), k}, w, {}, ref);
  expect_bit_equal(y, ref);
}

TEST_P(Gemv, CodebookMatchesReferenceBitExactly) {
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{127, 129}, Shape{300, 1000}}) {
    auto check = [&](auto bits_tag) {
      constexpr unsigned kBits = decltype(bits_tag)::value;
      const std::size_t entries = 1u << kBits;
      Matrix<std::uint8_t> codes(s.n, s.k);
      const auto raw = random_int8(s.n, s.k, 0, static_cast<int>(entries) - 1, 21 + kBits);
      for (std::size_t i = 0; i < codes.size(); ++i)
        codes.flat()[i] = static_cast<std::uint8_t>(raw.flat()[i]);
      Matrix<float> books(s.n, entries);
      const auto bv = random_floats(s.n * entries, -1.0f, 1.0f, 22);
      std::copy(bv.begin(), bv.end(), books.flat().begin());
      PackedMatrix<CodebookIndex<kBits>, PerRow, RowMajor> pm(s.n, s.k);
      for (std::size_t r = 0; r < s.n; ++r)
        for (std::size_t c = 0; c < s.k; ++c) pm.set_code(r, c, codes(r, c));
      std::copy(bv.begin(), bv.end(), pm.params().begin());
      const auto packed = kernels::pack_lut(pm.view());
      const auto xm = random_int8(1, s.k, -128, 127, 23);
      std::span<const std::int8_t> x(xm.data(), s.k);
      const auto res = random_floats(s.n, -1.0f, 1.0f, 24);
      std::vector<float> y(s.n), ref(s.n);
      kernels::gemv_codebook<kBits>(x, packed, 0.01f, res, y);
      kernels::reference::gemv_codebook(x, codes, books, 0.01f, res, ref);
      expect_bit_equal(y, ref);
    };
    check(std::integral_constant<unsigned, 1>{});
    check(std::integral_constant<unsigned, 2>{});
    check(std::integral_constant<unsigned, 4>{});
  }
}

TEST_P(Gemv, F32MatchesDoubleReference) {
  for (const Shape& s : kShapes) {
    const auto w = random_matrix(s.n, s.k, 31);
    const auto x = random_floats(s.k, -1.0f, 1.0f, 32);
    const auto res = random_floats(s.n, -1.0f, 1.0f, 33);
    std::vector<float> y(s.n);
    kernels::gemv_f32(x, w, y, res);
    for (std::size_t n = 0; n < s.n; ++n) {
      double ref = 0.0, bound = 0.0;
      for (std::size_t k = 0; k < s.k; ++k) {
        ref += double(w(n, k)) * x[k];
        bound += std::abs(double(w(n, k)) * x[k]);
      }
      ref += res[n];
      bound += std::abs(res[n]);
      // Recursive/pairwise float summation of K products: |error| <= gamma_(K+1) * sum |terms|,
      // gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability, 3.1).
      const double u = std::ldexp(1.0, -24), n1 = double(s.k + 2);
      ASSERT_LE(std::abs(y[n] - ref), n1 * u / (1 - n1 * u) * bound + 1e-30) << s.n << "x" << s.k;
    }
  }
}

TEST_P(Gemv, ResultsDoNotDependOnThreadCount) {
  const std::size_t n = 1000, k = 777;
  const auto w1 = random_sign(n, k, 41);
  const auto w8 = random_int8(n, k, -128, 127, 42);
  const auto wf = random_matrix(n, k, 43);
  const auto xm = random_int8(1, k, -128, 127, 44);
  const auto xf = random_floats(k, -1.0f, 1.0f, 45);
  std::span<const std::int8_t> x(xm.data(), k);
  const auto s1 = kernels::pack_sign(w1);
  const auto s8 = kernels::pack_int8(w8);
  auto run = [&](int threads) {
    std::vector<float> out(3 * n);
    tbb::task_arena arena(threads);
    arena.execute([&] {
      kernels::gemv_w1a8(x, s1, {}, std::span<float>(out).subspan(0, n));
      kernels::gemv_w8a8(x, s8, {}, std::span<float>(out).subspan(n, n));
      kernels::gemv_f32(xf, wf, std::span<float>(out).subspan(2 * n, n));
    });
    return out;
  };
  const auto one = run(1);
  expect_bit_equal(run(2), one);
  expect_bit_equal(run(7), one);
}

TEST_P(Gemv, BadArgumentsThrow) {
  const auto w = random_sign(4, 10, 51);
  const auto sw = kernels::pack_sign(w);
  const auto tw = kernels::pack_ternary(w);
  const auto iw = kernels::pack_int8(w);
  std::vector<std::int8_t> x(10), x_short(9);
  std::vector<float> y(4), y_short(3), scales3(3), res3(3);
  EXPECT_THROW(kernels::gemv_w1a8(x_short, sw, {}, y), ShapeError);
  EXPECT_THROW(kernels::gemv_w1a8(x, sw, {}, y_short), ShapeError);
  EXPECT_THROW(kernels::gemv_w1a8(x, sw, {scales3, 1.0f, {}}, y), ShapeError);
  EXPECT_THROW(kernels::gemv_w1a8(x, sw, {{}, 1.0f, res3}, y), ShapeError);
  EXPECT_THROW(kernels::gemv_w2a8(x_short, tw, {}, y), ShapeError);
  EXPECT_THROW(kernels::gemv_w8a8(x, iw, {}, y_short), ShapeError);
  Matrix<float> wf(4, 10);
  std::vector<float> xf(10), xf_short(9);
  EXPECT_THROW(kernels::gemv_f32(xf_short, wf, y), ShapeError);
  EXPECT_THROW(kernels::gemv_f32(xf, MatrixView<const float>{}, y), ShapeError);
  try {
    kernels::gemv_w1a8(x_short, sw, {}, y);
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("gemv_w1a8: argument 'x' must have 10"), std::string::npos)
        << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, Gemv, ::testing::ValuesIn(kernels::available_targets()),
                         target_param_name);

TEST(KernelTargets, BestTargetIsChosenByDefault) {
  kernels::force_target(0);
  const auto targets = kernels::available_targets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(kernels::current_target(), targets.front());  // lowest bit = best target
}

}  // namespace
}  // namespace pquant::test
