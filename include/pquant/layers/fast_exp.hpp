// exp and the logistic sigmoid for the float hot loops (softmax, SwiGLU, cross-entropy):
// branch-free integer/float arithmetic, so the loops calling them vectorise (libm's expf is an
// opaque call per element, and float compares block GCC's vectoriser under -ftrapping-math).
//
// fast_exp: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite: ln 2 split in
// two constants), |r| <= ln 2 / 2; exp(r) by Cephes' expf polynomial (degree 5 after 1 + r).
// Relative error < 2^-23 against exp in double over [-87.3, 88] (tested in tests/layers). x is
// clamped to that range first (on its bit pattern): x < -87.3 gives about 2^-126 (not 0), x > 88
// about 1.65e38 (not Inf), NaN a finite value (callers check finiteness where it matters).
// Deterministic: the same operations in the same order on every machine (no libm involved).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace pquant {

inline float fast_exp(float x) {
  constexpr std::int32_t kLo = std::bit_cast<std::int32_t>(-87.3f);
  constexpr std::int32_t kHi = std::bit_cast<std::int32_t>(88.0f);
  std::int32_t i = std::bit_cast<std::int32_t>(x);
  // Negative floats are negative ints, ordered by magnitude: x < -87.3 <=> i < 0 and i > kLo.
  const std::int32_t below = -static_cast<std::int32_t>((i < 0) & (i > kLo));
  const std::int32_t above = -static_cast<std::int32_t>(i > kHi);
  i = (i & ~(below | above)) | (kLo & below) | (kHi & above);
  x = std::bit_cast<float>(i);
  // round(x / ln 2) by the 1.5 * 2^23 trick (round half to even; |x / ln 2| < 128).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = (p * r) * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  return e * std::bit_cast<float>(bits);
}

/// 1 / (1 + exp(-v)) without overflow: e = exp(-|v|) <= 1, then 1 / (1 + e) for v >= 0 and
/// e / (1 + e) for v < 0, selected on the sign bit (branch-free).
inline float fast_sigmoid(float v) {
  const float e = fast_exp(-std::fabs(v));
  const float pos = 1.0f / (1.0f + e);
  const float neg = e * pos;
  const std::int32_t m = std::bit_cast<std::int32_t>(v) >> 31;  // all ones when v < 0 (or -0)
  return std::bit_cast<float>((std::bit_cast<std::int32_t>(pos) & ~m) |
                              (std::bit_cast<std::int32_t>(neg) & m));
}

/// exp in T: fast_exp for float (the training kernels), std::exp otherwise (double references).
template <class T>
inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>)
    return fast_exp(x);
  else
    return std::exp(x);
}

}  // namespace pquant
