// Epilogue: how an integer accumulator leaves a kernel as FP32, and the integer limits that make
// the accumulation exact.
//
//   s = row_scale[n] * token_scale[m]                                  (float, one rounding)
//   out[m][n] = float(double(float(acc[m][n])) * double(s) + double(residual[m][n]))
//
// row_scale is lambda (or gamma, or the INT8 row scale), token_scale is 1/g of the activation
// quantizer (docs/method.md sections 2, 5). The double product of two floats is exact, so the
// double sum rounds once and the cast once more; a compiler that contracts the double a*b+c into
// an FMA computes the same value (the product is exact). Every kernel, target and the scalar
// reference use this formula, so integer paths are bit-identical end to end (and no libm fma call
// is needed).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"

namespace pquant::kernels {

/// Scales and residual of a batched (GEMM) integer kernel.
struct Epilogue {
  std::span<const float> row_scale;  // N values (per output row), 1 value (per tensor) or empty (1)
  std::span<const float> token_scale;  // M values (per token), 1 value or empty (1)
  MatrixView<const float> residual;    // M x N added to the output, or empty
};

/// Scales and residual of a batch-1 (GEMV) integer kernel.
struct GemvEpilogue {
  std::span<const float> row_scale;  // N values, 1 value or empty (1)
  float token_scale = 1.0f;          // 1/g of the activation quantizer
  std::span<const float> residual;   // N values added to the output, or empty
};

/// Largest reduction length K for which an int32 accumulator cannot overflow:
/// |w * x| <= 128 for 1-bit and ternary weights (x in [-128, 127]), so K * 128 <= 2^31 - 1.
inline constexpr std::size_t kMaxKLowBit = (std::size_t{1} << 24) - 1;  // 16,777,215
/// |w * x| <= 128 * 128 = 16384 for INT8 weights, so K * 16384 <= 2^31 - 1.
inline constexpr std::size_t kMaxKInt8 = (std::size_t{1} << 17) - 1;  // 131,071

enum class Accumulate { overwrite, accumulate };

namespace detail {

/// The one formula every integer kernel ends with (see the header comment).
inline float epilogue_value(std::int32_t acc, float row_scale, float token_scale, float residual) {
  const float scale = row_scale * token_scale;
  return static_cast<float>(static_cast<double>(static_cast<float>(acc)) *
                                static_cast<double>(scale) +
                            static_cast<double>(residual));
}

inline void check_scales(std::span<const float> s, std::size_t n, const char* fn, const char* arg) {
  require<ShapeError>(s.empty() || s.size() == 1 || s.size() == n, fn, ": argument '", arg,
                      "' must have 0, 1 or ", n, " elements, got ", s.size());
}

inline void check_k(std::size_t k, std::size_t limit, const char* fn) {
  require<ShapeError>(k <= limit, fn, ": reduction length K = ", k,
                      " exceeds the int32-exact limit ", limit,
                      " (split the product along K and add the partial results)");
}

}  // namespace detail
}  // namespace pquant::kernels
