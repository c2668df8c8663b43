// Packing layouts: where the code of weight (r, c) lives in a packed byte array.
//
// A layout is a stateless tag with
//   kName                          stored in model files so a reader knows the order
//   bytes(rows, cols, bits)        size of the code array
//   locate(rows, cols, bits, r, c) -> BitPosition{byte, shift}: the code is
//                                  (array[byte] >> shift) & ((1 << bits) - 1)
// Codes never straddle a byte (bits divides 8). Bytes not covered by any code are zero, so
// converting between layouts (convert_layout in packed_matrix.hpp) round-trips bit-exactly.
// Kernels ask for the layout they stream fastest; users never have to care.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

namespace pquant {

struct BitPosition {
  std::size_t byte;
  unsigned shift;
};

/// Plain row-major order, codes packed LSB-first, each row starting on a fresh byte.
/// The interchange layout: what importers and exporters of other frameworks expect.
struct RowMajor {
  static constexpr std::string_view kName = "row_major";
  static constexpr std::size_t row_bytes(std::size_t cols, unsigned bits) {
    return (cols * bits + 7) / 8;
  }
  static constexpr std::size_t bytes(std::size_t rows, std::size_t cols, unsigned bits) {
    return rows * row_bytes(cols, bits);
  }
  static constexpr BitPosition locate(std::size_t, std::size_t cols, unsigned bits, std::size_t r,
                                      std::size_t c) {
    const std::size_t bit = c * bits;
    return {r * row_bytes(cols, bits) + bit / 8, static_cast<unsigned>(bit % 8)};
  }
};

/// Tiles of `Tile` rows whose bytes are interleaved: byte k of rows [t*Tile, t*Tile+Tile) are
/// adjacent, so one vector load feeds Tile rows at once. Rows are padded to a whole tile and each
/// row's bytes to a multiple of `ColBytes` (padding codes are zero).
template <std::size_t Tile, std::size_t ColBytes = 1>
struct RowInterleaved {
  static_assert(Tile > 0 && ColBytes > 0);
  static constexpr std::size_t kTile = Tile;
  static constexpr std::size_t kColBytes = ColBytes;
  static constexpr std::string_view kName = "row_interleaved";
  static constexpr std::size_t row_bytes(std::size_t cols, unsigned bits) {
    return ((cols * bits + 7) / 8 + ColBytes - 1) / ColBytes * ColBytes;
  }
  static constexpr std::size_t tiles(std::size_t rows) { return (rows + Tile - 1) / Tile; }
  static constexpr std::size_t bytes(std::size_t rows, std::size_t cols, unsigned bits) {
    return tiles(rows) * Tile * row_bytes(cols, bits);
  }
  static constexpr BitPosition locate(std::size_t, std::size_t cols, unsigned bits, std::size_t r,
                                      std::size_t c) {
    const std::size_t bit = c * bits;
    const std::size_t tile = r / Tile;
    const std::size_t k = bit / 8;
    // Within a tile: groups of ColBytes bytes per row, rows interleaved group by group.
    const std::size_t group = k / ColBytes;
    const std::size_t within = k % ColBytes;
    const std::size_t offset = tile * Tile * row_bytes(cols, bits) +
                               (group * Tile + r % Tile) * ColBytes + within;
    return {offset, static_cast<unsigned>(bit % 8)};
  }
};

template <class L>
concept PackedLayout = requires(std::size_t n, unsigned b) {
  { L::kName } -> std::convertible_to<std::string_view>;
  { L::bytes(n, n, b) } -> std::convertible_to<std::size_t>;
  { L::locate(n, n, b, n, n) } -> std::same_as<BitPosition>;
};

}  // namespace pquant
