// Shared helpers of the kernel tests: random data and a fixture that runs each test once per SIMD
// target the CPU supports (forcing the dispatch at run time; the kernels are compiled once in
// pquant_dispatch_impl).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "pquant/kernels.hpp"

namespace pquant::test {

class PerTarget : public ::testing::TestWithParam<std::int64_t> {
 protected:
  void SetUp() override {
    kernels::force_target(GetParam());
    ASSERT_EQ(kernels::current_target(), GetParam());
  }
  void TearDown() override { kernels::force_target(0); }
};

inline std::string target_param_name(const ::testing::TestParamInfo<std::int64_t>& info) {
  return kernels::target_name(info.param);
}

inline Matrix<std::int8_t> random_int8(std::size_t r, std::size_t c, int lo, int hi,
                                       std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  Matrix<std::int8_t> m(r, c);
  for (auto& v : m.flat()) v = static_cast<std::int8_t>(dist(rng));
  return m;
}

inline Matrix<std::int8_t> random_sign(std::size_t r, std::size_t c, std::uint32_t seed) {
  Matrix<std::int8_t> m = random_int8(r, c, 0, 1, seed);
  for (auto& v : m.flat()) v = v ? 1 : -1;
  return m;
}

inline std::vector<float> random_floats(std::size_t n, float lo, float hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline Matrix<float> random_matrix(std::size_t r, std::size_t c, std::uint32_t seed) {
  Matrix<float> m(r, c);
  const auto v = random_floats(r * c, -1.0f, 1.0f, seed);
  for (std::size_t i = 0; i < v.size(); ++i) m.flat()[i] = v[i];
  return m;
}

}  // namespace pquant::test
