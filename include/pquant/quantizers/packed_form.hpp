// PackedForm: the deployable (packed) counterpart of a weight quantizer, and the contract every
// packed form meets so the inference engine can serve it (docs/inference.md).
//
// A packed form holds one projection (or several stacked row-wise, e.g. [Q; K; V]) with the latent
// weights gone. It provides
//   kId                  registry key written in model files ("sign1.row", "codebook4.row", ...)
//   kLayout              the kernel layout its codes are stored in
//   kInput               which activation operand it reads (FP32 rows or INT8 per-token codes)
//   pack<Q>(parts)       latent FP32 weights of each part -> packed form, each part quantized on
//                        its own by Q::quantize (its own scales), parts stacked row-wise
//   rows(), cols()       the stacked shape
//   gemv(x, y)           one token (decoding)      y[1 x rows] = W . x
//   gemm(x, y)           several tokens (prefill)  y[n x rows] = W . x
//   save(w, name)        its tensors "<name>.<field>" into a safetensors writer
//   expected(name, r, c) the tensors (name, dtype, exact shape) a [r x c] form stores: the loader
//                        checks a file against them before allocating anything
//   load(f, name, r, c)  reads them back; FormatError on any bad code, padding or non-finite value.
//                        It may keep using the file's bytes where they lie (f.in_place<T>(...),
//                        holding f.owner()) instead of copying them
//   describe()           JSON: code format, scale granularity, group (for the model file)
//   payload_bits(), streamed_bytes()   exact accounting (codes + parameters; bytes per product)
// A quantizer names its packed form as `using packed_form = P;` or by specialising
// pquant::packed_form<Q> (the library's quantizers do so beside their definition). A form must
// reproduce the training forward of BitLinear<Q>: the same codes and parameters, the same products.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/io/safetensors.hpp"
#include "pquant/quantizers/weight_quantizer.hpp"

namespace pquant {

/// Which activation operand a packed form reads.
enum class FormInput {
  kFp32,         // a: the normalized FP32 rows (full-precision projections)
  kInt8PerToken  // q, 1/g and X_q = q / g of Int8AbsMaxPerToken (quantized projections)
};

/// The activation operand of a product, computed once per normalized input and shared by every
/// projection that reads it. q, inv_gain and xq are empty when no INT8 consumer reads the input.
struct ActivationRows {
  MatrixView<const float> a;          // [n x k] normalized FP32 input
  MatrixView<const std::int8_t> q;    // [n x k] INT8 codes
  std::span<const float> inv_gain;    // [n] 1/g per token (the integer epilogue's token scale)
  MatrixView<const float> xq;         // [n x k] q / g: the training forward's X_q
  std::size_t rows() const { return a.rows; }
};

/// One tensor a packed form stores: its name, dtype and exact shape.
struct TensorSpec {
  std::string name;
  io::DType dtype = io::DType::kF32;
  std::vector<std::uint64_t> shape;
};

template <class P>
concept PackedForm =
    std::movable<P> && requires(const P& p, const ActivationRows& x, MatrixView<float> y,
                                io::SafetensorsWriter& w, const io::SafetensorsView& f,
                                const std::string& name, std::size_t n) {
  { P::kId } -> std::convertible_to<std::string_view>;
  { P::kLayout } -> std::convertible_to<std::string_view>;
  { P::kInput } -> std::convertible_to<FormInput>;
  { p.rows() } -> std::same_as<std::size_t>;
  { p.cols() } -> std::same_as<std::size_t>;
  p.gemv(x, y);
  p.gemm(x, y);
  p.save(w, name);
  { P::expected(name, n, n) } -> std::same_as<std::vector<TensorSpec>>;
  { P::load(f, name, n, n) } -> std::same_as<P>;
  { P::describe() } -> std::same_as<nlohmann::json>;
  { p.payload_bits() } -> std::same_as<std::size_t>;
  { p.streamed_bytes() } -> std::same_as<std::size_t>;
};

/// P packs the latent weights of quantizer Q.
template <class P, class Q>
concept PacksQuantizer = PackedForm<P> && requires(std::span<const MatrixView<const float>> parts) {
  { P::template pack<Q>(parts) } -> std::same_as<P>;
};

/// The packed form of quantizer Q: Q::packed_form, or a specialisation of this trait. No `type`
/// member: Q cannot be served.
template <class Q>
struct packed_form {};
template <class Q>
  requires requires { typename Q::packed_form; }
struct packed_form<Q> {
  using type = typename Q::packed_form;
};
template <class Q>
using packed_form_t = typename packed_form<Q>::type;

/// A weight quantizer the inference engine can serve.
template <class Q>
concept ServableQuantizer = WeightQuantizer<Q> && requires { typename packed_form<Q>::type; } &&
    PacksQuantizer<packed_form_t<Q>, Q>;

// The library's packed forms (defined in quantizers/packed_lut.hpp, packed_int8.hpp,
// packed_fp32.hpp; the quantizer headers only name them).
template <class Format, class StoredScales>
class LutCodes;
template <class StoredScales>
class Int8Codes;
class Fp32Weights;

/// Parameters of stacked parts are stored per row (or per row group): a per-tensor scale or
/// codebook is repeated for every row of its part, so parts with different scales stack.
template <ScaleGranularity S>
struct stored_scales {
  using type = S;
};
template <>
struct stored_scales<PerTensor> {
  using type = PerRow;
};
template <ScaleGranularity S>
using stored_scales_t = typename stored_scales<S>::type;

namespace detail {

/// Rows of stacked parts (each [r_i x cols], equal cols, non-empty); ShapeError otherwise.
inline std::size_t stacked_rows(std::span<const MatrixView<const float>> parts, const char* fn) {
  require<ShapeError>(!parts.empty(), fn, ": argument 'parts' must hold at least one matrix");
  std::size_t rows = 0;
  for (const MatrixView<const float>& p : parts) {
    require<ShapeError>(!p.empty() && p.cols == parts[0].cols, fn,
                        ": every part must be non-empty with ", parts[0].cols, " columns, got ",
                        p.rows, "x", p.cols);
    rows += p.rows;
  }
  return rows;
}

/// Reads a float tensor of exact shape into `out` and checks every value is finite (the message
/// names the tensor).
inline void read_finite(const io::SafetensorsView& f, const std::string& name, std::span<float> out,
                        std::vector<std::uint64_t> shape) {
  f.read_into<float>(name, out, std::move(shape));
  for (std::size_t i = 0; i < out.size(); ++i)
    require<FormatError>(std::isfinite(out[i]), "load_model: tensor '", name,
                         "' holds a non-finite value at element ", i);
}

}  // namespace detail

}  // namespace pquant
