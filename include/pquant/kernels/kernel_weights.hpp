// Weights in the layouts the kernels stream: LutWeights<Format> (1-bit, ternary, codebook) and
// Int8Weights, with the packing functions that convert a PackedMatrix (any layout) or a matrix of
// integer values into them. Packing is done once per weight matrix (at load, or once per QAT step).
//
// LUT layout (kLutTile = 32 rows per tile; T-MAC-style, permuted so the kernel loads contiguously):
//   a row's codes are cut into groups of G = 4 / bits weights; the 4-bit group index holds code of
//   weight g*G + i at bits [i*bits, (i+1)*bits). Byte (t * pairs + p) * 32 + (r % 32) holds, for
//   row r of tile t = r / 32, group 2p in its low nibble and group 2p + 1 in its high nibble. One
//   32-byte load therefore feeds 32 rows with two groups each. Rows are padded to a whole tile and
//   K to a whole number of 4 groups (two pairs: one kernel step); padding codes are 0 and meet
//   zero activations, so they add 0.
//
// INT8 layout: row-major, each row padded with zeros to a multiple of 64 bytes.
//
// Both own their bytes, or borrow them (borrow()): codes read in place from memory an owner keeps
// alive, such as a loaded model file's buffer, so loading copies nothing. A borrowed object is
// read-only in place; the mutable accessors first copy the bytes into a buffer of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/packed_matrix.hpp"

namespace pquant::kernels {

inline constexpr std::size_t kLutTile = 32;       // rows per interleaved tile
inline constexpr std::size_t kInt8RowAlign = 64;  // bytes

template <class F>
concept LutFormat = CodeFormat<F> &&(F::kBits == 1 || F::kBits == 2 || F::kBits == 4);

/// Codes of a [rows x cols] matrix in the LUT layout above (codes only: scales stay with the
/// caller, codebooks are kept here because the kernel needs them).
template <LutFormat Format>
class LutWeights {
 public:
  using format_type = Format;
  static constexpr unsigned kBits = Format::kBits;
  static constexpr std::size_t kGroup = 4 / kBits;  // weights per 4-bit index

  LutWeights() = default;
  LutWeights(std::size_t rows, std::size_t cols)
      : rows_(rows),
        cols_(cols),
        pairs_(pairs_for(cols)),
        tiles_((rows + kLutTile - 1) / kLutTile) {
    require<ShapeError>(rows > 0 && cols > 0, "LutWeights: shape must be non-empty, got ", rows,
                        "x", cols);
    bytes_ = AlignedBuffer<std::uint8_t>(tiles_ * pairs_ * kLutTile);
    if constexpr (Format::kHasCodebook) codebooks_ = AlignedBuffer<float>(rows << kBits);
  }

  /// Codes of a [rows x cols] matrix read in place from `bytes` (bytes() of them in this layout,
  /// kAlignment-aligned), which `owner` keeps alive. Codebooks (codebook formats) are owned, zero.
  static LutWeights borrow(std::size_t rows, std::size_t cols, const std::uint8_t* bytes,
                           std::shared_ptr<const void> owner) {
    LutWeights w;
    w.rows_ = rows;
    w.cols_ = cols;
    w.pairs_ = pairs_for(cols);
    w.tiles_ = (rows + kLutTile - 1) / kLutTile;
    require<ShapeError>(rows > 0 && cols > 0, "LutWeights::borrow: shape must be non-empty, got ",
                        rows, "x", cols);
    require<ValueError>(bytes != nullptr && reinterpret_cast<std::uintptr_t>(bytes) % kAlignment == 0,
                        "LutWeights::borrow: argument 'bytes' must be ", kAlignment,
                        "-byte aligned");
    w.borrowed_ = bytes;
    w.owner_ = std::move(owner);
    if constexpr (Format::kHasCodebook) w.codebooks_ = AlignedBuffer<float>(rows << kBits);
    return w;
  }
  bool borrowed() const { return borrowed_ != nullptr; }

  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::size_t tiles() const { return tiles_; }
  /// Pairs of groups per row (padded K = pairs * 2 * kGroup).
  std::size_t pairs() const { return pairs_; }
  std::size_t padded_cols() const { return pairs_ * 2 * kGroup; }
  const std::uint8_t* data() const { return borrowed_ ? borrowed_ : bytes_.data(); }
  /// Raw layout bytes (for loaders that read a stored kernel layout; padding must stay zero).
  std::uint8_t* data() {
    own();
    return bytes_.data();
  }
  std::size_t bytes() const { return tiles_ * pairs_ * kLutTile; }
  /// Codebook of row r (2^bits floats), codebook formats only.
  const float* codebook(std::size_t r) const requires(Format::kHasCodebook) {
    return codebooks_.data() + (r << kBits);
  }
  float* codebook(std::size_t r) requires(Format::kHasCodebook) {
    return codebooks_.data() + (r << kBits);
  }

  std::uint8_t code(std::size_t r, std::size_t c) const {
    const std::size_t g = c / kGroup;
    const std::uint8_t byte = data()[offset(r, g / 2)];
    const unsigned nibble = (g % 2) ? (byte >> 4) : (byte & 15u);
    return static_cast<std::uint8_t>((nibble >> ((c % kGroup) * kBits)) & ((1u << kBits) - 1));
  }
  void set_code(std::size_t r, std::size_t c, std::uint8_t code) {
    const std::size_t g = c / kGroup;
    const unsigned shift = static_cast<unsigned>((g % 2) * 4 + (c % kGroup) * kBits);
    const unsigned mask = ((1u << kBits) - 1) << shift;
    std::uint8_t& byte = data()[offset(r, g / 2)];
    byte =
        static_cast<std::uint8_t>((byte & ~mask) | ((static_cast<unsigned>(code) << shift) & mask));
  }

 private:
  static std::size_t pairs_for(std::size_t cols) {
    return (cols + 4 * kGroup - 1) / (4 * kGroup) * 2;
  }
  std::size_t offset(std::size_t r, std::size_t pair) const {
    return ((r / kLutTile) * pairs_ + pair) * kLutTile + r % kLutTile;
  }
  // A borrowed object's first write copies the bytes into its own buffer.
  void own() {
    if (borrowed_ == nullptr) return;
    bytes_ = AlignedBuffer<std::uint8_t>(bytes());
    std::memcpy(bytes_.data(), borrowed_, bytes());
    borrowed_ = nullptr;
    owner_.reset();
  }

  AlignedBuffer<std::uint8_t> bytes_;
  AlignedBuffer<float> codebooks_;
  const std::uint8_t* borrowed_ = nullptr;  // set: the codes live there, owner_ keeps them alive
  std::shared_ptr<const void> owner_;
  std::size_t rows_ = 0, cols_ = 0, pairs_ = 0, tiles_ = 0;
};

using SignWeights = LutWeights<SignBit>;         // W1: codes 0 -> -1, 1 -> +1
using TernaryWeights = LutWeights<TernaryCode>;  // W2: codes 0, 1, 2 -> -1, 0, +1
template <unsigned Bits>
using CodebookWeights = LutWeights<CodebookIndex<Bits>>;

/// INT8 weights, rows padded with zeros to kInt8RowAlign bytes.
class Int8Weights {
 public:
  Int8Weights() = default;
  Int8Weights(std::size_t rows, std::size_t cols)
      : rows_(rows),
        cols_(cols),
        stride_((cols + kInt8RowAlign - 1) / kInt8RowAlign * kInt8RowAlign) {
    require<ShapeError>(rows > 0 && cols > 0, "Int8Weights: shape must be non-empty, got ", rows,
                        "x", cols);
    values_ = AlignedBuffer<std::int8_t>(rows * stride_);
  }
  /// A [rows x cols] matrix read in place from `values` (rows * stride() bytes in this layout,
  /// kAlignment-aligned), which `owner` keeps alive; symmetric() is computed from them.
  static Int8Weights borrow(std::size_t rows, std::size_t cols, const std::int8_t* values,
                            std::shared_ptr<const void> owner) {
    require<ShapeError>(rows > 0 && cols > 0, "Int8Weights::borrow: shape must be non-empty, got ",
                        rows, "x", cols);
    require<ValueError>(
        values != nullptr && reinterpret_cast<std::uintptr_t>(values) % kAlignment == 0,
        "Int8Weights::borrow: argument 'values' must be ", kAlignment, "-byte aligned");
    Int8Weights w;
    w.rows_ = rows;
    w.cols_ = cols;
    w.stride_ = (cols + kInt8RowAlign - 1) / kInt8RowAlign * kInt8RowAlign;
    w.borrowed_ = values;
    w.owner_ = std::move(owner);
    w.update_symmetry();
    return w;
  }
  bool borrowed() const { return borrowed_ != nullptr; }
  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::size_t stride() const { return stride_; }
  const std::int8_t* data() const { return borrowed_ ? borrowed_ : values_.data(); }
  std::int8_t* data() {
    own();
    return values_.data();
  }
  const std::int8_t* row(std::size_t r) const { return data() + r * stride_; }
  std::int8_t* row(std::size_t r) { return data() + r * stride_; }
  std::int8_t value(std::size_t r, std::size_t c) const { return data()[r * stride_ + c]; }
  /// True when no weight is -128 (enables the faster pmaddubsw path; the packing functions set it,
  /// code that writes data() directly calls update_symmetry()).
  bool symmetric() const { return symmetric_; }
  void update_symmetry() {
    const std::int8_t* v = std::as_const(*this).data();
    bool symmetric = true;
    for (std::size_t i = 0; i < rows_ * stride_; ++i) symmetric = symmetric && v[i] != -128;
    symmetric_ = symmetric;
  }

 private:
  void own() {
    if (borrowed_ == nullptr) return;
    values_ = AlignedBuffer<std::int8_t>(rows_ * stride_);
    std::memcpy(values_.data(), borrowed_, rows_ * stride_);
    borrowed_ = nullptr;
    owner_.reset();
  }

  AlignedBuffer<std::int8_t> values_;
  const std::int8_t* borrowed_ = nullptr;  // set: the values live there, owner_ keeps them alive
  std::shared_ptr<const void> owner_;
  std::size_t rows_ = 0, cols_ = 0, stride_ = 0;
  bool symmetric_ = false;
};

// ---------------------------------------------------------------------------------------------
// Packing.

/// [N x K] PackedMatrix codes (any layout) -> LUT layout. Codebook formats copy the per-row (or
/// per-tensor) codebooks. Ternary code 3 is not a weight: FormatError.
template <LutFormat F, ScaleGranularity S, PackedLayout L>
LutWeights<F> pack_lut(const PackedView<F, S, L>& w) {
  require<ShapeError>(w.rows > 0 && w.cols > 0 && w.codes != nullptr,
                      "pack_lut: argument 'w' must be non-empty, got ", w.rows, "x", w.cols);
  LutWeights<F> out(w.rows, w.cols);
  for (std::size_t r = 0; r < w.rows; ++r) {
    for (std::size_t c = 0; c < w.cols; ++c) {
      const std::uint8_t code = w.code(r, c);
      if constexpr (std::is_same_v<F, TernaryCode>) {
        require<FormatError>(code != 3,
                             "pack_lut: argument 'w' holds the invalid ternary code 3 at (", r,
                             ", ", c, ")");
      }
      out.set_code(r, c, code);
    }
  }
  if constexpr (F::kHasCodebook) {
    constexpr std::size_t kEntries = std::size_t{1} << F::kBits;
    const bool per_row =
        S::count(w.rows, w.cols) == w.rows && S::index(w.rows - 1, 0, w.cols) == w.rows - 1;
    const bool per_tensor = S::count(w.rows, w.cols) == 1;
    require<ShapeError>(per_row || per_tensor,
                        "pack_lut: argument 'w' must have per-row or per-tensor codebooks, got ",
                        S::name());
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t j = 0; j < kEntries; ++j)
        out.codebook(r)[j] = w.params[(per_tensor ? 0 : r) * kEntries + j];
  }
  return out;
}

/// [N x K] matrix of +-1 values -> W1 LUT layout (into `out`, reusing its memory when the shape is
/// unchanged). Any other value: ValueError. One pass, a byte at a time: the byte of (row r, pair p)
/// holds the codes of weights 8p..8p+7 at bits 0..7 (group 2p in the low nibble, code of weight
/// 4g + i at bit i), so it is the sign mask of 8 consecutive weights. QAT packs every step.
inline void pack_sign(MatrixView<const std::int8_t> w, SignWeights& out) {
  check::non_empty(w, "pack_sign", "w");
  if (out.rows() != w.rows || out.cols() != w.cols) out = SignWeights(w.rows, w.cols);
  static_assert(SignBit::encode(1) == 1 && SignBit::encode(-1) == 0);
  std::uint8_t* bytes = out.data();
  const std::size_t pairs = out.pairs();
  for (std::size_t r = 0; r < w.rows; ++r) {
    const std::int8_t* row = &w(r, 0);
    std::uint8_t* dst = bytes + (r / kLutTile) * pairs * kLutTile + r % kLutTile;
    unsigned bad = 0;
    for (std::size_t p = 0; p < pairs; ++p) {
      unsigned byte = 0;
      for (std::size_t i = 0; i < 8 && 8 * p + i < w.cols; ++i) {
        const int v = row[8 * p + i];
        bad |= static_cast<unsigned>(v != 1 && v != -1);
        byte |= static_cast<unsigned>(v > 0) << i;
      }
      dst[p * kLutTile] = static_cast<std::uint8_t>(byte);
    }
    if (bad != 0)
      for (std::size_t c = 0; c < w.cols; ++c)
        require<ValueError>(w(r, c) == 1 || w(r, c) == -1,
                            "pack_sign: argument 'w' must hold -1 or +1, got ", int{w(r, c)},
                            " at (", r, ", ", c, ")");
  }
}

/// [N x K] matrix of +-1 values -> W1 LUT layout. Any other value: ValueError.
inline SignWeights pack_sign(MatrixView<const std::int8_t> w) {
  SignWeights out;
  pack_sign(w, out);
  return out;
}

/// [N x K] matrix of -1/0/+1 values -> W2 LUT layout. Any other value: ValueError.
inline TernaryWeights pack_ternary(MatrixView<const std::int8_t> w) {
  check::non_empty(w, "pack_ternary", "w");
  TernaryWeights out(w.rows, w.cols);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) {
      const int v = w(r, c);
      require<ValueError>(v >= -1 && v <= 1,
                          "pack_ternary: argument 'w' must hold -1, 0 or +1, got ", v, " at (", r,
                          ", ", c, ")");
      out.set_code(r, c, TernaryCode::encode(v));
    }
  return out;
}

/// [N x K] int8 values -> INT8 kernel layout.
inline Int8Weights pack_int8(MatrixView<const std::int8_t> w) {
  check::non_empty(w, "pack_int8", "w");
  Int8Weights out(w.rows, w.cols);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) out.row(r)[c] = w(r, c);
  out.update_symmetry();
  return out;
}

/// [N x K] PackedMatrix of INT8 codes (any layout) -> INT8 kernel layout.
template <ScaleGranularity S, PackedLayout L>
Int8Weights pack_int8(const PackedView<Int8Code, S, L>& w) {
  require<ShapeError>(w.rows > 0 && w.cols > 0 && w.codes != nullptr,
                      "pack_int8: argument 'w' must be non-empty, got ", w.rows, "x", w.cols);
  Int8Weights out(w.rows, w.cols);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c)
      out.row(r)[c] = static_cast<std::int8_t>(w.value(r, c));
  out.update_symmetry();
  return out;
}

/// Integer value of weight (r, c) of a packed integer-format matrix (used by GEMMs and tests).
template <LutFormat F>
requires(!F::kHasCodebook) int lut_value(const LutWeights<F>& w, std::size_t r, std::size_t c) {
  return F::decode(w.code(r, c));
}

}  // namespace pquant::kernels
