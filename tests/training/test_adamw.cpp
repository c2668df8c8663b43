// AdamW and global-norm clipping against hand-computed (double precision) references.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "pquant/training/adamw.hpp"
#include "pquant/training/grad_clip.hpp"

namespace pquant {
namespace {

// Independent scalar reference of torch.optim.AdamW for one element.
struct RefAdam {
  double p, m = 0, v = 0;
  void step(double g, double lr, double wd, int t, double b1 = 0.9, double b2 = 0.95,
            double eps = 1e-8) {
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double mhat = m / (1 - std::pow(b1, t)), vhat = v / (1 - std::pow(b2, t));
    p -= lr * mhat / (std::sqrt(vhat) + eps);
  }
};

TEST(AdamW, MatchesHandComputedStepsAndSkipsDecayByRole) {
  ParameterStore store;
  const ParamId w = store.add("w", 2, 3, ParamRole::kWeight);
  const ParamId e = store.add("emb", 1, 2, ParamRole::kEmbedding);
  const ParamId a = store.add("alpha", 1, 1, ParamRole::kScalar);
  const ParamId n = store.add("norm", 1, 2, ParamRole::kNormGain);
  float init = 0.5f;
  for (ParamId id : {w, e, a, n}) {
    auto v = store.value(id);
    for (std::size_t i = 0; i < v.rows; ++i)
      for (std::size_t j = 0; j < v.cols; ++j) v(i, j) = (init += 0.25f) * (j % 2 ? -1.f : 1.f);
  }
  AdamW opt(store);
  std::vector<RefAdam> ref;
  for (const ParamInfo& p : store.infos())
    for (std::size_t i = 0; i < p.size(); ++i) ref.push_back({store.values()[p.offset + i]});
  const double lr = 0.05, wd = 0.1;
  for (int t = 1; t <= 3; ++t) {
    std::size_t k = 0;
    for (const ParamInfo& p : store.infos()) {
      for (std::size_t i = 0; i < p.size(); ++i, ++k) {
        const float g =
            static_cast<float>(std::sin(1.0 + k + 3.0 * t));  // varies by step and element
        store.grads()[p.offset + i] = g;
        ref[k].step(g, lr, p.role == ParamRole::kWeight ? wd : 0.0, t);
      }
    }
    opt.step(store, static_cast<float>(lr), static_cast<float>(wd));
  }
  EXPECT_EQ(opt.steps(), 3u);
  std::size_t k = 0;
  for (const ParamInfo& p : store.infos())
    for (std::size_t i = 0; i < p.size(); ++i, ++k)
      EXPECT_NEAR(store.values()[p.offset + i], ref[k].p, 2e-6) << p.name << "[" << i << "]";
}

TEST(AdamW, FirstStepMovesEachParameterByLrAgainstItsGradientSign) {
  // At t = 1, mhat = g and vhat = g^2, so the update is lr * g / (|g| + eps) = lr * sign(g).
  ParameterStore store;
  const ParamId w = store.add("w", 1, 4, ParamRole::kScalar);
  const float g[4] = {3.f, -0.001f, 1e3f, -2.f};
  for (int i = 0; i < 4; ++i) store.grad(w)(0, i) = g[i];
  AdamW opt(store);
  opt.step(store, 0.01f, 0.5f);  // a scalar: no decay whatever the coefficient
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(store.value(w)(0, i), g[i] > 0 ? -0.01f : 0.01f, 1e-6f);
}

TEST(AdamW, DecayOptionsAndBadArguments) {
  ParameterStore store;
  store.add("emb", 1, 1, ParamRole::kEmbedding);
  store.values()[0] = 1.f;
  AdamWConfig cfg;
  cfg.decay_embeddings = true;
  AdamW opt(store, cfg);
  opt.step(store, 0.1f, 0.5f);  // zero gradient: only the decay acts, p = 1 - 0.1 * 0.5
  EXPECT_FLOAT_EQ(store.values()[0], 0.95f);
  EXPECT_THROW(opt.step(store, -1.f, 0.f), ValueError);
  EXPECT_THROW(opt.step(store, NAN, 0.f), ValueError);
  EXPECT_THROW(AdamW(store, AdamWConfig{.beta1 = 1.f}), ValueError);
  ParameterStore other;
  other.add("a", 100, 100, ParamRole::kWeight);
  EXPECT_THROW(opt.step(other, 0.1f, 0.f), ShapeError);
  ParameterStore empty;
  EXPECT_THROW(AdamW{empty}, ValueError);
}

TEST(GradClip, ScalesToMaxNormOnlyWhenAbove) {
  std::vector<float> g = {3.f, 4.f, 0.f};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 10.0), 5.0);
  EXPECT_EQ(g[0], 3.f);  // below the threshold: untouched
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0), 5.0);
  EXPECT_NEAR(g[0], 3.0 / 5.0, 1e-6);
  EXPECT_NEAR(g[1], 4.0 / 5.0, 1e-6);
  EXPECT_NEAR(global_grad_norm(g), 1.0, 1e-6);
  // A large arena spanning many reduction chunks matches a straightforward double sum.
  std::vector<float> big(100003);
  double ref = 0;
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<float>(std::cos(0.1 * i)) * 1e-2f;
    ref += double(big[i]) * big[i];
  }
  EXPECT_NEAR(global_grad_norm(big), std::sqrt(ref), 1e-9);
  g[1] = INFINITY;
  EXPECT_THROW(clip_grad_norm(g, 1.0), ValueError);
  EXPECT_THROW(clip_grad_norm(big, 0.0), ValueError);
}

}  // namespace
}  // namespace pquant
