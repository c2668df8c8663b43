// PQUANT_STATIC_DISPATCH: the element-wise training kernels compile inline for the static target,
// with no dispatch translation unit in the program, and equal their scalar references bit for bit.
#define PQUANT_STATIC_DISPATCH
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <limits>
#include <vector>

#include "../kernels/kernel_test_util.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/attention.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/training/adamw.hpp"

namespace pquant::test {
namespace {

bool same_bits(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
  return true;
}

TEST(ElementwiseStatic, RunsOnTheStaticTargetAndMatchesTheReferences) {
  EXPECT_EQ(kernels::current_target(), HWY_STATIC_TARGET);
  const std::size_t n = 3, d = 37;
  Matrix<float> g = random_matrix(n, d, 1), u = random_matrix(n, d, 2), dh = random_matrix(n, d, 3);
  for (auto& v : g.flat()) v *= 40.0f;
  Matrix<float> h(n, d), ref(n, d), dg(n, d), du(n, d), ref_dg(n, d), ref_du(n, d);
  kernels::swiglu_forward(g.view(), u.view(), h.view());
  swiglu_forward<float>(g.view(), u.view(), ref.view());
  EXPECT_TRUE(same_bits(h.flat(), ref.flat()));
  kernels::swiglu_backward(dh.view(), g.view(), u.view(), dg.view(), du.view());
  swiglu_backward<float>(dh.view(), g.view(), u.view(), ref_dg.view(), ref_du.view());
  EXPECT_TRUE(same_bits(dg.flat(), ref_dg.flat()));
  EXPECT_TRUE(same_bits(du.flat(), ref_du.flat()));

  const auto gain = random_floats(d, 0.5f, 1.5f, 4);
  std::vector<float> inv(n), ref_inv(n), dgain(d, 0.0f), ref_dgain(d, 0.0f);
  kernels::rmsnorm_forward(u.view(), gain, 1e-5f, h.view(), inv);
  rmsnorm_forward<float>(u.view(), gain.data(), 1e-5f, ref.view(), ref_inv.data());
  EXPECT_TRUE(same_bits(h.flat(), ref.flat()));
  EXPECT_TRUE(same_bits(inv, ref_inv));
  kernels::rmsnorm_backward(dh.view(), u.view(), gain, inv, dg.view(), dgain);
  rmsnorm_backward<float>(dh.view(), u.view(), gain.data(), inv.data(), ref_dg.view(),
                          ref_dgain.data());
  EXPECT_TRUE(same_bits(dg.flat(), ref_dg.flat()));
  EXPECT_TRUE(same_bits(dgain, ref_dgain));

  auto p = random_floats(45, -1.0f, 1.0f, 5), grad = random_floats(45, -1.0f, 1.0f, 6);
  std::vector<float> m(45, 0.01f), v(45, 0.001f);
  auto pr = p, mr = m, vr = v;
  const kernels::AdamWStep step{0.9f, 0.95f, 1e-8f, 0.01f, 3.0f, 0.999f};
  kernels::adamw_update(p, grad, m, v, step);
  adamw_update_reference(pr, grad, mr, vr, step);
  EXPECT_TRUE(same_bits(p, pr));
  EXPECT_TRUE(same_bits(m, mr));
  EXPECT_TRUE(same_bits(v, vr));

  Matrix<float> sc = random_matrix(d, d, 7), sc_ref = random_matrix(d, d, 7);
  kernels::causal_softmax(sc.view(), 0, 0.25f);
  for (std::size_t t = 0; t < d; ++t) detail::causal_softmax_row_f32(&sc_ref(t, 0), t, d, 0.25f);
  EXPECT_TRUE(same_bits(sc.flat(), sc_ref.flat()));
  Matrix<float> dp = random_matrix(d, d, 8), dp_ref = random_matrix(d, d, 8);
  kernels::causal_softmax_backward(dp.view(), sc.view(), 0, 0.25f);
  for (std::size_t t = 0; t < d; ++t)
    detail::causal_softmax_backward_row_f32(&dp_ref(t, 0), &sc(t, 0), t, d, 0.25f);
  EXPECT_TRUE(same_bits(dp.flat(), dp_ref.flat()));

  EXPECT_TRUE(kernels::all_finite(g.view()));
  g(2, d - 1) = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(kernels::all_finite(g.view()));
}

}  // namespace
}  // namespace pquant::test
