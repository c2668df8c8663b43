// Scale granularity policies: which weights share one float scale.
//
//   PerTensor    one scale for the whole matrix
//   PerRow       one scale per output row (per output channel)
//   PerGroup<G>  one scale per G consecutive columns of a row; the last group of a row may be short
// Each provides count(rows, cols) and index(row, col, cols).
#pragma once

#include <concepts>
#include <cstddef>
#include <string>

namespace pquant {

struct PerTensor {
  static constexpr std::size_t count(std::size_t, std::size_t) { return 1; }
  static constexpr std::size_t index(std::size_t, std::size_t, std::size_t) { return 0; }
  static std::string name() { return "tensor"; }
};

struct PerRow {
  static constexpr std::size_t count(std::size_t rows, std::size_t) { return rows; }
  static constexpr std::size_t index(std::size_t r, std::size_t, std::size_t) { return r; }
  static std::string name() { return "row"; }
};

template <std::size_t G>
struct PerGroup {
  static_assert(G > 0, "group size must be positive");
  static constexpr std::size_t kGroup = G;
  static constexpr std::size_t groups_per_row(std::size_t cols) { return (cols + G - 1) / G; }
  static constexpr std::size_t count(std::size_t rows, std::size_t cols) {
    return rows * groups_per_row(cols);
  }
  static constexpr std::size_t index(std::size_t r, std::size_t c, std::size_t cols) {
    return r * groups_per_row(cols) + c / G;
  }
  static std::string name() { return "group" + std::to_string(G); }
};

template <class S>
concept ScaleGranularity = requires(std::size_t n) {
  { S::count(n, n) } -> std::convertible_to<std::size_t>;
  { S::index(n, n, n) } -> std::convertible_to<std::size_t>;
  { S::name() } -> std::convertible_to<std::string>;
};

}  // namespace pquant
