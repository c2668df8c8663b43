// FFN activations: SwiGLU (gated, LLaMA) and ReLU^2 (ungated), forward and backward, any T.
//
// SwiGLU: h = silu(g) * u, silu(g) = g * sigmoid(g); the FFN computes g = x Wg^T, u = x Wu^T.
// ReLU^2: h = max(u, 0)^2; the FFN has no gate projection.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "pquant/core/matrix.hpp"
#include "pquant/layers/fast_exp.hpp"

namespace pquant {

/// Which nonlinearity an FFN uses (docs/method.md section 3: SwiGLU default, ReLU^2 an option).
enum class FfnActivation { kSwiGLU, kReLU2 };

template <class T>
inline T sigmoid(T v) {
  if constexpr (std::is_same_v<T, float>) return fast_sigmoid(v);  // vectorisable (fast_exp.hpp)
  // Two branches so exp never overflows.
  if (v >= 0) return T(1) / (T(1) + std::exp(-v));
  const T e = std::exp(v);
  return e / (T(1) + e);
}

/// gate [n x h], up [n x h] -> h [n x h]: h = silu(gate) * up.
template <class T>
void swiglu_forward(MatrixView<const T> gate, MatrixView<const T> up, MatrixView<T> h) {
  for (std::size_t i = 0; i < gate.rows; ++i)
    for (std::size_t c = 0; c < gate.cols; ++c) {
      const T g = gate(i, c);
      h(i, c) = g * sigmoid(g) * up(i, c);
    }
}

/// dh [n x h] -> dgate, dup [n x h] (overwritten). silu'(g) = s(g) * (1 + g * (1 - s(g))).
template <class T>
void swiglu_backward(MatrixView<const T> dh, MatrixView<const T> gate, MatrixView<const T> up,
                     MatrixView<T> dgate, MatrixView<T> dup) {
  for (std::size_t i = 0; i < gate.rows; ++i)
    for (std::size_t c = 0; c < gate.cols; ++c) {
      const T g = gate(i, c), s = sigmoid(g);
      dup(i, c) = dh(i, c) * g * s;
      dgate(i, c) = dh(i, c) * up(i, c) * s * (T(1) + g * (T(1) - s));
    }
}

/// up [n x h] -> h [n x h]: h = max(up, 0)^2.
template <class T>
void relu2_forward(MatrixView<const T> up, MatrixView<T> h) {
  for (std::size_t i = 0; i < up.rows; ++i)
    for (std::size_t c = 0; c < up.cols; ++c) {
      const T v = up(i, c) > 0 ? up(i, c) : T(0);
      h(i, c) = v * v;
    }
}

/// dh [n x h] -> dup [n x h] (overwritten): dup = 2 * max(up, 0) * dh.
template <class T>
void relu2_backward(MatrixView<const T> dh, MatrixView<const T> up, MatrixView<T> dup) {
  for (std::size_t i = 0; i < up.rows; ++i)
    for (std::size_t c = 0; c < up.cols; ++c)
      dup(i, c) = up(i, c) > 0 ? T(2) * up(i, c) * dh(i, c) : T(0);
}

}  // namespace pquant
