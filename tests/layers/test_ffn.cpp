// FFNs, Top1Router and DecoupledFfn: every parameter (router, alpha/beta, norm gains, expert and
// 1-bit branch weights) and the input against finite differences of the STE surrogate
// (gradient_check.hpp), including the load-balancing loss; routing rules; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gradient_check.hpp"
#include "pquant/layers.hpp"
#include "../common/type_names.hpp"

namespace pquant {
namespace {

using testing::check_gradients;
using testing::DTensor;
using testing::random_matrix;
using testing::SteSurrogate;
using testing::to_double;

// The parameters of one projection, in the order the reference reads them.
template <class P>
struct ProjTraits {
  static constexpr bool kQuantized = false;
  static std::vector<ParamId> ids(const P& p) { return {p.weight_id()}; }
};
template <class WQ, class AQ, class Ste>
struct ProjTraits<BitLinear<WQ, AQ, Ste>> {
  static constexpr bool kQuantized = true;
  using W = WQ;
  using A = AQ;
  // weight, then the input norm's gain when the projection normalizes its input
  static std::vector<ParamId> ids(const BitLinear<WQ, AQ, Ste>& p) {
    std::vector<ParamId> v = {p.weight_id()};
    if (p.norm_gain_id().valid()) v.push_back(p.norm_gain_id());
    return v;
  }
};

/// Collects the parameters of a branch: gate (SwiGLU), up, down (+ down's norm gain).
template <class P>
void add_branch(const FfnBranch<P>& b, std::vector<ParamId>& ids) {
  if (b.gate())
    for (ParamId id : ProjTraits<P>::ids(*b.gate())) ids.push_back(id);
  for (ParamId id : ProjTraits<P>::ids(b.up())) ids.push_back(id);
  for (ParamId id : ProjTraits<P>::ids(b.down())) ids.push_back(id);
}

/// Double reference of one projection: quantized projections go through the STE surrogate.
template <class P>
DTensor ref_project(SteSurrogate& sur, const DTensor& in_raw, const DTensor& w_raw,
                    const DTensor* gain) {
  DTensor in = in_raw, w = w_raw, out = testing::zeros("out", in_raw.rows, w_raw.rows);
  if constexpr (ProjTraits<P>::kQuantized) {
    if (gain != nullptr) {
      std::vector<double> inv(in.rows);
      rmsnorm_forward<double>(in_raw.view(), gain->v.data(), 1e-5, in.view(), inv.data());
    }
    sur.quantize(in.view(), [](auto i, auto o) { ProjTraits<P>::A::fake_quantize(i, o); });
    sur.quantize(w.view(), [](auto i, auto o) { ProjTraits<P>::W::fake_quantize(i, o); });
  }
  detail::matmul_xwt<double>(in.view(), w.view(), out.view());
  return out;
}

/// Double reference of a branch reading its parameters from p[k...] (advances k).
template <class P>
DTensor ref_branch(SteSurrogate& sur, const DTensor& a, const std::vector<DTensor>& p,
                   std::size_t& k, FfnActivation act) {
  const bool q = ProjTraits<P>::kQuantized;
  DTensor g;
  if (act == FfnActivation::kSwiGLU) g = ref_project<P>(sur, a, p[k++], nullptr);
  const DTensor u = ref_project<P>(sur, a, p[k++], nullptr);
  DTensor h = testing::zeros("h", u.rows, u.cols);
  if (act == FfnActivation::kSwiGLU)
    swiglu_forward<double>(g.view(), u.view(), h.view());
  else
    relu2_forward<double>(u.view(), h.view());
  const DTensor& wd = p[k++];
  const DTensor* gain = q ? &p[k++] : nullptr;
  return ref_project<P>(sur, h, wd, gain);
}

std::vector<DTensor> values(const ParameterStore& s, const std::vector<ParamId>& ids) {
  std::vector<DTensor> v;
  for (ParamId id : ids) v.push_back(to_double(s.info(id).name, s.value(id)));
  return v;
}
std::vector<MatrixView<const float>> grads(const ParameterStore& s,
                                           const std::vector<ParamId>& ids) {
  std::vector<MatrixView<const float>> v;
  for (ParamId id : ids) v.push_back(s.grad(id));
  return v;
}

template <class F>
testing::LossFn loss_of(const DTensor& r, F reference) {
  return [&r, reference](const std::vector<DTensor>& p) {
    return testing::dot(r.view(), reference(p).view());
  };
}

std::string activation_name(FfnActivation a) {
  return a == FfnActivation::kSwiGLU ? "SwiGLU" : "ReLU2";
}

template <class P, FfnActivation kAct>
struct DenseCase {
  using Proj = P;
  static constexpr FfnActivation act = kAct;
  static std::string test_name() {
    return activation_name(kAct) + "_" + test::readable_type_name<P>();
  }
};
template <class C>
class DenseFfnTest : public ::testing::Test {};
using DenseCases =
    ::testing::Types<DenseCase<Linear, FfnActivation::kSwiGLU>,
                     DenseCase<Linear, FfnActivation::kReLU2>,
                     DenseCase<SignBitLinear, FfnActivation::kSwiGLU>,
                     DenseCase<BitLinear<TernaryAbsMean<PerTensor>>, FfnActivation::kReLU2>>;
TYPED_TEST_SUITE(DenseFfnTest, DenseCases, test::TypeNames);

TYPED_TEST(DenseFfnTest, GradientsMatchFiniteDifferences) {
  using P = typename TypeParam::Proj;
  constexpr std::size_t n = 5, d = 6, h = 7;
  ParameterStore store;
  Ffn<P> ffn(store, "ffn", {d, h, TypeParam::act, 0.4, 0.4});
  Rng rng(31);
  ffn.init(rng);
  init::normal(store.value(ffn.norm().gain_id()), rng, 1.0);
  const Matrix<float> x = random_matrix(n, d, rng), r = random_matrix(n, d, rng);
  Matrix<float> y(n, d), dx(n, d);
  ffn.forward(x, y);
  ffn.backward(r, dx);
  std::vector<ParamId> ids = {ffn.norm().gain_id()};
  add_branch(ffn.branch(), ids);
  const DTensor rd = to_double("r", r.view());
  SteSurrogate sur;
  auto reference = [&](const std::vector<DTensor>& p) {
    sur.begin_pass();
    DTensor a = testing::zeros("a", n, d);
    std::vector<double> inv(n);
    rmsnorm_forward<double>(p[0].view(), p[1].v.data(), 1e-5, a.view(), inv.data());
    std::size_t k = 2;
    return ref_branch<P>(sur, a, p, k, TypeParam::act);
  };
  std::vector<DTensor> point = {to_double("x", x.view())};
  for (DTensor& t : values(store, ids)) point.push_back(std::move(t));
  std::vector<MatrixView<const float>> analytic = {dx.view()};
  for (auto g : grads(store, ids)) analytic.push_back(g);
  const DTensor y_ref = reference(point);
  sur.freeze();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j)
      EXPECT_NEAR(y(i, j), y_ref(i, j), 1e-4 * (1 + std::fabs(y_ref(i, j))));
  check_gradients(loss_of(rd, reference), point, analytic);
}

template <std::size_t kExperts, FfnActivation kAct, class I8, class I1>
struct DecoupledCase {
  static constexpr std::size_t experts = kExperts;
  static constexpr FfnActivation act = kAct;
  using Int8Proj = I8;
  using Int1Proj = I1;
  static std::string test_name() {
    return std::to_string(kExperts) + "experts_" + activation_name(kAct) + "_int8_" +
           test::readable_type_name<I8>() + "_int1_" + test::readable_type_name<I1>();
  }
};
template <class C>
class DecoupledFfnTest : public ::testing::Test {};
using DecoupledCases = ::testing::Types<
    DecoupledCase<1, FfnActivation::kSwiGLU, Int8BitLinear, SignBitLinear>,
    DecoupledCase<3, FfnActivation::kSwiGLU, Int8BitLinear, SignBitLinear>,
    DecoupledCase<2, FfnActivation::kReLU2, Int8BitLinear, BitLinear<TernaryAbsMean<PerTensor>>>,
    DecoupledCase<3, FfnActivation::kSwiGLU, Linear, Linear>>;
TYPED_TEST_SUITE(DecoupledFfnTest, DecoupledCases, test::TypeNames);

TYPED_TEST(DecoupledFfnTest, GradientsMatchFiniteDifferencesIncludingRouterAndAuxLoss) {
  using I8 = typename TypeParam::Int8Proj;
  using I1 = typename TypeParam::Int1Proj;
  constexpr std::size_t n = 8, d = 6, d_ff = 10, r8 = 3, N = TypeParam::experts;
  constexpr float coef = 0.05f;  // large enough that a wrong aux gradient shows
  ParameterStore store;
  typename DecoupledFfn<I8, I1>::Config cfg;
  cfg.d_model = d, cfg.d_ff = d_ff, cfg.r = r8, cfg.experts = N, cfg.activation = TypeParam::act;
  cfg.load_balance_coef = coef, cfg.init_std = 0.4, cfg.out_init_std = 0.4;
  cfg.alpha_init = 2.0f, cfg.beta_init = 0.2f;  // unequal: a swapped alpha/beta gradient shows
  DecoupledFfn<I8, I1> ffn(store, "ffn", cfg);
  Rng rng(32);
  ffn.init(rng);
  EXPECT_EQ(ffn.alpha_value(), 2.0f);
  EXPECT_EQ(ffn.beta_value(), 0.2f);
  init::normal(store.value(ffn.norm().gain_id()), rng, 1.0);
  if (N > 1) init::normal(store.value(ffn.router()->weight_id()), rng, 1.0);  // decisive routing
  const Matrix<float> x = random_matrix(n, d, rng), r = random_matrix(n, d, rng);
  Matrix<float> y(n, d), dx(n, d);
  ffn.forward(x, y);
  ffn.backward(r, dx);

  std::vector<ParamId> ids = {ffn.norm().gain_id(), ffn.alpha_id(), ffn.beta_id()};
  if (N > 1) ids.push_back(ffn.router()->weight_id());
  for (std::size_t e = 0; e < N; ++e) add_branch(ffn.expert(e), ids);
  add_branch(ffn.int1_branch(), ids);

  const DTensor rd = to_double("r", r.view());
  SteSurrogate sur;
  std::vector<std::size_t> choice(n, 0);  // frozen at the base point (argmax is piecewise constant)
  bool recording = true;
  double aux = 0;
  auto reference = [&](const std::vector<DTensor>& p) {
    sur.begin_pass();
    DTensor a = testing::zeros("a", n, d);
    std::vector<double> inv(n);
    rmsnorm_forward<double>(p[0].view(), p[1].v.data(), 1e-5, a.view(), inv.data());
    const double alpha = p[2].v[0], beta = p[3].v[0];
    std::size_t k = 4;
    std::vector<double> prob(n, 1.0);
    aux = 0;
    if (N > 1) {
      DTensor logits = testing::zeros("logits", n, N);
      detail::matmul_xwt<double>(a.view(), p[k++].view(), logits.view());
      std::vector<double> mean_p(N, 0.0), count(N, 0.0);
      for (std::size_t t = 0; t < n; ++t) {
        double mx = logits(t, 0), z = 0;
        for (std::size_t j = 1; j < N; ++j) mx = std::max(mx, logits(t, j));
        for (std::size_t j = 0; j < N; ++j) z += std::exp(logits(t, j) - mx);
        if (recording) {
          std::size_t best = 0;
          for (std::size_t j = 1; j < N; ++j)
            if (logits(t, j) > logits(t, best)) best = j;
          for (std::size_t j = 0; j < N; ++j)  // a clear winner: finite differences cannot flip it
            if (j != best) {
              EXPECT_GT(logits(t, best) - logits(t, j), 1e-3);
            }
          choice[t] = best;
        }
        prob[t] = std::exp(logits(t, choice[t]) - mx) / z;
        for (std::size_t j = 0; j < N; ++j) mean_p[j] += std::exp(logits(t, j) - mx) / z / n;
        count[choice[t]] += 1;
      }
      for (std::size_t j = 0; j < N; ++j) aux += coef * N * (count[j] / n) * mean_p[j];
    }
    DTensor y8 = testing::zeros("y8", n, d);
    for (std::size_t e = 0; e < N; ++e) {
      std::vector<std::size_t> rows;
      for (std::size_t t = 0; t < n; ++t)
        if (choice[t] == e) rows.push_back(t);
      const std::size_t per_branch =
          (TypeParam::act == FfnActivation::kSwiGLU ? 3 : 2) + (ProjTraits<I8>::kQuantized ? 1 : 0);
      if (rows.empty()) {
        k += per_branch;
        continue;
      }
      DTensor ae = testing::zeros("ae", rows.size(), d);
      for (std::size_t i = 0; i < rows.size(); ++i)
        for (std::size_t c = 0; c < d; ++c) ae(i, c) = a(rows[i], c);
      const DTensor out = ref_branch<I8>(sur, ae, p, k, TypeParam::act);
      for (std::size_t i = 0; i < rows.size(); ++i)
        for (std::size_t c = 0; c < d; ++c) y8(rows[i], c) = prob[rows[i]] * out(i, c);
    }
    const DTensor y1 = ref_branch<I1>(sur, a, p, k, TypeParam::act);
    DTensor out = testing::zeros("y", n, d);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < d; ++c) out(t, c) = alpha * y8(t, c) + beta * y1(t, c);
    return out;
  };
  std::vector<DTensor> point = {to_double("x", x.view())};
  for (DTensor& t : values(store, ids)) point.push_back(std::move(t));
  std::vector<MatrixView<const float>> analytic = {dx.view()};
  for (auto g : grads(store, ids)) analytic.push_back(g);
  const DTensor y_ref = reference(point);
  recording = false;
  sur.freeze();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j)
      EXPECT_NEAR(y(i, j), y_ref(i, j), 1e-4 * (1 + std::fabs(y_ref(i, j))));
  EXPECT_NEAR(ffn.aux_loss(), aux, 1e-6);
  if (N > 1) {
    for (std::size_t t = 0; t < n; ++t) EXPECT_EQ(ffn.router()->choices()[t], choice[t]) << t;
    std::uint64_t total = 0;
    for (std::uint64_t u : ffn.usage()) total += u;
    EXPECT_EQ(total, n);
    EXPECT_GT(aux, 0.0);
  }
  auto loss = [&](const std::vector<DTensor>& p) {
    const DTensor out = reference(p);
    return testing::dot(rd.view(), out.view()) + aux;  // the aux loss's gradient is in backward
  };
  check_gradients(loss, point, analytic);
}

TEST(Top1Router, TiesGoToTheLowestIndexAndUsageIsCounted) {
  ParameterStore store;
  Top1Router router(store, "router", {2, 3, 0.0f});
  // Zero weights: all logits equal, every token goes to expert 0 with probability 1/3.
  Matrix<float> a(4, 2);
  for (float& v : a.flat()) v = 1.0f;
  router.forward(a);
  for (std::size_t t = 0; t < 4; ++t) {
    EXPECT_EQ(router.choices()[t], 0u);
    EXPECT_NEAR(router.chosen_probability(t), 1.0 / 3.0, 1e-7);
  }
  EXPECT_EQ(router.usage()[0], 4u);
  EXPECT_EQ(router.aux_loss(), 0.0);  // coefficient 0
  // Experts 1 and 2 tie above expert 0: expert 1 wins.
  MatrixView<float> w = store.value(router.weight_id());
  w(1, 0) = 1.0f, w(2, 0) = 1.0f;
  router.forward(a);
  router.forward(a);
  EXPECT_EQ(router.choices()[0], 1u);
  EXPECT_EQ(router.total_usage()[0], 4u);
  EXPECT_EQ(router.total_usage()[1], 8u);
  router.reset_usage();
  EXPECT_EQ(router.total_usage()[1], 0u);
  // Balanced uniform routing gives the minimum aux loss coef * N * sum (1/N)(1/N) = coef.
  ParameterStore s2;
  Top1Router balanced(s2, "r", {1, 2, 0.01f});
  MatrixView<float> w2 = s2.value(balanced.weight_id());
  w2(0, 0) = 1.0f, w2(1, 0) = -1.0f;
  const float xs[] = {1.0f, -1.0f};
  balanced.forward(MatrixView<const float>(xs, 2, 1));
  EXPECT_NEAR(balanced.aux_loss(), 0.01, 1e-7);
}

TEST(Ffn, RejectsBadShapesAndNonFiniteInput) {
  ParameterStore store;
  Ffn<SignBitLinear> ffn(store, "f", {4, 6});
  Matrix<float> x(2, 4), y(2, 4), dx(2, 4), bad(2, 3);
  EXPECT_THROW(ffn.backward(y, dx), ValueError);
  EXPECT_THROW(ffn.forward(bad, y), ShapeError);
  x(0, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(ffn.forward(x, y), ValueError);
  EXPECT_THROW(Ffn<Linear>(store, "g", {4, 0}), ShapeError);
  Top1Router router(store, "r", {4, 2});
  const std::vector<float> dprob(2, 0.0f);
  EXPECT_THROW(router.backward(dprob, dx), ValueError);  // before forward
  EXPECT_THROW(Top1Router(store, "r2", {4, 2, -1.0f}), ValueError);
}

TEST(DecoupledFfn, RejectsBadConfigAndInput) {
  ParameterStore store;
  EXPECT_THROW(DecoupledFfn<>(store, "a", {8, 16, 16}), ShapeError);  // r must be < d_ff
  EXPECT_THROW(DecoupledFfn<>(store, "b", {8, 16, 0}), ShapeError);
  DecoupledFfn<> ffn(store, "c", {8, 16, 4, 2});
  Matrix<float> x(3, 8), y(3, 8), dx(3, 8), bad(3, 7);
  EXPECT_THROW(ffn.backward(y, dx), ValueError);
  EXPECT_THROW(ffn.forward(bad, y), ShapeError);
  x(1, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(ffn.forward(x, y), ValueError);
  EXPECT_EQ(store.info(ffn.alpha_id()).role, ParamRole::kScalar);
  EXPECT_EQ(store.info(ffn.router()->weight_id()).name, "c.router.weight");
  EXPECT_EQ(store.info(ffn.expert(1).up().weight_id()).name, "c.experts.1.up.weight");
  EXPECT_EQ(store.info(ffn.int1_branch().down().weight_id()).name, "c.int1.down.weight");
}

}  // namespace
}  // namespace pquant
