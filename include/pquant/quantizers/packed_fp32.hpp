// Fp32Weights: the packed form of a full-precision projection (the identity quantizer: Linear,
// NormedLinear). Row-major FP32; one token on the FP32 GEMV, several on the FP32 GEMM (the
// training forward's product: bit for bit in prefill, a different summation order in decoding).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/gemv.hpp"
#include "pquant/quantizers/packed_form.hpp"

namespace pquant {

class Fp32Weights {
 public:
  static constexpr FormInput kInput = FormInput::kFp32;
  static constexpr std::string_view kLayout = "row_major_f32";
  static constexpr std::string_view kId = "f32";

  Fp32Weights() = default;

  /// Full precision: the parts stacked as they are (any Q: the identity).
  template <class Q = void>
  static Fp32Weights pack(std::span<const MatrixView<const float>> parts) {
    const std::size_t rows = detail::stacked_rows(parts, "Fp32Weights::pack"), cols = parts[0].cols;
    Fp32Weights out;
    out.w_ = Matrix<float>(rows, cols);
    std::size_t r0 = 0;
    for (const MatrixView<const float>& part : parts)
      for (std::size_t r = 0; r < part.rows; ++r, ++r0)
        for (std::size_t c = 0; c < cols; ++c) out.w_(r0, c) = part(r, c);
    return out;
  }

  std::size_t rows() const { return w_.rows(); }
  std::size_t cols() const { return w_.cols(); }
  MatrixView<const float> weights() const { return w_.view(); }
  float value(std::size_t r, std::size_t c) const { return w_(r, c); }

  void gemv(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemv_f32(x.a.row(0), w_.view(), y.row(0));
  }
  void gemm(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemm_forward(x.a, w_.view(), y);
  }

  static std::vector<TensorSpec> expected(const std::string& name, std::size_t rows,
                                          std::size_t cols) {
    return {{name + ".weight", io::DType::kF32, {rows, cols}}};
  }
  void save(io::SafetensorsWriter& w, const std::string& name) const {
    w.add<float>(name + ".weight", {rows(), cols()}, w_.flat());
  }
  static Fp32Weights load(const io::SafetensorsView& f, const std::string& name, std::size_t rows,
                          std::size_t cols) {
    Fp32Weights out;
    out.w_ = Matrix<float>(rows, cols);
    detail::read_finite(f, name + ".weight", out.w_.flat(), {rows, cols});
    return out;
  }
  static nlohmann::json describe() {
    return {{"form", kId}, {"layout", kLayout}, {"code", "f32"}, {"bits", 32},
            {"scales", "none"}, {"group", 0}, {"params", "none"}};
  }
  std::size_t payload_bits() const { return rows() * cols() * 32; }
  std::size_t streamed_bytes() const { return rows() * cols() * 4; }

 private:
  Matrix<float> w_;
};

static_assert(PackedForm<Fp32Weights>);

}  // namespace pquant
