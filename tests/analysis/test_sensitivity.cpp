// The inverse-Hessian diagonal against a hand-computed 2x2 case and a direct Gauss-Jordan inverse,
// the dampening and dead-column rules, and s_ij end to end on a captured projection.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "pquant/analysis/product_capture.hpp"
#include "pquant/analysis/projection_sensitivity.hpp"
#include "pquant/analysis/sensitivity.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/model/variants.hpp"

namespace pquant::analysis {
namespace {

// Inverse by Gauss-Jordan with partial pivoting (an independent reference to Eigen's Cholesky).
std::vector<double> direct_inverse(std::vector<double> a, std::size_t n) {
  std::vector<double> inv(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) inv[i * n + i] = 1;
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r * n + c]) > std::fabs(a[p * n + c])) p = r;
    for (std::size_t k = 0; k < n; ++k) {
      std::swap(a[c * n + k], a[p * n + k]);
      std::swap(inv[c * n + k], inv[p * n + k]);
    }
    const double d = a[c * n + c];
    for (std::size_t k = 0; k < n; ++k) {
      a[c * n + k] /= d;
      inv[c * n + k] /= d;
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a[r * n + c];
      for (std::size_t k = 0; k < n; ++k) {
        a[r * n + k] -= f * a[c * n + k];
        inv[r * n + k] -= f * inv[c * n + k];
      }
    }
  }
  return inv;
}

TEST(InverseHessianDiagonal, HandComputedTwoByTwo) {
  // H = [[4, 2], [2, 3]]: det 8, H^-1 = [[3, -2], [-2, 4]] / 8.
  const std::vector<double> h = {4, 2, 2, 3};
  const std::vector<double> d = inverse_hessian_diagonal(h, 2, 0.0);
  EXPECT_NEAR(d[0], 3.0 / 8.0, 1e-15);
  EXPECT_NEAR(d[1], 4.0 / 8.0, 1e-15);
  // Dampening 0.01 x mean(diag) = 0.035 on the diagonal: [[4.035, 2], [2, 3.035]].
  const double a = 4.035, c = 3.035, det = a * c - 4.0;
  const std::vector<double> e = inverse_hessian_diagonal(h, 2);
  EXPECT_NEAR(e[0], c / det, 1e-14);
  EXPECT_NEAR(e[1], a / det, 1e-14);
}

TEST(InverseHessianDiagonal, MatchesADirectInverseOfTheDampenedMatrix) {
  const std::size_t n = 7, t = 20;
  Rng rng(11);
  std::vector<double> x(t * n);
  for (double& v : x) v = rng.uniform() - 0.5;
  std::vector<double> h(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      for (std::size_t r = 0; r < t; ++r) h[i * n + j] += x[r * n + i] * x[r * n + j];
      h[i * n + j] *= 2.0 / t;
    }
  double mean = 0;
  for (std::size_t j = 0; j < n; ++j) mean += h[j * n + j] / n;
  std::vector<double> damped = h;
  for (std::size_t j = 0; j < n; ++j) damped[j * n + j] += 0.01 * mean;
  const std::vector<double> inv = direct_inverse(damped, n);
  const std::vector<double> d = inverse_hessian_diagonal(h, n);
  for (std::size_t j = 0; j < n; ++j) EXPECT_NEAR(d[j], inv[j * n + j], 1e-10 * inv[j * n + j]);
}

TEST(InverseHessianDiagonal, DeadColumnsGetOneBeforeDampening) {
  // Column 1 never active: H = diag(2, 0, 6) -> diag(2, 1, 6), mean 3, + 0.03.
  const std::vector<double> h = {2, 0, 0, 0, 0, 0, 0, 0, 6};
  const std::vector<double> d = inverse_hessian_diagonal(h, 3);
  EXPECT_NEAR(d[0], 1 / 2.03, 1e-14);
  EXPECT_NEAR(d[1], 1 / 1.03, 1e-14);
  EXPECT_NEAR(d[2], 1 / 6.03, 1e-14);
  EXPECT_EQ(dead_columns(h, 3), (std::vector<std::uint8_t>{0, 1, 0}));
}

TEST(InverseHessianDiagonal, RejectsBadMatrices) {
  EXPECT_THROW(inverse_hessian_diagonal(std::vector<double>{1, 2, 3}, 2), ShapeError);
  EXPECT_THROW(inverse_hessian_diagonal(std::vector<double>{-1, 0, 0, 1}, 2), ValueError);
  EXPECT_THROW(inverse_hessian_diagonal(std::vector<double>{1, NAN, NAN, 1}, 2), ValueError);
  // Indefinite even after dampening.
  EXPECT_THROW(inverse_hessian_diagonal(std::vector<double>{1, 5, 5, 1}, 2), ValueError);
}

TEST(SensitivityScores, FollowTheFormula) {
  const std::vector<float> w = {1, -2, 3, 0.5f, 0, -1};
  const MatrixView<const float> wv(w.data(), 2, 3);
  const std::vector<double> hinv = {0.5, 0.25, 2.0};
  const std::vector<double> s = sensitivity_scores(wv, hinv);
  const std::vector<double> expect = {1 / 1.0, 4 / 0.5, 9 / 4.0, 0.25 / 1.0, 0, 1 / 4.0};
  for (std::size_t i = 0; i < s.size(); ++i) EXPECT_DOUBLE_EQ(s[i], expect[i]);
  const std::vector<std::uint8_t> dead = {0, 1, 0};
  EXPECT_EQ(sensitivity_scores(wv, hinv, dead)[1], 0.0);
  EXPECT_THROW(sensitivity_scores(wv, std::vector<double>{1, 1}), ShapeError);
  EXPECT_THROW(sensitivity_scores(wv, std::vector<double>{1, 0, 1}), ValueError);
}

ModelConfig tiny() {
  ModelConfig c;
  c.vocab = 32;
  c.d_model = 16;
  c.layers = 1;
  c.heads = 2;
  c.d_ff = 24;
  c.context = 16;
  return c;
}

TEST(ProjectionSensitivity, EndToEndOnACapturedProjection) {
  BitNet model(tiny(), 2);
  ProductCapture capture(model.store(), {"blocks.0.attn.q", "blocks.0.ffn.down"});
  std::vector<TokenId> t(32);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<TokenId>((i * 5 + 3) % 32);
  Matrix<float> logits(32, 32);
  capture.attach();
  model.forward(t, SequenceShape{2, 16}, logits.view());
  capture.detach();
  const auto& p = capture.projection("blocks.0.attn.q");
  const ProjectionSensitivity latent = projection_sensitivity(p, model.store());
  // The scores from the pieces, computed here.
  const std::vector<double> h = p.hessian.hessian();
  const std::vector<double> hinv = inverse_hessian_diagonal(h, 16);
  const MatrixView<const float> w = model.store().value(p.weight);
  for (std::size_t i = 0; i < 16; ++i)
    for (std::size_t j = 0; j < 16; ++j) {
      const double v = w(i, j);
      EXPECT_NEAR(latent.scores[i * 16 + j], v * v / (2 * hinv[j]), 1e-12 * v * v / hinv[j]);
    }
  EXPECT_EQ(latent.tokens, 32u);
  // Effective 1-bit weights share one magnitude: each column's scores are equal.
  const ProjectionSensitivity eff =
      projection_sensitivity(p, model.store(), WeightSource::kEffective);
  for (std::size_t i = 1; i < 16; ++i)
    for (std::size_t j = 0; j < 16; ++j) EXPECT_DOUBLE_EQ(eff.scores[i * 16 + j], eff.scores[j]);
  // 32 tokens, input width 24: enough; fewer tokens than the width is refused.
  EXPECT_NO_THROW(projection_sensitivity(capture.projection("blocks.0.ffn.down"), model.store()));
  ProductCapture few(model.store(), {"blocks.0.ffn.down"});
  few.attach();
  Matrix<float> l16(16, 32);
  model.forward(std::vector<TokenId>(t.begin(), t.begin() + 16), SequenceShape{1, 16}, l16.view());
  few.detach();
  try {
    (void)projection_sensitivity(few.projection("blocks.0.ffn.down"), model.store());
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than its input width 24"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace pquant::analysis
