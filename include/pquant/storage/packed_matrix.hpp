// PackedMatrix<Format, Scales, Layout>: a row-major matrix of b-bit codes plus its float parameters.
//
// Parameters are one float per scale group (Scales policy) for integer formats, or a codebook of
// 2^b floats per scale group for codebook formats. The value a weight stands for is
//   integer formats:  params[group(r, c)] * Format::decode(code(r, c))
//   codebook formats: params[group(r, c) * 2^b + code(r, c)]
// PackedView is the non-owning counterpart that kernels and layers take (no copies in hot paths).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/layout.hpp"
#include "pquant/storage/memory_footprint.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant {

template <CodeFormat Format, ScaleGranularity Scales>
constexpr std::size_t params_per_group() {
  if constexpr (Format::kHasCodebook) {
    return std::size_t{1} << Format::kBits;
  } else {
    return 1;
  }
}

/// Non-owning view of packed codes and their parameters.
template <CodeFormat Format, ScaleGranularity Scales = PerRow, PackedLayout Layout = RowMajor>
struct PackedView {
  using format_type = Format;
  using scales_type = Scales;
  using layout_type = Layout;
  static constexpr unsigned kBits = Format::kBits;
  static constexpr std::uint8_t kMask = static_cast<std::uint8_t>((1u << kBits) - 1);

  const std::uint8_t* codes = nullptr;
  const float* params = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;

  std::size_t code_bytes() const { return Layout::bytes(rows, cols, kBits); }
  std::size_t param_count() const {
    return Scales::count(rows, cols) * params_per_group<Format, Scales>();
  }
  std::uint8_t code(std::size_t r, std::size_t c) const {
    const BitPosition p = Layout::locate(rows, cols, kBits, r, c);
    return static_cast<std::uint8_t>((codes[p.byte] >> p.shift) & kMask);
  }
  /// Scale of weight (r, c) (integer formats).
  float scale(std::size_t r, std::size_t c) const
    requires(!Format::kHasCodebook)
  {
    return params[Scales::index(r, c, cols)];
  }
  /// Integer value of weight (r, c) (integer formats).
  int value(std::size_t r, std::size_t c) const
    requires(!Format::kHasCodebook)
  {
    return Format::decode(code(r, c));
  }
  /// The real number weight (r, c) stands for.
  float dequantized(std::size_t r, std::size_t c) const {
    const std::size_t g = Scales::index(r, c, cols);
    if constexpr (Format::kHasCodebook) {
      return params[g * params_per_group<Format, Scales>() + code(r, c)];
    } else {
      return params[g] * static_cast<float>(Format::decode(code(r, c)));
    }
  }
};

template <CodeFormat Format, ScaleGranularity Scales = PerRow, PackedLayout Layout = RowMajor>
class PackedMatrix {
 public:
  using format_type = Format;
  using scales_type = Scales;
  using layout_type = Layout;
  using view_type = PackedView<Format, Scales, Layout>;
  static constexpr unsigned kBits = Format::kBits;

  PackedMatrix() = default;
  PackedMatrix(std::size_t rows, std::size_t cols)
      : codes_(checked_bytes(rows, cols)),
        params_(Scales::count(rows, cols) * params_per_group<Format, Scales>()),
        rows_(rows),
        cols_(cols) {}

  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::span<std::uint8_t> codes() { return codes_.span(); }
  std::span<const std::uint8_t> codes() const { return codes_.span(); }
  /// Scales (integer formats) or codebooks (codebook formats), group-major.
  std::span<float> params() { return params_.span(); }
  std::span<const float> params() const { return params_.span(); }

  view_type view() const { return {codes_.data(), params_.data(), rows_, cols_}; }
  operator view_type() const { return view(); }

  std::uint8_t code(std::size_t r, std::size_t c) const { return view().code(r, c); }
  void set_code(std::size_t r, std::size_t c, std::uint8_t code) {
    const BitPosition p = Layout::locate(rows_, cols_, kBits, r, c);
    const auto mask = static_cast<std::uint8_t>(view_type::kMask << p.shift);
    codes_[p.byte] = static_cast<std::uint8_t>((codes_[p.byte] & ~mask) |
                                               ((code & view_type::kMask) << p.shift));
  }
  float dequantized(std::size_t r, std::size_t c) const { return view().dequantized(r, c); }

  /// Every weight's real value, [rows x cols].
  Matrix<float> dequantize() const {
    Matrix<float> out(rows_, cols_);
    const view_type v = view();
    for (std::size_t r = 0; r < rows_; ++r)
      for (std::size_t c = 0; c < cols_; ++c) out(r, c) = v.dequantized(r, c);
    return out;
  }

  MemoryFootprint footprint() const {
    MemoryFootprint f;
    f.weights = rows_ * cols_;
    f.code_bits = rows_ * cols_ * kBits;
    f.param_bits = params_.size() * 32;
    f.allocated_bytes = codes_.allocated_bytes() + params_.allocated_bytes();
    return f;
  }

 private:
  static std::size_t checked_bytes(std::size_t rows, std::size_t cols) {
    require<ShapeError>(rows > 0 && cols > 0, "PackedMatrix: shape must be non-empty, got ", rows,
                        "x", cols);
    return Layout::bytes(rows, cols, kBits);
  }

  AlignedBuffer<std::uint8_t> codes_;
  AlignedBuffer<float> params_;
  std::size_t rows_ = 0;
  std::size_t cols_ = 0;
};

/// The same codes and parameters in another layout. convert_layout(convert_layout<B>(a)) == a,
/// byte for byte, because padding is always zero.
template <PackedLayout To, CodeFormat F, ScaleGranularity S, PackedLayout From>
PackedMatrix<F, S, To> convert_layout(const PackedMatrix<F, S, From>& src) {
  PackedMatrix<F, S, To> dst(src.rows(), src.cols());
  for (std::size_t r = 0; r < src.rows(); ++r)
    for (std::size_t c = 0; c < src.cols(); ++c) dst.set_code(r, c, src.code(r, c));
  std::span<const float> from = src.params();
  std::span<float> to = dst.params();
  for (std::size_t i = 0; i < from.size(); ++i) to[i] = from[i];
  return dst;
}

}  // namespace pquant
