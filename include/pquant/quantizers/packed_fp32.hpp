// Fp32Weights: the packed form of a full-precision projection (the identity quantizer: Linear,
// NormedLinear). Row-major FP32; one token on the FP32 GEMV, several on the FP32 GEMM (the
// training forward's product: bit for bit in prefill, a different summation order in decoding).
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
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
    auto w = std::make_shared<Matrix<float>>(rows, cols);
    std::size_t r0 = 0;
    for (const MatrixView<const float>& part : parts)
      for (std::size_t r = 0; r < part.rows; ++r, ++r0)
        for (std::size_t c = 0; c < cols; ++c) (*w)(r0, c) = part(r, c);
    return Fp32Weights(std::move(w));
  }

  std::size_t rows() const { return view_.rows; }
  std::size_t cols() const { return view_.cols; }
  MatrixView<const float> weights() const { return view_; }
  float value(std::size_t r, std::size_t c) const { return view_(r, c); }

  void gemv(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemv_f32(x.a.row(0), view_, y.row(0));
  }
  void gemm(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemm_forward(x.a, view_, y);
  }

  static std::vector<TensorSpec> expected(const std::string& name, std::size_t rows,
                                          std::size_t cols) {
    return {{name + ".weight", io::DType::kF32, {rows, cols}}};
  }
  void save(io::SafetensorsWriter& w, const std::string& name) const {
    w.add<float>(name + ".weight", {rows(), cols()},
                 std::span<const float>(view_.data, rows() * cols()));
  }
  static Fp32Weights load(const io::SafetensorsView& f, const std::string& name, std::size_t rows,
                          std::size_t cols) {
    Fp32Weights out;
    const std::string n = name + ".weight";
    if (const float* p = f.in_place<float>(n, {rows, cols}, kAlignment)) {
      // Used where it lies (the file keeps its bytes alive); checked like a copy.
      out.view_ = MatrixView<const float>(p, rows, cols, cols);
      out.owner_ = f.owner();
      for (std::size_t i = 0; i < rows * cols; ++i)
        require<FormatError>(std::isfinite(p[i]), "load_model: tensor '", n,
                             "' holds a non-finite value at element ", i);
      return out;
    }
    auto w = std::make_shared<Matrix<float>>(rows, cols);
    detail::read_finite(f, n, w->flat(), {rows, cols});
    return Fp32Weights(std::move(w));
  }
  static nlohmann::json describe() {
    return {{"form", kId}, {"layout", kLayout}, {"code", "f32"}, {"bits", 32},
            {"scales", "none"}, {"group", 0}, {"params", "none"}};
  }
  std::size_t payload_bits() const { return rows() * cols() * 32; }
  std::size_t streamed_bytes() const { return rows() * cols() * 4; }

 private:
  explicit Fp32Weights(std::shared_ptr<const Matrix<float>> w) : view_(w->view()), owner_(w) {}

  // The weights where they lie: a matrix of the form's own, or a loaded file's bytes; owner_ keeps
  // them alive (copies of the form share them: they are read-only once packed).
  MatrixView<const float> view_;
  std::shared_ptr<const void> owner_;
};

static_assert(PackedForm<Fp32Weights>);

}  // namespace pquant
