// Variants written as a user would (application code, not the library): composed from the layer
// classes and quantizers, served through the generic export / model file / engine.
#pragma once

#include <string_view>

#include "pquant/layers/attention.hpp"
#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/decoupled_ffn.hpp"
#include "pquant/layers/ffn.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"
#include "pquant/quantizers/packed_form.hpp"

namespace test_variants {

using namespace pquant;

using variants::Decoupled;

using KMeans4Row = BitLinear<KMeansCodebook<4, PerRow>>;
using KMeans2Tensor = BitLinear<KMeansCodebook<2, PerTensor>>;
using SignRow = BitLinear<SignAbsMean<PerRow>>;
using SignGroup64 = BitLinear<SignAbsMean<PerGroup<64>>>;

/// docs/variants.md's example: ternary attention, 4-bit k-means (per row) dense FFN.
struct TernaryKMeans : variants::Dense<KMeans4Row> {
  static constexpr std::string_view kName = "ternary-kmeans";
  using Attention = CausalSelfAttention<TernaryBitLinear>;
  static Attention::Config attention_config(const ModelConfig& c) {
    return variants::Dense<TernaryBitLinear>::attention_config(c);
  }
};

/// pQuant with per-row 1-bit scales.
struct PQuantPerRow : Decoupled<SignRow, Int8BitLinear, SignRow> {
  static constexpr std::string_view kName = "pquant-perrow";
};

/// Ternary attention + pQuant's FFN.
struct TernaryPQuant : Decoupled<TernaryBitLinear, Int8BitLinear, SignBitLinear> {
  static constexpr std::string_view kName = "ternary-pquant";
};

/// BitNet with 1-bit scales per group of 64 weights.
struct BitNetGroup64 : variants::Dense<SignGroup64> {
  static constexpr std::string_view kName = "bitnet-group64";
};

/// examples/custom_variant's shape: ternary attention; experts 4-bit k-means per row; 1-bit
/// branch per-row scales.
struct TernaryKMeansExperts : Decoupled<TernaryBitLinear, KMeans4Row, SignRow> {
  static constexpr std::string_view kName = "ternary-kmeans-experts";
};

/// 2-bit per-tensor k-means everywhere.
struct KMeans2 : variants::Dense<KMeans2Tensor> {
  static constexpr std::string_view kName = "kmeans2";
};

/// A user's packed form (written outside the library): the weights decoded once to FP32 and
/// multiplied with X_q on the FP32 GEMM, which is what BitLinear's FP32 path computes.
template <class Q>
class DecodedFp32 {
 public:
  static constexpr FormInput kInput = FormInput::kInt8PerToken;
  static constexpr std::string_view kLayout = "decoded_f32";
  static constexpr std::string_view kId = "user.decoded_f32";
  template <class Quantizer>
  static DecodedFp32 pack(std::span<const MatrixView<const float>> parts) {
    std::size_t rows = 0;
    for (const auto& p : parts) rows += p.rows;
    DecodedFp32 out;
    out.w_ = Matrix<float>(rows, parts[0].cols);
    std::size_t r0 = 0;
    for (const auto& p : parts) {
      const Matrix<float> v = Quantizer::quantize(p).dequantize();
      for (std::size_t r = 0; r < p.rows; ++r, ++r0)
        for (std::size_t c = 0; c < p.cols; ++c) out.w_(r0, c) = v(r, c);
    }
    return out;
  }
  std::size_t rows() const { return w_.rows(); }
  std::size_t cols() const { return w_.cols(); }
  void gemv(const ActivationRows& x, MatrixView<float> y) const { gemm(x, y); }
  void gemm(const ActivationRows& x, MatrixView<float> y) const {
    kernels::gemm_forward(x.xq, w_.view(), y);
  }
  static std::vector<TensorSpec> expected(const std::string& name, std::size_t rows,
                                          std::size_t cols) {
    return {{name + ".decoded", io::DType::kF32, {rows, cols}}};
  }
  void save(io::SafetensorsWriter& w, const std::string& name) const {
    w.add<float>(name + ".decoded", {rows(), cols()}, w_.flat());
  }
  static DecodedFp32 load(const io::SafetensorsView& f, const std::string& name, std::size_t rows,
                          std::size_t cols) {
    DecodedFp32 out;
    out.w_ = Matrix<float>(rows, cols);
    pquant::detail::read_finite(f, name + ".decoded", out.w_.flat(), {rows, cols});
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

/// A user's quantizer that names its own packed form.
struct UserCodebook : KMeansCodebook<2, PerRow> {
  static constexpr std::string_view kName = "user_codebook2";
  using packed_form = DecodedFp32<UserCodebook>;
};

struct UserQuantizerVariant : variants::Dense<BitLinear<UserCodebook>> {
  static constexpr std::string_view kName = "user-quantizer";
};

/// Full-precision attention, 1-bit dense FFN.
struct FpAttentionBitFfn : variants::Dense<SignBitLinear> {
  static constexpr std::string_view kName = "fp-attention-bit-ffn";
  using Attention = CausalSelfAttention<NormedLinear>;
  static Attention::Config attention_config(const ModelConfig& c) {
    return variants::Dense<NormedLinear>::attention_config(c);
  }
};

/// 8-bit k-means has no packed form: not exportable.
struct KMeans8 : variants::Dense<BitLinear<KMeansCodebook<8, PerRow>>> {
  static constexpr std::string_view kName = "kmeans8";
};

}  // namespace test_variants
