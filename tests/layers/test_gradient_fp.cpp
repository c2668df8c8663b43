// Full-precision layers: finite-difference gradient checks, hand-computed forwards, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gradient_check.hpp"
#include "pquant/layers.hpp"

namespace pquant {
namespace {

using testing::check_gradients;
using testing::DTensor;
using testing::random_matrix;
using testing::to_double;

TEST(Linear, GradientsMatchFiniteDifferences) {
  ParameterStore store;
  Linear layer(store, "fc", {5, 3, true, 0.5});
  Rng rng(1);
  layer.init(rng);
  init::normal(store.value(layer.bias_id()), rng, 0.5);
  const Matrix<float> x = random_matrix(4, 5, rng), r = random_matrix(4, 3, rng);
  Matrix<float> y(4, 3), dx(4, 5);
  layer.forward(x, y);
  layer.backward(r, dx);
  const DTensor rd = to_double("r", r.view());
  auto loss = [&](const std::vector<DTensor>& p) {
    DTensor out = testing::zeros("y", 4, 3);
    detail::matmul_xwt<double>(p[0].view(), p[1].view(), out.view());
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 3; ++j) out(i, j) += p[2](0, j);
    return testing::dot(rd.view(), out.view());
  };
  check_gradients(loss,
                  {to_double("x", x.view()), to_double("W", store.value(layer.weight_id())),
                   to_double("b", store.value(layer.bias_id()))},
                  {dx.view(), store.grad(layer.weight_id()), store.grad(layer.bias_id())});
}

TEST(Linear, ForwardHandComputedAndGradientsAccumulate) {
  ParameterStore store;
  Linear layer(store, "fc", {2, 1, false});
  MatrixView<float> w = store.value(layer.weight_id());
  w(0, 0) = 2.0f, w(0, 1) = -1.0f;
  const float xs[] = {3.0f, 4.0f};
  float ys[1], dys[] = {1.0f}, dxs[2];
  layer.forward(MatrixView<const float>(xs, 1, 2), MatrixView<float>(ys, 1, 1));
  EXPECT_EQ(ys[0], 2.0f);  // 2*3 - 4
  layer.backward(MatrixView<const float>(dys, 1, 1), MatrixView<float>(dxs, 1, 2));
  layer.backward(MatrixView<const float>(dys, 1, 1), MatrixView<float>{});  // dx skipped
  EXPECT_EQ(dxs[0], 2.0f);
  EXPECT_EQ(dxs[1], -1.0f);
  EXPECT_EQ(store.grad(layer.weight_id())(0, 0), 6.0f);  // accumulated twice: 2 * 3
  EXPECT_EQ(store.grad(layer.weight_id())(0, 1), 8.0f);
}

TEST(Linear, RejectsBadShapesAndNonFiniteInput) {
  ParameterStore store;
  Linear layer(store, "fc", {3, 2});
  Matrix<float> x(2, 3), y(2, 2), bad_y(2, 3), bad_x(2, 4), dx(2, 3);
  EXPECT_THROW(layer.backward(y, dx), ValueError);  // before forward
  EXPECT_THROW(layer.forward(bad_x, y), ShapeError);
  EXPECT_THROW(layer.forward(x, bad_y), ShapeError);
  x(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(layer.forward(x, y), ValueError);
  x(1, 2) = 0.0f;
  layer.forward(x, y);
  Matrix<float> dy_bad(3, 2);
  EXPECT_THROW(layer.backward(dy_bad, dx), ShapeError);
  EXPECT_THROW(Linear(store, "fc", {3, 2}), ValueError);  // duplicate names
  EXPECT_THROW(Linear(store, "zero", {0, 2}), ShapeError);
  try {
    layer.forward(bad_x, y);
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Linear::forward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'x'"), std::string::npos) << e.what();
  }
}

TEST(RMSNorm, GradientsMatchFiniteDifferences) {
  ParameterStore store;
  RMSNorm norm(store, "norm", {6});
  Rng rng(2);
  init::normal(store.value(norm.gain_id()), rng, 1.0);  // a non-trivial gain
  const Matrix<float> x = random_matrix(3, 6, rng), r = random_matrix(3, 6, rng);
  Matrix<float> y(3, 6), dx(3, 6);
  norm.forward(x, y);
  norm.backward(r, dx);
  const DTensor rd = to_double("r", r.view());
  auto loss = [&](const std::vector<DTensor>& p) {
    DTensor out = testing::zeros("y", 3, 6);
    std::vector<double> inv(3);
    rmsnorm_forward<double>(p[0].view(), p[1].v.data(), 1e-5, out.view(), inv.data());
    return testing::dot(rd.view(), out.view());
  };
  check_gradients(loss, {to_double("x", x.view()), to_double("gain", store.value(norm.gain_id()))},
                  {dx.view(), store.grad(norm.gain_id())});
}

TEST(RMSNorm, ForwardHandComputed) {
  ParameterStore store;
  RMSNorm norm(store, "norm", {2});
  store.value(norm.gain_id())(0, 1) = 2.0f;
  const float xs[] = {3.0f, 4.0f, 0.0f, 0.0f};
  float ys[4];
  norm.forward(MatrixView<const float>(xs, 2, 2), MatrixView<float>(ys, 2, 2));
  const double rms = std::sqrt(12.5 + 1e-5);  // mean(9, 16) + eps
  EXPECT_NEAR(ys[0], 3.0 / rms, 1e-6);
  EXPECT_NEAR(ys[1], 2.0 * 4.0 / rms, 1e-6);
  EXPECT_EQ(ys[2], 0.0f);  // an all-zero row stays finite (eps)
  EXPECT_EQ(ys[3], 0.0f);
}

TEST(Embedding, GradientAccumulatesRepeatedTokensAndChecksIds) {
  ParameterStore store;
  Embedding emb(store, "emb", {5, 3});
  Rng rng(3);
  emb.init(rng);
  const std::vector<TokenId> tokens = {4, 1, 4, 0};
  Matrix<float> y(4, 3);
  emb.forward(tokens, y);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t c = 0; c < 3; ++c)
      EXPECT_EQ(y(i, c), store.value(emb.table_id())(static_cast<std::size_t>(tokens[i]), c));
  const Matrix<float> r = random_matrix(4, 3, rng);
  emb.backward(r);
  const DTensor rd = to_double("r", r.view());
  auto loss = [&](const std::vector<DTensor>& p) {
    double s = 0;
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t c = 0; c < 3; ++c)
        s += rd(i, c) * p[0](static_cast<std::size_t>(tokens[i]), c);
    return s;
  };
  check_gradients(loss, {to_double("table", store.value(emb.table_id()))},
                  {store.grad(emb.table_id())});
  const std::vector<TokenId> bad = {5};
  Matrix<float> y1(1, 3);
  EXPECT_THROW(emb.forward(bad, y1), ValueError);
  const std::vector<TokenId> negative = {-1};
  EXPECT_THROW(emb.forward(negative, y1), ValueError);
  EXPECT_THROW(emb.forward(tokens, y1), ShapeError);
}

TEST(Activations, SwiGLUAndReLU2GradientsMatchFiniteDifferences) {
  Rng rng(4);
  const Matrix<float> g = random_matrix(3, 4, rng, 2.0), u = random_matrix(3, 4, rng, 2.0);
  const Matrix<float> r = random_matrix(3, 4, rng);
  Matrix<float> h(3, 4), dg(3, 4), du(3, 4), du2(3, 4);
  swiglu_forward<float>(g.view(), u.view(), h.view());
  swiglu_backward<float>(r.view(), g.view(), u.view(), dg.view(), du.view());
  relu2_backward<float>(r.view(), u.view(), du2.view());
  const DTensor rd = to_double("r", r.view());
  auto swiglu_loss = [&](const std::vector<DTensor>& p) {
    DTensor out = testing::zeros("h", 3, 4);
    swiglu_forward<double>(p[0].view(), p[1].view(), out.view());
    return testing::dot(rd.view(), out.view());
  };
  check_gradients(swiglu_loss, {to_double("gate", g.view()), to_double("up", u.view())},
                  {dg.view(), du.view()});
  auto relu2_loss = [&](const std::vector<DTensor>& p) {
    DTensor out = testing::zeros("h", 3, 4);
    relu2_forward<double>(p[0].view(), out.view());
    return testing::dot(rd.view(), out.view());
  };
  check_gradients(relu2_loss, {to_double("up", u.view())}, {du2.view()});
  // Hand-computed values: silu(1) * 2 = 2 / (1 + e^-1); relu2(-3) = 0, relu2(3) = 9.
  const float one[] = {1.0f}, two[] = {2.0f}, m3[] = {-3.0f, 3.0f};
  float out1[1], out2[2];
  swiglu_forward<float>(MatrixView<const float>(one, 1, 1), MatrixView<const float>(two, 1, 1),
                        MatrixView<float>(out1, 1, 1));
  EXPECT_NEAR(out1[0], 2.0 / (1.0 + std::exp(-1.0)), 1e-6);
  relu2_forward<float>(MatrixView<const float>(m3, 1, 2), MatrixView<float>(out2, 1, 2));
  EXPECT_EQ(out2[0], 0.0f);
  EXPECT_EQ(out2[1], 9.0f);
}

TEST(CrossEntropy, GradientMatchesFiniteDifferencesWithIgnoreIndex) {
  Rng rng(5);
  const Matrix<float> logits = random_matrix(4, 6, rng, 3.0);
  const std::vector<std::int32_t> targets = {2, kIgnoreIndex, 5, 0};
  Matrix<float> d(4, 6);
  const CrossEntropyResult res = softmax_cross_entropy<float>(logits.view(), targets, d.view());
  EXPECT_EQ(res.tokens, 3u);
  for (std::size_t c = 0; c < 6; ++c) EXPECT_EQ(d(1, c), 0.0f);  // ignored row
  auto loss = [&](const std::vector<DTensor>& p) {
    return softmax_cross_entropy<double>(p[0].view(), targets, MatrixView<double>{}).mean();
  };
  // The float path sums exp(l - max) from fast_exp (relative error < 2^-23 per term, then rounded
  // to float) in double: log z, hence the loss, is within about 2^-22 of the double reference.
  EXPECT_NEAR(res.mean(), loss({to_double("logits", logits.view())}), 3e-7);
  check_gradients(loss, {to_double("logits", logits.view())}, {d.view()});
}

TEST(CrossEntropy, HandComputedStableAndValidated) {
  // Uniform logits over V classes: loss = log V, even for huge logits (max subtracted).
  const float big[] = {1e30f, 1e30f, 1e30f, 1e30f};
  const std::vector<std::int32_t> t = {3};
  const auto res =
      softmax_cross_entropy<float>(MatrixView<const float>(big, 1, 4), t, MatrixView<float>{});
  EXPECT_NEAR(res.mean(), std::log(4.0), 1e-12);
  // Two classes: logits (0, log 3): p = (1/4, 3/4); target 0 -> loss log 4.
  const float two[] = {0.0f, static_cast<float>(std::log(3.0))};
  const std::vector<std::int32_t> t0 = {0};
  float d[2];
  const auto r2 = softmax_cross_entropy<float>(MatrixView<const float>(two, 1, 2), t0,
                                               MatrixView<float>(d, 1, 2));
  EXPECT_NEAR(r2.mean(), std::log(4.0), 1e-6);
  EXPECT_NEAR(d[0], 0.25 - 1.0, 1e-6);
  EXPECT_NEAR(d[1], 0.75, 1e-6);
  // All ignored: loss 0, tokens 0.
  const std::vector<std::int32_t> ignored = {kIgnoreIndex};
  EXPECT_EQ(
      softmax_cross_entropy<float>(MatrixView<const float>(two, 1, 2), ignored, MatrixView<float>{})
          .mean(),
      0.0);
  const std::vector<std::int32_t> out_of_range = {2};
  EXPECT_THROW(softmax_cross_entropy<float>(MatrixView<const float>(two, 1, 2), out_of_range,
                                            MatrixView<float>{}),
               ValueError);
  const float nan[] = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_THROW(
      softmax_cross_entropy<float>(MatrixView<const float>(nan, 1, 2), t0, MatrixView<float>{}),
      ValueError);
  const std::vector<std::int32_t> too_many = {0, 1};
  EXPECT_THROW(softmax_cross_entropy<float>(MatrixView<const float>(two, 1, 2), too_many,
                                            MatrixView<float>{}),
               ShapeError);
}

}  // namespace
}  // namespace pquant

namespace pquant {
namespace {

TEST(Rng, DeterministicResumableAndInRange) {
  Rng a(42), b(42), c(43);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  // SplitMix64's published first output for seed 0 (state advanced by the golden gamma).
  Rng zero(0);
  EXPECT_EQ(zero.next_u64(), 0xe220a8397b1dcdafULL);
  const std::uint64_t saved = a.state();
  const double x = a.normal();
  a.set_state(saved);
  EXPECT_EQ(a.normal(), x);
  double sum = 0, sq = 0;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) {
    const double u = a.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    ASSERT_LT(a.below(7), 7u);
    const double z = a.normal();
    sum += z, sq += z * z;
  }
  EXPECT_NEAR(sum / kDraws, 0.0, 0.03);  // ~4 standard errors
  EXPECT_NEAR(sq / kDraws, 1.0, 0.05);
  EXPECT_THROW(a.below(0), ValueError);
  // Same seed, same construction order: same parameters.
  ParameterStore s1, s2;
  Linear l1(s1, "fc", {4, 3}), l2(s2, "fc", {4, 3});
  Rng r1(7), r2(7);
  l1.init(r1);
  l2.init(r2);
  for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(s1.values()[i], s2.values()[i]);
}

TEST(RMSNorm, RejectsBadShapesAndNonFiniteInput) {
  ParameterStore store;
  RMSNorm norm(store, "n", {4});
  Matrix<float> x(2, 4), y(2, 4), bad(2, 5), dx(2, 4);
  EXPECT_THROW(norm.backward(y, dx), ValueError);
  EXPECT_THROW(norm.forward(bad, y), ShapeError);
  EXPECT_THROW(norm.forward(x, bad), ShapeError);
  x(1, 3) = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(norm.forward(x, y), ValueError);
  EXPECT_THROW(RMSNorm(store, "m", {4, 0.0f}), ValueError);
  EXPECT_THROW(RMSNorm(store, "z", {0}), ShapeError);
}

}  // namespace
}  // namespace pquant
