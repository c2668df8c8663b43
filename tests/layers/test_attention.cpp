// CausalSelfAttention: gradients (FP projections: plain finite differences; BitLinear projections:
// the STE surrogate of gradient_check.hpp), causality, RoPE by hand, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <tbb/global_control.h>

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

template <class Proj>
struct Projections;
template <>
struct Projections<Linear> {
  static constexpr bool kQuantized = false;
  static ParamId weight(const Linear& p) { return p.weight_id(); }
};
template <class WQ, class AQ, class Ste>
struct Projections<BitLinear<WQ, AQ, Ste>> {
  static constexpr bool kQuantized = true;
  using W = WQ;
  using A = AQ;
  static ParamId weight(const BitLinear<WQ, AQ, Ste>& p) { return p.weight_id(); }
};

template <class Proj>
class AttentionTest : public ::testing::Test {};
using ProjTypes = ::testing::Types<Linear, BitLinear<SignAbsMean<PerTensor>>>;
TYPED_TEST_SUITE(AttentionTest, ProjTypes, test::TypeNames);

// fused: one [3d x d] projection "qkv" (one quantization scale for Q, K and V), else three.
template <class Proj>
void check_attention_gradients(bool fused) {
  using Info = Projections<Proj>;
  constexpr std::size_t batch = 2, seq = 3, d = 8, heads = 2, n = batch * seq;
  const SequenceShape shape{batch, seq};
  ParameterStore store;
  CausalSelfAttention<Proj> att(store, "attn", {d, heads, kRopeBase, 0.4, 0.4, fused});
  EXPECT_EQ(att.qkv_projections().size(), fused ? 1u : 3u);
  Rng rng(21);
  att.init(rng);
  init::normal(store.value(att.norm().gain_id()), rng, 1.0);
  const Matrix<float> x = random_matrix(n, d, rng), r = random_matrix(n, d, rng);
  Matrix<float> y(n, d), dx(n, d);
  att.forward(x, y, shape);
  att.backward(r, dx);

  const DTensor rd = to_double("r", r.view());
  SteSurrogate sur;
  const RopeTable<double> rope(seq, d / heads);
  auto reference = [&](const std::vector<DTensor>& p) {
    sur.begin_pass();
    std::vector<double> inv(n);
    DTensor a = testing::zeros("a", n, d);
    rmsnorm_forward<double>(p[0].view(), p[1].v.data(), 1e-5, a.view(), inv.data());
    auto project = [&](const DTensor& in_raw, const DTensor& w_raw) {
      DTensor in = in_raw, w = w_raw, out = testing::zeros("out", n, w_raw.rows);
      if constexpr (Info::kQuantized) {
        sur.quantize(in.view(), [](auto i, auto o) { Info::A::fake_quantize(i, o); });
        sur.quantize(w.view(), [](auto i, auto o) { Info::W::fake_quantize(i, o); });
      }
      detail::matmul_xwt<double>(in.view(), w.view(), out.view());
      return out;
    };
    DTensor q, k, v;
    if (fused) {  // the columns of one product, quantized as one tensor
      const DTensor qkv = project(a, p[2]);
      DTensor* parts[] = {&q, &k, &v};
      for (std::size_t part = 0; part < 3; ++part) {
        *parts[part] = testing::zeros("part", n, d);
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t j = 0; j < d; ++j) (*parts[part])(i, j) = qkv(i, part * d + j);
      }
    } else {
      q = project(a, p[2]), k = project(a, p[3]), v = project(a, p[4]);
    }
    const std::size_t o_index = fused ? 3 : 5;
    rope_apply<double>(q.view(), heads, rope);
    rope_apply<double>(k.view(), heads, rope);
    DTensor o = testing::zeros("o", n, d);
    causal_attention_forward<double>(q.view(), k.view(), v.view(), heads, shape, o.view());
    if constexpr (Info::kQuantized) {
      DTensor on = o;
      rmsnorm_forward<double>(o.view(), p[o_index + 1].v.data(), 1e-5, on.view(), inv.data());
      o = on;
    }
    return project(o, p[o_index]);
  };
  std::vector<DTensor> point = {to_double("x", x.view()),
                                to_double("norm.gain", store.value(att.norm().gain_id()))};
  std::vector<MatrixView<const float>> analytic = {dx.view(), store.grad(att.norm().gain_id())};
  for (const Proj* part : att.qkv_projections()) {
    point.push_back(to_double("qkv part", store.value(Info::weight(*part))));
    analytic.push_back(store.grad(Info::weight(*part)));
  }
  point.push_back(to_double("o", store.value(Info::weight(att.o()))));
  analytic.push_back(store.grad(Info::weight(att.o())));
  if constexpr (Info::kQuantized) {
    point.push_back(to_double("o.norm.gain", store.value(att.o().norm_gain_id())));
    analytic.push_back(store.grad(att.o().norm_gain_id()));
  }
  const DTensor y_ref = reference(point);
  sur.freeze();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j)
      EXPECT_NEAR(y(i, j), y_ref(i, j), 1e-4 * (1 + std::fabs(y_ref(i, j))));
  auto loss = [&](const std::vector<DTensor>& p) {
    return testing::dot(rd.view(), reference(p).view());
  };
  check_gradients(loss, point, analytic);
}

TYPED_TEST(AttentionTest, GradientsMatchFiniteDifferences) {
  check_attention_gradients<TypeParam>(false);
}

TYPED_TEST(AttentionTest, FusedQkvGradientsMatchFiniteDifferences) {
  check_attention_gradients<TypeParam>(true);
}

TEST(Attention, IsCausalAndSequencesAreIndependent) {
  constexpr std::size_t d = 8, heads = 2, seq = 4;
  ParameterStore store;
  CausalSelfAttention<Linear> att(store, "attn", {d, heads});
  Rng rng(22);
  att.init(rng);
  Matrix<float> x = random_matrix(2 * seq, d, rng), y1(2 * seq, d), y2(2 * seq, d);
  att.forward(x, y1, {2, seq});
  for (std::size_t c = 0; c < d; ++c) x(2, c) += 1.0f;  // sequence 0, position 2
  att.forward(x, y2, {2, seq});
  for (std::size_t r = 0; r < 2 * seq; ++r) {
    const bool affected = r == 2 || r == 3;  // later positions of the same sequence only
    float diff = 0;
    for (std::size_t c = 0; c < d; ++c) diff = std::max(diff, std::fabs(y1(r, c) - y2(r, c)));
    if (affected)
      EXPECT_GT(diff, 0.0f) << r;
    else
      EXPECT_EQ(diff, 0.0f) << r;
  }
  // The first position attends only to itself.
  const std::span<const float> p = att.probabilities();
  ASSERT_EQ(p.size(), 2 * heads * seq * seq);
  EXPECT_EQ(p[0], 1.0f);
  EXPECT_EQ(p[1], 0.0f);
}

// The float path (blocks of 32 queries on the FP32 GEMM, P recomputed in the backward) against
// the generic scalar path in double (one query row at a time, P never blocked), at a length that
// leaves a partial last block, over two sequences and three heads.
TEST(Attention, FusedFloatPathMatchesScalarDoubleReference) {
  constexpr std::size_t batch = 2, heads = 3, hd = 8, seq = 77, d = heads * hd, n = batch * seq;
  const SequenceShape shape{batch, seq};
  Rng rng(5);
  const Matrix<float> q = random_matrix(n, d, rng, 1.5), k = random_matrix(n, d, rng, 1.5),
                      v = random_matrix(n, d, rng), dout = random_matrix(n, d, rng);
  Matrix<float> o(n, d), dq(n, d), dk(n, d), dv(n, d);
  for (Matrix<float>* m : {&o, &dq, &dk, &dv})  // outputs are overwritten, whatever they held
    std::fill(m->flat().begin(), m->flat().end(), std::numeric_limits<float>::quiet_NaN());
  causal_attention_forward<float>(q, k, v, heads, shape, o);
  causal_attention_backward<float>(dout, q, k, v, heads, shape, dq, dk, dv);
  std::vector<float> p(batch * heads * seq * seq, -1.f);
  causal_attention_probabilities<float>(q, k, heads, shape, p);

  const DTensor qd = to_double("q", q.view()), kd = to_double("k", k.view()),
                vd = to_double("v", v.view()), dod = to_double("dout", dout.view());
  DTensor od = testing::zeros("o", n, d), dqd = od, dkd = od, dvd = od;
  causal_attention_forward<double>(qd.view(), kd.view(), vd.view(), heads, shape, od.view());
  causal_attention_backward<double>(dod.view(), qd.view(), kd.view(), vd.view(), heads, shape,
                                    dqd.view(), dkd.view(), dvd.view());
  std::vector<double> pd(p.size());
  causal_attention_probabilities<double>(qd.view(), kd.view(), heads, shape, pd);

  auto expect_close = [&](const Matrix<float>& got, const DTensor& want, const char* what) {
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < d; ++j)
        ASSERT_NEAR(got(i, j), want(i, j), 2e-5 * (1 + std::fabs(want(i, j))))
            << what << " " << i << "," << j;
  };
  expect_close(o, od, "O");
  expect_close(dq, dqd, "dQ");
  expect_close(dk, dkd, "dK");
  expect_close(dv, dvd, "dV");
  for (std::size_t bh = 0; bh < batch * heads; ++bh)
    for (std::size_t t = 0; t < seq; ++t) {
      double row = 0;
      for (std::size_t s = 0; s < seq; ++s) {
        const std::size_t i = (bh * seq + t) * seq + s;
        if (s > t) {
          ASSERT_EQ(p[i], 0.f) << bh << "," << t << "," << s;  // causal, and written
        }
        ASSERT_NEAR(p[i], pd[i], 1e-6) << bh << "," << t << "," << s;
        row += p[i];
      }
      EXPECT_NEAR(row, 1.0, 1e-5);
    }
}

// Results do not depend on the thread count (heads run in parallel, each in a fixed order).
TEST(Attention, FusedFloatPathIsIndependentOfThreadCount) {
  constexpr std::size_t batch = 3, heads = 2, hd = 16, seq = 70, d = heads * hd, n = batch * seq;
  const SequenceShape shape{batch, seq};
  Rng rng(6);
  const Matrix<float> q = random_matrix(n, d, rng), k = random_matrix(n, d, rng),
                      v = random_matrix(n, d, rng), dout = random_matrix(n, d, rng);
  auto run = [&](std::size_t threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    std::vector<Matrix<float>> out(4, Matrix<float>(n, d));
    for (Matrix<float>& m : out) std::fill(m.flat().begin(), m.flat().end(), 7.f);
    causal_attention_forward<float>(q, k, v, heads, shape, out[0]);
    causal_attention_backward<float>(dout, q, k, v, heads, shape, out[1], out[2], out[3]);
    return out;
  };
  const auto one = run(1), two = run(2);
  for (std::size_t m = 0; m < 4; ++m)
    for (std::size_t i = 0; i < n * d; ++i)
      ASSERT_EQ(one[m].flat()[i], two[m].flat()[i]) << m << " " << i;
}

TEST(Rope, RotatesPairsByPositionTimesThetaAndInvertsExactly) {
  // head_dim 4: pairs (0, 2) with theta 1 and (1, 3) with theta 10000^(-1/2) = 0.01.
  const RopeTable<double> table(2, 4);
  std::vector<double> x = {1, 2, 3, 4, 1, 2, 3, 4};  // positions 0 and 1
  rope_apply<double>(MatrixView<double>(x.data(), 2, 4), 1, table);
  EXPECT_DOUBLE_EQ(x[0], 1);  // position 0: identity
  EXPECT_DOUBLE_EQ(x[3], 4);
  EXPECT_NEAR(x[4], 1 * std::cos(1.0) - 3 * std::sin(1.0), 1e-15);
  EXPECT_NEAR(x[6], 1 * std::sin(1.0) + 3 * std::cos(1.0), 1e-15);
  EXPECT_NEAR(x[5], 2 * std::cos(0.01) - 4 * std::sin(0.01), 1e-15);
  EXPECT_NEAR(x[7], 2 * std::sin(0.01) + 4 * std::cos(0.01), 1e-15);
  rope_apply<double>(MatrixView<double>(x.data(), 2, 4), 1, table, /*inverse=*/true);
  const std::vector<double> expect = {1, 2, 3, 4, 1, 2, 3, 4};
  for (std::size_t i = 0; i < 8; ++i) EXPECT_NEAR(x[i], expect[i], 1e-14);
}

TEST(Attention, RejectsBadConfigAndShapes) {
  ParameterStore store;
  EXPECT_THROW(CausalSelfAttention<Linear>(store, "a", {8, 3}), ShapeError);
  EXPECT_THROW(CausalSelfAttention<Linear>(store, "b", {6, 2}), ShapeError);  // odd head_dim
  CausalSelfAttention<Linear> att(store, "c", {8, 2});
  Matrix<float> x(6, 8), y(6, 8), dx(6, 8);
  EXPECT_THROW(att.backward(y, dx), ValueError);
  EXPECT_THROW(att.forward(x, y, {2, 4}), ShapeError);
  x(0, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(att.forward(x, y, {2, 3}), ValueError);
  // A fused attention has one projection "qkv" [3d x d] and no separate q, k, v.
  CausalSelfAttention<Linear> fused(store, "f", {.d_model = 8, .heads = 2, .fused_qkv = true});
  EXPECT_THROW((void)fused.q(), ValueError);
  EXPECT_THROW((void)fused.v(), ValueError);
  EXPECT_EQ(store.value(fused.qkv_projections()[0]->weight_id()).rows, 24u);
  for (const ParamInfo& p : store.infos()) EXPECT_NE(p.name, "f.q.weight");
  // The free functions check their shapes too.
  Matrix<float> q(6, 8), k(6, 8), v(6, 8), o(6, 8), narrow(6, 4), d(6, 8), e(6, 8);
  EXPECT_THROW(causal_attention_forward<float>(q, k, v, 3, {2, 3}, o), ShapeError);  // 3 !| 8
  EXPECT_THROW(causal_attention_forward<float>(q, k, v, 0, {2, 3}, o), ShapeError);
  EXPECT_THROW(causal_attention_forward<float>(q, k, v, 2, {2, 4}, o), ShapeError);  // 8 rows
  EXPECT_THROW(causal_attention_forward<float>(q, narrow, v, 2, {2, 3}, o), ShapeError);
  EXPECT_THROW(causal_attention_forward<float>(q, k, v, 2, {2, 3}, narrow), ShapeError);
  EXPECT_THROW(causal_attention_backward<float>(q, k, v, o, 2, {2, 3}, d, e, narrow), ShapeError);
  std::vector<float> probs(2 * 2 * 3 * 3);
  EXPECT_THROW(causal_attention_probabilities<float>(q, k, 2, {2, 3},
                                                     std::span<float>(probs).first(17)),
               ShapeError);
  causal_attention_probabilities<float>(q, k, 2, {2, 3}, probs);  // well-formed: no throw
}

}  // namespace
}  // namespace pquant
