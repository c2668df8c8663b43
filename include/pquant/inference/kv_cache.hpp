// KvCache: the keys and values of every layer for the positions decoded so far, and causal
// attention of new queries over them (the training attention's arithmetic: layers/attention.hpp).
//
//   cache.reserve(pos + n);                       // grows geometrically up to the context
//   cache.attend(layer, qkv, pos, out);           // qkv [n x 3d]: RoPE on Q and K at positions
//                                                 // pos.., K and V appended, out [n x d] = softmax(
//                                                 // Q K^T / sqrt(hd)) V per head, causal
// RoPE is rope_rotate (layers/rope.hpp) with the training table's values; scores and outputs run
// per head on the FP32 GEMM with the training code's operands, so every score and output has its
// summation order; the softmax is kernels::causal_softmax (the training attention's).
// Memory: 2 * layers * capacity * d floats; capacity doubles on demand, at most the context. All
// layers' K^T share one allocation and all layers' V another (so a cache of 2 MiB or more lies on
// transparent huge pages, as AlignedBuffer advises).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include <tbb/parallel_for.h>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/layers/rope.hpp"

namespace pquant::inference {

class KvCache {
 public:
  KvCache() = default;
  KvCache(std::size_t layers, std::size_t d_model, std::size_t heads, std::size_t context,
          float rope_theta)
      : layers_(layers), d_(d_model), heads_(heads), context_(context), theta_(rope_theta) {}

  std::size_t capacity() const { return capacity_; }

  /// Makes room for `positions` (<= context); keeps the cached positions.
  void reserve(std::size_t positions) {
    require<ValueError>(positions <= context_, "KvCache::reserve: ", positions,
                        " positions exceed the context of ", context_);
    if (positions <= capacity_) return;
    std::size_t cap = std::max<std::size_t>(capacity_ * 2, 64);
    cap = std::min(std::max(cap, positions), context_);
    const std::size_t wide = (cap + kKeyPad - 1) / kKeyPad * kKeyPad;
    Matrix<float> kt(layers_ * d_, wide), v(layers_ * cap, d_);
    for (std::size_t l = 0; l < layers_ && capacity_ > 0; ++l) {
      for (std::size_t c = 0; c < d_; ++c)
        std::copy_n(&keys_t(l)(c, 0), capacity_, kt.data() + (l * d_ + c) * wide);
      std::copy_n(values(l).data, capacity_ * d_, v.data() + l * cap * d_);
    }
    kt_ = std::move(kt);
    v_ = std::move(v);
    rope_ = RopeTable<float>(cap, d_ / heads_, static_cast<double>(theta_));
    capacity_ = cap;
  }

  /// qkv [n x 3d] (Q, K, V of positions pos..pos+n-1; Q and K rotated in place) -> out [n x d].
  void attend(std::size_t layer, MatrixView<float> qkv, std::size_t pos, MatrixView<float> out) {
    const std::size_t n = qkv.rows, d = d_, hd = d_ / heads_, keys = pos + n;
    require<ValueError>(keys <= capacity_, "KvCache::attend: positions up to ", keys,
                        " exceed the reserved ", capacity_);
    const MatrixView<float> Kt = keys_t(layer);
    const MatrixView<float> V = values(layer);
    for (std::size_t t = 0; t < n; ++t) {
      float* q = &qkv(t, 0);
      rope_rotate(q, 2 * heads_, rope_, pos + t);  // the heads of Q, then those of K
      for (std::size_t c = 0; c < d; ++c) Kt(c, pos + t) = q[d + c];
      std::copy_n(q + 2 * d, d, V.row(pos + t).data());
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    if (n > 1) {
      probs_.resize(n, keys);
      for (std::size_t h = 0; h < heads_; ++h) {
        const MatrixView<const float> qh(&qkv(0, h * hd), n, hd, qkv.stride);
        const MatrixView<const float> kth(&Kt(h * hd, 0), hd, keys, Kt.stride);
        const MatrixView<const float> vh(&V(0, h * hd), keys, hd, d);
        kernels::gemm_backward_data(qh, kth, probs_.view());  // Q_h (K_h^T) = Q_h K_h^T
        kernels::causal_softmax(probs_.view(), pos, scale);
        kernels::gemm_backward_data(probs_.view(), vh,
                                    MatrixView<float>(&out(0, h * hd), n, hd, out.stride));
      }
      return;
    }
    decode(Kt, V, MatrixView<const float>(qkv), hd, keys, scale, out);
  }

 private:
  // Reductions up to this length are one K slice of every FP32 GEMM path, so the in-place
  // products below sum in the training forward's order.
  static constexpr std::size_t kInPlaceSlice = 128;
  static_assert(kInPlaceSlice <= kernels::kGemmF32KSlice,
                "the decode attention's in-place products must fit one K slice of the FP32 GEMM");
  static constexpr std::size_t kKeyPad = 32;  // K^T columns: whole GEMM column panels

  /// One query, heads split over threads. The GEMM runs as dW = dY^T X (gemm_backward_weights),
  /// which reads K^T and V in place (no packing) when the query and the probabilities are given
  /// as strided columns; longer reductions take the packed GEMM with the training operand order.
  void decode(MatrixView<const float> Kt, MatrixView<const float> V, MatrixView<const float> qkv,
              std::size_t hd, std::size_t keys, float scale, MatrixView<float> out) {
    const std::size_t d = d_;
    const std::size_t wide = std::min(Kt.cols, (keys + kKeyPad - 1) / kKeyPad * kKeyPad);
    scores_.resize(heads_, Kt.cols);
    const std::size_t col_width = 2 * std::max(hd, capacity_);
    columns_.resize(heads_, col_width);
    prefetch_head(Kt, V, 0, hd, wide, keys);
    tbb::parallel_for(std::size_t{0}, heads_, [&](std::size_t h) {
      if (h + 1 < heads_) prefetch_head(Kt, V, h + 1, hd, wide, keys);
      float* col = columns_.row(h).data();
      float* s = scores_.row(h).data();
      const float* q = &qkv(0, h * hd);
      const MatrixView<const float> kth(&Kt(h * hd, 0), hd, wide, Kt.stride);
      if (hd <= kInPlaceSlice) {
        for (std::size_t i = 0; i < hd; ++i) col[2 * i] = q[i];
        kernels::gemm_backward_weights(MatrixView<const float>(col, hd, 1, 2), kth,
                                       MatrixView<float>(s, 1, wide, wide),
                                       kernels::Accumulate::overwrite);
      } else {
        kernels::gemm_backward_data(MatrixView<const float>(q, 1, hd, hd),
                                    MatrixView<const float>(kth.data, hd, keys, kth.stride),
                                    MatrixView<float>(s, 1, keys, keys));
      }
      kernels::causal_softmax(MatrixView<float>(s, 1, keys, keys), keys - 1, scale);
      const MatrixView<const float> vh(&V(0, h * hd), keys, hd, d);
      const MatrixView<float> oh(&out(0, h * hd), 1, hd, out.stride);
      if (keys <= kInPlaceSlice) {
        for (std::size_t j = 0; j < keys; ++j) col[2 * j] = s[j];
        kernels::gemm_backward_weights(MatrixView<const float>(col, keys, 1, 2), vh, oh,
                                       kernels::Accumulate::overwrite);
      } else {
        kernels::gemm_backward_data(MatrixView<const float>(s, 1, keys, keys), vh, oh);
      }
    });
  }

  /// Requests head h's keys and values (hd rows of K^T, `keys` rows of V) into L2. A decode step
  /// finds them in DRAM (the layer's weights passed through the caches since), so each head asks
  /// for the next one's before it computes its own (heads run mostly in order on a thread) and
  /// the two heads' misses overlap.
  static void prefetch_head(MatrixView<const float> Kt, MatrixView<const float> V, std::size_t h,
                            std::size_t hd, std::size_t wide, std::size_t keys) {
#if defined(__GNUC__) || defined(__clang__)
    constexpr std::size_t kLine = 64 / sizeof(float);
    for (std::size_t i = h * hd; i < (h + 1) * hd; ++i)
      for (std::size_t c = 0; c < wide; c += kLine) __builtin_prefetch(&Kt(i, c), 0, 2);
    for (std::size_t j = 0; j < keys; ++j)
      for (std::size_t c = h * hd; c < (h + 1) * hd; c += kLine) __builtin_prefetch(&V(j, c), 0, 2);
#else
    (void)Kt, (void)V, (void)h, (void)hd, (void)wide, (void)keys;
#endif
  }

  /// Layer l's K^T [d x capacity padded to 32] and V [capacity x d].
  MatrixView<float> keys_t(std::size_t l) { return kt_.view().row_range(l * d_, d_); }
  MatrixView<float> values(std::size_t l) { return v_.view().row_range(l * capacity_, capacity_); }

  std::size_t layers_ = 0, d_ = 0, heads_ = 1, context_ = 0, capacity_ = 0;
  float theta_ = 10000.0f;
  Matrix<float> kt_;  // the layers' K^T after RoPE, stacked: [layers * d x capacity padded]
  Matrix<float> v_;   // the layers' V, stacked: [layers * capacity x d]
  RopeTable<float> rope_;
  Matrix<float> probs_, scores_, columns_;
};

}  // namespace pquant::inference
