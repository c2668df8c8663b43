// Int8Codes<PerRow>: the packed form of Int8AbsMax (pQuant's INT8 branch): codes in the kernels'
// INT8 layout (rows padded to 64 bytes), one scale per row (a per-tensor scale is repeated per row
// of its part). Products on the W8A8 kernels (gemv_w8a8, gemm_w8a8): exact int32 sums and the one
// epilogue, the training forward's integer path bit for bit. The file stores the codes unpadded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/gemv.hpp"
#include "pquant/kernels/kernel_weights.hpp"
#include "pquant/quantizers/packed_form.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

template <class StoredScales>
class Int8Codes {
  static_assert(std::is_same_v<StoredScales, PerRow>, "Int8Codes: one scale per row");

 public:
  static constexpr FormInput kInput = FormInput::kInt8PerToken;
  static constexpr std::string_view kLayout = "int8_row64";
  static constexpr std::string_view kId = "int8.row";

  Int8Codes() = default;

  template <WeightQuantizer Q>
  static Int8Codes pack(std::span<const MatrixView<const float>> parts) {
    using S = typename Q::scales_type;
    static_assert(std::is_same_v<typename Q::format_type, Int8Code> &&
                      std::is_same_v<stored_scales_t<S>, PerRow>,
                  "Int8Codes::pack: INT8 codes with per-row or per-tensor scales");
    const std::size_t rows = detail::stacked_rows(parts, "Int8Codes::pack"), cols = parts[0].cols;
    Int8Codes out;
    out.codes_ = kernels::Int8Weights(rows, cols);
    out.scale_.resize(rows);
    std::size_t r0 = 0;
    for (const MatrixView<const float>& part : parts) {
      const auto packed = Q::quantize(part);
      const auto v = packed.view();
      for (std::size_t r = 0; r < part.rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c)
          out.codes_.row(r0 + r)[c] = static_cast<std::int8_t>(v.value(r, c));
        out.scale_[r0 + r] = v.scale(r, 0);
      }
      r0 += part.rows;
    }
    out.codes_.update_symmetry();
    return out;
  }

  std::size_t rows() const { return codes_.rows(); }
  std::size_t cols() const { return codes_.cols(); }
  const kernels::Int8Weights& codes() const { return codes_; }
  std::span<const float> scales() const { return scale_; }
  float value(std::size_t r, std::size_t c) const {
    return scale_[r] * static_cast<float>(codes_.value(r, c));
  }

  void gemv(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemv_w8a8(x.q.row(0), codes_, {scale_, x.inv_gain[0], {}}, y.row(0));
  }
  void gemm(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemm_w8a8(x.q, codes_, {scale_, x.inv_gain, {}}, y);
  }

  static std::vector<TensorSpec> expected(const std::string& name, std::size_t rows,
                                          std::size_t cols) {
    return {{name + ".values", io::DType::kI8, {rows, cols}},
            {name + ".scale", io::DType::kF32, {rows}}};
  }
  void save(io::SafetensorsWriter& w, const std::string& name) const {
    std::vector<std::int8_t> v(rows() * cols());
    for (std::size_t r = 0; r < rows(); ++r)
      for (std::size_t c = 0; c < cols(); ++c) v[r * cols() + c] = codes_.value(r, c);
    w.add<std::int8_t>(name + ".values", {rows(), cols()}, std::span<const std::int8_t>(v));
    w.add<float>(name + ".scale", {rows()}, std::span<const float>(scale_));
  }
  static Int8Codes load(const io::SafetensorsView& f, const std::string& name, std::size_t rows,
                        std::size_t cols) {
    Int8Codes out;
    const std::vector<std::uint64_t> shape{rows, cols};
    // In place when the file keeps its bytes alive, they are 64-byte aligned and the rows need no
    // padding (cols a multiple of 64: the kernel layout is the file's); copied and padded otherwise.
    const std::int8_t* p = f.in_place<std::int8_t>(name + ".values", shape, kAlignment);
    if (p != nullptr && cols % kernels::kInt8RowAlign == 0) {
      out.codes_ = kernels::Int8Weights::borrow(rows, cols, p, f.owner());
    } else {
      Matrix<std::int8_t> v(rows, cols);
      f.read_into<std::int8_t>(name + ".values", v.flat(), shape);
      out.codes_ = kernels::pack_int8(v.view());
    }
    out.scale_.resize(rows);
    detail::read_finite(f, name + ".scale", out.scale_, {rows});
    return out;
  }
  static nlohmann::json describe() {
    return {{"form", kId}, {"layout", kLayout}, {"code", Int8Code::kName}, {"bits", 8},
            {"scales", "row"}, {"group", 0},    {"params", "scale"}};
  }
  std::size_t payload_bits() const { return rows() * cols() * 8 + 32 * scale_.size(); }
  std::size_t streamed_bytes() const { return rows() * codes_.stride() + 4 * scale_.size(); }

 private:
  kernels::Int8Weights codes_;
  std::vector<float> scale_;
};

}  // namespace pquant
