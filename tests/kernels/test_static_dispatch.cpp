// PQUANT_STATIC_DISPATCH: the kernels compile inline for the static target, with no dispatch
// translation unit in the program, and give the same exact results as the reference.
#define PQUANT_STATIC_DISPATCH
#include <gtest/gtest.h>

#include <vector>

#include "kernel_test_util.hpp"
#include "pquant/kernels.hpp"

namespace pquant::test {
namespace {

TEST(StaticDispatch, RunsOnTheStaticTargetAndIsExact) {
  EXPECT_EQ(kernels::current_target(), HWY_STATIC_TARGET);
  const auto w = random_sign(70, 300, 1);
  const auto xm = random_int8(1, 300, -128, 127, 2);
  std::span<const std::int8_t> x(xm.data(), 300);
  std::vector<float> y(70), ref(70), rs(70, 0.5f);
  kernels::gemv_w1a8(x, kernels::pack_sign(w), {rs, 0.1f, {}}, y);
  kernels::reference::gemv_int(x, w, {rs, 0.1f, {}}, ref);
  EXPECT_EQ(y, ref);
  const auto w8 = random_int8(70, 300, -128, 127, 3);
  kernels::gemv_w8a8(x, kernels::pack_int8(w8), {rs, 0.1f, {}}, y);
  kernels::reference::gemv_int(x, w8, {rs, 0.1f, {}}, ref);
  EXPECT_EQ(y, ref);
  Matrix<float> a = random_matrix(9, 20, 4), b = random_matrix(11, 20, 5), c(9, 11);
  kernels::gemm_forward(a, b, c);
  for (std::size_t i = 0; i < 9; ++i)
    for (std::size_t j = 0; j < 11; ++j) {
      double s = 0;
      for (std::size_t k = 0; k < 20; ++k) s += double(a(i, k)) * b(j, k);
      EXPECT_NEAR(c(i, j), s, 1e-5);
    }
}

}  // namespace
}  // namespace pquant::test
