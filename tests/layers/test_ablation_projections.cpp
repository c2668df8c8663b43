// The ablations' projections (model/ablation_variants.hpp) against independent scalar references:
// per-row and group-64 1-bit scales, the two-centroid k-means row codebook (a Lloyd fixed point,
// checked from its definition), 5% FP32 outliers, each trained with the identity STE; and the
// decoupled FFN with alpha, beta fixed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <vector>

#include "gradient_check.hpp"
#include "pquant/layers.hpp"
#include "pquant/model/ablation_variants.hpp"

namespace pquant {
namespace {

using testing::random_matrix;

// INT8 per-token absmax, written independently: q = round-half-even(x * 127 / absmax).
Matrix<double> reference_xq(MatrixView<const float> x) {
  Matrix<double> xq(x.rows, x.cols);
  for (std::size_t i = 0; i < x.rows; ++i) {
    float absmax = 0;
    for (std::size_t c = 0; c < x.cols; ++c) absmax = std::max(absmax, std::fabs(x(i, c)));
    const float g = 127.0f / absmax;
    for (std::size_t c = 0; c < x.cols; ++c)
      xq(i, c) = static_cast<double>(std::nearbyint(x(i, c) * g)) / static_cast<double>(g);
  }
  return xq;
}

// Runs forward and backward (no input norm) and checks, in double: y = X_q W_q^T with
// W_q = want_wq, dx = dY W_q, and the identity STE dW_latent = dY^T X_q.
template <class Layer>
void expect_forward_backward(Layer& layer, ParameterStore& store, const Matrix<float>& x,
                             const Matrix<double>& want_wq, double rel) {
  const std::size_t n = x.rows(), in = x.cols(), out = want_wq.rows();
  Rng rng(5);
  const Matrix<float> dy = random_matrix(n, out, rng);
  Matrix<float> y(n, out), dx(n, in);
  layer.forward(x, y);
  layer.backward(dy, dx);
  const Matrix<double> xq = reference_xq(x.view());
  const MatrixView<const float> wq = layer.quantized_weight();
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t c = 0; c < in; ++c)
      ASSERT_NEAR(wq(o, c), want_wq(o, c), 1e-6 * std::fabs(want_wq(o, c))) << o << ", " << c;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t o = 0; o < out; ++o) {
      double s = 0, scale = 0;
      for (std::size_t c = 0; c < in; ++c) {
        s += xq(i, c) * want_wq(o, c);
        scale += std::fabs(xq(i, c) * want_wq(o, c));
      }
      EXPECT_NEAR(y(i, o), s, rel * (1 + scale)) << i << ", " << o;
    }
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t c = 0; c < in; ++c) {
      double s = 0;
      for (std::size_t o = 0; o < out; ++o) s += static_cast<double>(dy(i, o)) * want_wq(o, c);
      EXPECT_NEAR(dx(i, c), s, 1e-5 * (1 + std::fabs(s)));
    }
  const MatrixView<const float> dw = store.grad(layer.weight_id());
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t c = 0; c < in; ++c) {
      double s = 0;
      for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(dy(i, o)) * xq(i, c);
      EXPECT_NEAR(dw(o, c), s, 1e-5 * (1 + std::fabs(s)));
    }
}

// sign x absmean per group of G columns of a row (G >= cols: per row), in double.
Matrix<double> reference_sign_groups(MatrixView<const float> w, std::size_t group) {
  Matrix<double> out(w.rows, w.cols);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c0 = 0; c0 < w.cols; c0 += group) {
      const std::size_t c1 = std::min(w.cols, c0 + group);
      double sum = 0, abs_sum = 0;
      for (std::size_t c = c0; c < c1; ++c) sum += w(r, c), abs_sum += std::fabs(w(r, c));
      const double mu = static_cast<float>(sum / static_cast<double>(c1 - c0));
      const double lambda = static_cast<float>(abs_sum / static_cast<double>(c1 - c0));
      for (std::size_t c = c0; c < c1; ++c) out(r, c) = w(r, c) >= mu ? lambda : -lambda;
    }
  return out;
}

TEST(AblationProjections, PerRowAndGroup64ScalesMatchTheScalarReference) {
  constexpr std::size_t n = 5, in = 150, out = 7;  // 150 columns: groups of 64, 64 and 22
  Rng rng(21);
  const Matrix<float> x = random_matrix(n, in, rng);
  {
    ParameterStore store;
    SignRowBitLinear layer(store, "row", {in, out, false, 0.5});
    layer.init(rng);
    static_assert(SignRowBitLinear::kIntegerForward);
    const Matrix<double> want = reference_sign_groups(store.value(layer.weight_id()), in);
    expect_forward_backward(layer, store, x, want, 1e-5);
  }
  {
    ParameterStore store;
    SignGroup64BitLinear layer(store, "g64", {in, out, false, 0.5});
    layer.init(rng);
    static_assert(!SignGroup64BitLinear::kIntegerForward);
    const Matrix<double> want = reference_sign_groups(store.value(layer.weight_id()), 64);
    expect_forward_backward(layer, store, x, want, 1e-5);
  }
}

TEST(AblationProjections, KMeansRowCodebookIsALloydFixedPointOfTwoCentroids) {
  // Checked from k-means' definition, not by rerunning the fit: each row's W_q takes at most two
  // values c0 <= c1; every latent weight sits on its nearest centroid; each centroid is the mean
  // (in double, rounded to float) of the weights on it. Then y, dx and the STE gradient as above.
  constexpr std::size_t n = 4, in = 96, out = 6;
  Rng rng(22);
  const Matrix<float> x = random_matrix(n, in, rng);
  ParameterStore store;
  KMeans1RowBitLinear layer(store, "km", {in, out, false, 0.5});
  layer.init(rng);
  Matrix<float> y(n, out);
  layer.forward(x, y);
  const MatrixView<const float> w = store.value(layer.weight_id());
  const MatrixView<const float> wq = layer.quantized_weight();
  Matrix<double> want(out, in);
  for (std::size_t r = 0; r < out; ++r) {
    float lo = wq(r, 0), hi = wq(r, 0);
    for (std::size_t c = 0; c < in; ++c) lo = std::min(lo, wq(r, c)), hi = std::max(hi, wq(r, c));
    ASSERT_LT(lo, hi) << "row " << r << ": two distinct centroids for distinct weights";
    double sum[2] = {0, 0}, count[2] = {0, 0};
    for (std::size_t c = 0; c < in; ++c) {
      ASSERT_TRUE(wq(r, c) == lo || wq(r, c) == hi) << r << ", " << c;
      const int k = wq(r, c) == hi ? 1 : 0;
      const double d_lo = std::fabs(static_cast<double>(w(r, c)) - lo);
      const double d_hi = std::fabs(static_cast<double>(w(r, c)) - hi);
      EXPECT_LE(k == 1 ? d_hi : d_lo, k == 1 ? d_lo : d_hi) << r << ", " << c;  // nearest
      sum[k] += w(r, c);
      count[k] += 1;
    }
    EXPECT_EQ(lo, static_cast<float>(sum[0] / count[0])) << "row " << r;
    EXPECT_EQ(hi, static_cast<float>(sum[1] / count[1])) << "row " << r;
    for (std::size_t c = 0; c < in; ++c) want(r, c) = wq(r, c);
  }
  ParameterStore store2;  // a fresh layer with the same weights for the product checks
  KMeans1RowBitLinear layer2(store2, "km", {in, out, false, 0.5});
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t c = 0; c < in; ++c) store2.value(layer2.weight_id())(r, c) = w(r, c);
  expect_forward_backward(layer2, store2, x, want, 1e-5);
}

TEST(AblationProjections, KeepLargestKeepsFivePercentOfTheTensorInFp32) {
  constexpr std::size_t n = 3, in = 40, out = 10;  // 400 weights: 20 kept
  Rng rng(23);
  const Matrix<float> x = random_matrix(n, in, rng);
  ParameterStore store;
  Keep5SignBitLinear layer(store, "mp", {in, out, false, 0.5});
  layer.init(rng);
  const MatrixView<const float> w = store.value(layer.weight_id());
  // The 20 largest |w| (a full sort) keep w; the rest sign x absmean of the whole tensor.
  std::vector<float> mags;
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t c = 0; c < in; ++c) mags.push_back(std::fabs(w(r, c)));
  std::sort(mags.begin(), mags.end(), std::greater<>());
  const float threshold = mags[19];
  ASSERT_GT(threshold, mags[20]);  // no tie at the boundary for this seed
  double sum = 0, abs_sum = 0;
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t c = 0; c < in; ++c) sum += w(r, c), abs_sum += std::fabs(w(r, c));
  const double mu = static_cast<float>(sum / (in * out));
  const double lambda = static_cast<float>(abs_sum / (in * out));
  Matrix<double> want(out, in);
  std::size_t kept = 0;
  for (std::size_t r = 0; r < out; ++r)
    for (std::size_t c = 0; c < in; ++c) {
      const bool keep = std::fabs(w(r, c)) >= threshold;
      kept += keep ? 1 : 0;
      want(r, c) = keep ? w(r, c) : (w(r, c) >= mu ? lambda : -lambda);
    }
  EXPECT_EQ(kept, 20u);
  expect_forward_backward(layer, store, x, want, 1e-5);
}

TEST(AblationProjections, FixedBranchScalesGetNoGradientAndChangeNothingElse) {
  // The same FFN with learn_scales on and off: every gradient but alpha's and beta's is identical,
  // and theirs is zero when fixed (nonzero when learned).
  DecoupledFfn<>::Config cfg;
  cfg.d_model = 16;
  cfg.d_ff = 48;
  cfg.r = 8;
  cfg.experts = 2;
  Rng data(24);
  const Matrix<float> x = random_matrix(6, 16, data), dy = random_matrix(6, 16, data);
  ParameterStore learned_store, fixed_store;
  DecoupledFfn<> learned(learned_store, "ffn", cfg);
  cfg.learn_scales = false;
  DecoupledFfn<> fixed(fixed_store, "ffn", cfg);
  Rng r1(3), r2(3);
  learned.init(r1);
  fixed.init(r2);
  Matrix<float> y1(6, 16), y2(6, 16), dx1(6, 16), dx2(6, 16);
  learned.forward(x, y1);
  fixed.forward(x, y2);
  learned.backward(dy, dx1);
  fixed.backward(dy, dx2);
  for (std::size_t i = 0; i < y1.flat().size(); ++i) {
    EXPECT_EQ(y1.flat()[i], y2.flat()[i]);
    EXPECT_EQ(dx1.flat()[i], dx2.flat()[i]);
  }
  EXPECT_NE(learned_store.grad(learned.alpha_id())(0, 0), 0.0f);
  EXPECT_NE(learned_store.grad(learned.beta_id())(0, 0), 0.0f);
  EXPECT_EQ(fixed_store.grad(fixed.alpha_id())(0, 0), 0.0f);
  EXPECT_EQ(fixed_store.grad(fixed.beta_id())(0, 0), 0.0f);
  const auto& infos = learned_store.infos();
  for (std::size_t p = 0; p < infos.size(); ++p) {
    if (infos[p].role == ParamRole::kScalar) continue;
    const float* g1 = learned_store.grads().data() + infos[p].offset;
    const float* g2 = fixed_store.grads().data() + infos[p].offset;
    for (std::size_t i = 0; i < infos[p].size(); ++i) ASSERT_EQ(g1[i], g2[i]) << infos[p].name;
  }
}

}  // namespace
}  // namespace pquant
