// Rotary position embeddings (RoPE), LLaMA convention, base 10000.
//
// Within each head of width hd (even), feature i is paired with feature i + hd/2 (the
// "rotate_half" pairing of Hugging Face's LLaMA; Meta's original code pairs 2i with 2i+1 — the
// two are a fixed permutation of the head features apart). Pair i at position p is rotated by
// angle p * theta_i, theta_i = base^(-2i/hd), i in [0, hd/2):
//   x'_i        = x_i cos - x_{i+hd/2} sin
//   x'_{i+hd/2} = x_i sin + x_{i+hd/2} cos
// The position p of a row is its index within its sequence (row % seq_len). The backward pass is
// the inverse rotation (angle -p * theta_i). Angles are computed in double, then rounded to T.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"

namespace pquant {

inline constexpr double kRopeBase = 10000.0;

template <class T>
struct RopeTable {
  std::size_t seq_len = 0;
  std::size_t head_dim = 0;
  std::vector<T> cos, sin;  // [seq_len x head_dim/2]

  RopeTable() = default;
  RopeTable(std::size_t seq, std::size_t hd, double base = kRopeBase)
      : seq_len(seq), head_dim(hd), cos(seq * (hd / 2)), sin(seq * (hd / 2)) {
    require<ValueError>(hd % 2 == 0 && hd > 0,
                        "RopeTable: argument 'head_dim' must be even and > 0, got ", hd);
    const std::size_t half = hd / 2;
    for (std::size_t i = 0; i < half; ++i) {
      const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
      for (std::size_t p = 0; p < seq; ++p) {
        const double angle = static_cast<double>(p) * theta;
        cos[p * half + i] = static_cast<T>(std::cos(angle));
        sin[p * half + i] = static_cast<T>(std::sin(angle));
      }
    }
  }
};

/// Rotates `heads` consecutive head vectors of one row (heads * head_dim values) in place to
/// position `pos` (< table.seq_len); inverse = true applies the transpose. The one rotation the
/// training attention (rope_apply) and the inference engine (one position at a time) share.
template <class T>
void rope_rotate(T* row, std::size_t heads, const RopeTable<T>& table, std::size_t pos,
                 bool inverse = false) {
  const std::size_t hd = table.head_dim, half = hd / 2;
  const T* c = table.cos.data() + pos * half;
  const T* s = table.sin.data() + pos * half;
  for (std::size_t h = 0; h < heads; ++h) {
    T* v = row + h * hd;
    for (std::size_t i = 0; i < half; ++i) {
      const T a = v[i], b = v[i + half];
      const T si = inverse ? -s[i] : s[i];
      v[i] = a * c[i] - b * si;
      v[i + half] = a * si + b * c[i];
    }
  }
}

/// x [batch*seq_len x heads*head_dim], rotated in place; inverse = true applies the transpose
/// (the backward pass of RoPE).
template <class T>
void rope_apply(MatrixView<T> x, std::size_t heads, const RopeTable<T>& table,
                bool inverse = false) {
  const std::size_t hd = table.head_dim;
  require<ShapeError>(x.cols == heads * hd && x.rows % table.seq_len == 0,
                      "rope_apply: argument 'x' must be [k*", table.seq_len, " x ", heads * hd,
                      "], got ", x.rows, "x", x.cols);
  for (std::size_t r = 0; r < x.rows; ++r)
    rope_rotate(&x(r, 0), heads, table, r % table.seq_len, inverse);
}

}  // namespace pquant
