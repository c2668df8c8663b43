// LutCodes<Format, StoredScales>: the packed form of the 1-bit (SignAbsMean), ternary
// (TernaryAbsMean) and k-means codebook (KMeansCodebook, 1/2/4 bits) quantizers.
//
// Codes live in the kernels' LUT layout (kernels/kernel_weights.hpp, "lut_tile32"); parameters
// per stored group: one scale (integer formats) or a codebook of 2^b floats (codebook formats),
// group-major, per row (PerRow) or per G columns of a row (PerGroup<G>).
//   sign1 / ternary2 per row    the integer kernels: W1A8 / W2A8 table lookup (gemv_w1a8,
//                               gemm_w1a8, ...), exact int32 sums and the one epilogue: the
//                               training forward's integer path, bit for bit
//   per group, codebooks        the training forward's FP32 path: the weights are decoded into
//                               FP32 (the values fake_quantize gives) and multiplied with
//                               X_q = q / g on the FP32 GEMM, so serving matches training bit for
//                               bit; the decode is a simple scalar pass per product
#pragma once

#include <bit>
#include <cmath>
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
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

template <class Format, class StoredScales>
class LutCodes {
  static_assert(kernels::LutFormat<Format>, "LutCodes: 1, 2 or 4-bit code formats");
  static_assert(std::is_same_v<StoredScales, PerRow> || requires { StoredScales::kGroup; },
                "LutCodes: parameters per row or per group");

 public:
  using format_type = Format;
  using scales_type = StoredScales;
  static constexpr std::size_t kParams = Format::kHasCodebook ? (std::size_t{1} << Format::kBits)
                                                              : 1;  // floats per group
  /// Integer codes with one scale per row run on the integer LUT kernels.
  static constexpr bool kIntegerKernel =
      !Format::kHasCodebook && std::is_same_v<StoredScales, PerRow>;
  static constexpr FormInput kInput = FormInput::kInt8PerToken;
  static constexpr std::string_view kLayout = "lut_tile32";
  static inline const std::string kId = std::string(Format::kName) + "." + StoredScales::name();

  LutCodes() = default;

  template <WeightQuantizer Q>
  static LutCodes pack(std::span<const MatrixView<const float>> parts) {
    using S = typename Q::scales_type;
    static_assert(std::is_same_v<typename Q::format_type, Format> &&
                      std::is_same_v<stored_scales_t<S>, StoredScales>,
                  "LutCodes::pack: the quantizer's format and scales differ from the form's");
    const std::size_t rows = detail::stacked_rows(parts, "LutCodes::pack"), cols = parts[0].cols;
    LutCodes out(rows, cols);
    std::size_t r0 = 0;
    for (const MatrixView<const float>& part : parts) {
      const auto packed = Q::quantize(part);
      const auto v = packed.view();
      for (std::size_t r = 0; r < part.rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) out.codes_.set_code(r0 + r, c, v.code(r, c));
        for (std::size_t g = 0; g < groups_per_row(cols); ++g) {
          // The part's group of (r, first column of stored group g).
          const std::size_t src = S::index(r, first_col(g), cols) * kParams;
          const std::size_t dst = ((r0 + r) * groups_per_row(cols) + g) * kParams;
          for (std::size_t j = 0; j < kParams; ++j) out.params_[dst + j] = v.params[src + j];
        }
      }
      r0 += part.rows;
    }
    return out;
  }

  std::size_t rows() const { return codes_.rows(); }
  std::size_t cols() const { return codes_.cols(); }
  const kernels::LutWeights<Format>& codes() const { return codes_; }
  std::span<const float> params() const { return params_; }

  /// The real number weight (r, c) stands for (what the quantizer's fake_quantize gives).
  float value(std::size_t r, std::size_t c) const {
    const float* p = params_.data() + (r * groups_per_row(cols()) + c / group_width(cols())) *
                                          kParams;
    const std::uint8_t code = codes_.code(r, c);
    if constexpr (Format::kHasCodebook) {
      return p[code];
    } else {
      return p[0] * static_cast<float>(Format::decode(code));
    }
  }

  void gemv(const ActivationRows& x, MatrixView<float> y) const {
    if constexpr (kIntegerKernel) {
      const kernels::GemvEpilogue ep{params_, x.inv_gain[0], {}};
      if constexpr (std::is_same_v<Format, SignBit>)
        kernels::gemv_w1a8(x.q.row(0), codes_, ep, y.row(0));
      else
        kernels::gemv_w2a8(x.q.row(0), codes_, ep, y.row(0));
    } else {
      decoded_product(x, y);
    }
  }
  void gemm(const ActivationRows& x, MatrixView<float> y) const {
    if constexpr (kIntegerKernel) {
      const kernels::Epilogue ep{params_, x.inv_gain, {}};
      if constexpr (std::is_same_v<Format, SignBit>)
        kernels::gemm_w1a8(x.q, codes_, ep, y);
      else
        kernels::gemm_w2a8(x.q, codes_, ep, y);
    } else {
      decoded_product(x, y);
    }
  }

  static std::vector<TensorSpec> expected(const std::string& name, std::size_t rows,
                                          std::size_t cols) {
    const std::size_t group = kernels::LutWeights<Format>::kGroup;
    const std::size_t pairs = (cols + 4 * group - 1) / (4 * group) * 2;
    const std::size_t tiles = (rows + kernels::kLutTile - 1) / kernels::kLutTile;
    std::vector<TensorSpec> t{{name + ".codes", io::DType::kU8, {tiles, pairs, kernels::kLutTile}}};
    if constexpr (Format::kHasCodebook)
      t.push_back({name + ".codebook", io::DType::kF32, {rows * groups_per_row(cols), kParams}});
    else
      t.push_back({name + ".scale", io::DType::kF32, {rows * groups_per_row(cols)}});
    return t;
  }

  void save(io::SafetensorsWriter& w, const std::string& name) const {
    const std::vector<TensorSpec> t = expected(name, rows(), cols());
    w.add<std::uint8_t>(t[0].name, t[0].shape,
                        std::span<const std::uint8_t>(codes_.data(), codes_.bytes()));
    w.add<float>(t[1].name, t[1].shape, std::span<const float>(params_));
  }

  /// Uses the codes where they lie when the file keeps its bytes alive and they are 64-byte aligned
  /// (a file from io::SafetensorsWriter); reads them into a kernel buffer otherwise. Then checks
  /// every byte: padding codes (rows past `rows`, weights past `cols`) must be zero and ternary
  /// codes must not be 3.
  static LutCodes load(const io::SafetensorsView& f, const std::string& name, std::size_t rows,
                       std::size_t cols) {
    const std::vector<TensorSpec> t = expected(name, rows, cols);
    using Weights = kernels::LutWeights<Format>;
    LutCodes out;
    if (const auto* p = f.in_place<std::uint8_t>(t[0].name, t[0].shape, kAlignment)) {
      out.codes_ = Weights::borrow(rows, cols, p, f.owner());
    } else {
      out.codes_ = Weights(rows, cols);
      f.read_into<std::uint8_t>(t[0].name,
                                std::span<std::uint8_t>(out.codes_.data(), out.codes_.bytes()),
                                t[0].shape);
    }
    out.params_.assign(rows * groups_per_row(cols) * kParams, 0.0f);
    detail::read_finite(f, t[1].name, out.params_, t[1].shape);
    const Weights& w = out.codes_;
    constexpr std::size_t G = Weights::kGroup, T = kernels::kLutTile;
    constexpr unsigned bits = Format::kBits;
    std::vector<std::uint8_t> valid(w.pairs(), 0);  // bits of a pair's byte that hold weights
    for (std::size_t p = 0; p < w.pairs(); ++p)
      for (unsigned half = 0; half < 2; ++half)
        for (std::size_t i = 0; i < G; ++i)
          if ((2 * p + half) * G + i < cols)
            valid[p] |= static_cast<std::uint8_t>(((1u << bits) - 1) << (half * 4 + i * bits));
    const std::uint8_t* bytes = w.data();
    for (std::size_t tile = 0; tile < w.tiles(); ++tile)
      for (std::size_t p = 0; p < w.pairs(); ++p) {
        // One 32-byte row group at a time (vectorisable); the exact row only when it is bad.
        const std::uint8_t* b = bytes + (tile * w.pairs() + p) * T;
        unsigned bad = 0;
        for (std::size_t r = 0; r < T; ++r) {
          const unsigned allowed = tile * T + r < rows ? valid[p] : 0u;
          bad |= b[r] & ~allowed;
          if constexpr (std::is_same_v<Format, TernaryCode>)
            bad |= b[r] & (b[r] >> 1) & 0x55u;  // both bits of a 2-bit code set: code 3
        }
        if (bad == 0) continue;
        for (std::size_t r = 0; r < T; ++r) {
          const std::size_t row = tile * T + r;
          const unsigned allowed = row < rows ? valid[p] : 0u;
          require<FormatError>((b[r] & ~allowed) == 0, "load_model: tensor '", t[0].name,
                               "' has non-zero padding codes (tile ", tile, ", pair ", p, ", row ",
                               row, ")");
          require<FormatError>(!std::is_same_v<Format, TernaryCode> ||
                                   (b[r] & (b[r] >> 1) & 0x55u) == 0,
                               "load_model: tensor '", t[0].name,
                               "' holds the invalid ternary code 3 (row ", row, ")");
        }
      }
    return out;
  }

  static nlohmann::json describe() {
    nlohmann::json j = {{"form", kId},
                        {"layout", kLayout},
                        {"code", Format::kName},
                        {"bits", Format::kBits},
                        {"scales", StoredScales::name()},
                        {"group", group_of()}};
    j["params"] = Format::kHasCodebook ? "codebook" : "scale";
    return j;
  }

  std::size_t payload_bits() const {
    return rows() * cols() * Format::kBits + 32 * params_.size();
  }
  std::size_t streamed_bytes() const { return codes_.bytes() + 4 * params_.size(); }

 private:
  LutCodes(std::size_t rows, std::size_t cols)
      : codes_(rows, cols), params_(rows * groups_per_row(cols) * kParams, 0.0f) {}

  static constexpr std::size_t group_of() {
    if constexpr (requires { StoredScales::kGroup; })
      return StoredScales::kGroup;
    else
      return 0;
  }
  static std::size_t group_width(std::size_t cols) {
    const std::size_t g = group_of();
    return g == 0 ? cols : g;
  }
  static std::size_t groups_per_row(std::size_t cols) {
    return StoredScales::count(1, cols);
  }
  static std::size_t first_col(std::size_t g) { return g * group_of(); }

  // y = X_q W^T with W decoded to FP32: the training forward's FP32 path (same operands, same
  // GEMM), one scalar decode per product.
  void decoded_product(const ActivationRows& x, MatrixView<float> y) const {
    Matrix<float> w(rows(), cols());
    for (std::size_t r = 0; r < rows(); ++r)
      for (std::size_t c = 0; c < cols(); ++c) w(r, c) = value(r, c);
    kernels::gemm_forward(x.xq, w.view(), y);
  }

  kernels::LutWeights<Format> codes_;
  std::vector<float> params_;
};

}  // namespace pquant
