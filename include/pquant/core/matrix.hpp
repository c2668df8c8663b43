// MatrixView<T> (non-owning, strided rows) and Matrix<T> (owning, aligned, dense).
//
// Shapes follow the paper's notation: a weight W is [out_features x in_features] (row = output),
// an activation batch X is [tokens x features] (row = token).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"

namespace pquant {

template <class T>
struct MatrixView {
  T* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::size_t stride = 0;  // elements between the starts of consecutive rows (>= cols)

  constexpr MatrixView() = default;
  constexpr MatrixView(T* d, std::size_t r, std::size_t c) : data(d), rows(r), cols(c), stride(c) {}
  constexpr MatrixView(T* d, std::size_t r, std::size_t c, std::size_t s)
      : data(d), rows(r), cols(c), stride(s) {}

  /// A const view of a mutable one converts implicitly.
  constexpr operator MatrixView<const T>() const
    requires(!std::is_const_v<T>)
  {
    return {data, rows, cols, stride};
  }

  constexpr T& operator()(std::size_t r, std::size_t c) const { return data[r * stride + c]; }
  constexpr std::span<T> row(std::size_t r) const { return {data + r * stride, cols}; }
  constexpr std::size_t size() const { return rows * cols; }
  constexpr bool empty() const { return rows == 0 || cols == 0; }
  constexpr bool contiguous() const { return stride == cols; }
  /// Rows [first, first + count).
  constexpr MatrixView row_range(std::size_t first, std::size_t count) const {
    return {data + first * stride, count, cols, stride};
  }
  /// Columns [first, first + count) (same rows and stride).
  constexpr MatrixView col_range(std::size_t first, std::size_t count) const {
    return {data + first, rows, count, stride};
  }
};

template <class T>
class Matrix {
 public:
  Matrix() = default;
  Matrix(std::size_t rows, std::size_t cols) : buffer_(rows * cols), rows_(rows), cols_(cols) {}

  /// Makes this rows x cols: unchanged when it already is, else all zeros (the allocation reused
  /// when large enough, so a scratch whose row count varies between calls does not reallocate).
  void resize(std::size_t rows, std::size_t cols) {
    if (rows == rows_ && cols == cols_) return;
    buffer_.assign_zeros(rows * cols);
    rows_ = rows;
    cols_ = cols;
  }

  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  std::size_t size() const { return rows_ * cols_; }
  bool empty() const { return size() == 0; }
  T* data() { return buffer_.data(); }
  const T* data() const { return buffer_.data(); }
  T& operator()(std::size_t r, std::size_t c) { return buffer_[r * cols_ + c]; }
  const T& operator()(std::size_t r, std::size_t c) const { return buffer_[r * cols_ + c]; }
  std::span<T> row(std::size_t r) { return {data() + r * cols_, cols_}; }
  std::span<const T> row(std::size_t r) const { return {data() + r * cols_, cols_}; }
  std::span<T> flat() { return buffer_.span(); }
  std::span<const T> flat() const { return buffer_.span(); }

  MatrixView<T> view() { return {data(), rows_, cols_}; }
  MatrixView<const T> view() const { return {data(), rows_, cols_}; }
  operator MatrixView<T>() { return view(); }
  operator MatrixView<const T>() const { return view(); }

 private:
  AlignedBuffer<T> buffer_;
  std::size_t rows_ = 0;
  std::size_t cols_ = 0;
};

/// Argument checks shared by every entry point. `fn` names the public function, `arg` the argument.
namespace check {

template <class T>
inline void non_empty(MatrixView<T> m, std::string_view fn, std::string_view arg) {
  require<ShapeError>(!m.empty(), fn, ": argument '", arg, "' must be non-empty, got ", m.rows,
                      "x", m.cols);
  require<ShapeError>(m.data != nullptr, fn, ": argument '", arg, "' has a null data pointer");
  require<ShapeError>(m.stride >= m.cols, fn, ": argument '", arg, "' has stride ", m.stride,
                      " < cols ", m.cols);
}

template <class T>
inline void shape(MatrixView<T> m, std::size_t rows, std::size_t cols, std::string_view fn,
                  std::string_view arg) {
  require<ShapeError>(m.rows == rows && m.cols == cols, fn, ": argument '", arg, "' must be ", rows,
                      "x", cols, ", got ", m.rows, "x", m.cols);
}

template <class T>
inline void size(std::span<T> v, std::size_t n, std::string_view fn, std::string_view arg) {
  require<ShapeError>(v.size() == n, fn, ": argument '", arg, "' must have ", n,
                      " elements, got ", v.size());
}

/// Throws ValueError naming the first NaN/Inf element.
template <class T>
inline void finite(MatrixView<T> m, std::string_view fn, std::string_view arg) {
  for (std::size_t r = 0; r < m.rows; ++r) {
    for (std::size_t c = 0; c < m.cols; ++c) {
      const float v = static_cast<float>(m(r, c));
      require<ValueError>(std::isfinite(v), fn, ": argument '", arg,
                          "' must be finite, got ", v, " at (", r, ", ", c, ")");
    }
  }
}

template <class T>
inline void finite(std::span<T> v, std::string_view fn, std::string_view arg) {
  finite(MatrixView<T>(v.data(), 1, v.size()), fn, arg);
}

}  // namespace check
}  // namespace pquant
