// The layer convention every trainable layer in pquant/layers follows (and model/ composes).
//
// Shapes. Tokens are rows: an activation batch X is [tokens x features]; a batch of B sequences of
// length T is B*T rows, sequence b occupying rows [b*T, (b+1)*T). Weights are [out x in] (row =
// output feature), so a linear layer computes Y = X W^T.
//
// Life cycle of a layer L with a plain config struct L::Config (runtime sizes only):
//   L layer(store, "blocks.0.attn.q", cfg);  // registers its tensors in the ParameterStore under
//                                             // hierarchical names ("<name>.weight", ...), keeps
//                                             // ParamIds; views are fetched from the store on use.
//   layer.init(rng);                          // deterministic initial values (Rng in init.hpp);
//                                             // same seed + same construction order = same model.
//   layer.forward(x, y);                      // x [tokens x in], y [tokens x out] is OVERWRITTEN.
//                                             // Caches (copies) what backward needs: the caller
//                                             // may reuse x's memory right after forward.
//   layer.forward(x, y, borrowed_input);      // (where supported) x is the caller's, unchanged
//                                             // until backward and already checked: kept as a
//                                             // view, not copied, and not scanned for NaN/Inf.
//   layer.backward(dy, dx);                   // dy [tokens x out] -> dx [tokens x in] OVERWRITTEN;
//                                             // parameter gradients are ACCUMULATED (+=) into
//                                             // store.grad(id) (the caller zeroes them once per
//                                             // step: store.zero_grads()). Uses the cache of the
//                                             // most recent forward: one forward, then at most one
//                                             // backward with the same token count.
// Passing an empty dx (MatrixView{} : rows == 0) skips the input gradient (first layer) where the
// layer supports it (documented per layer); parameter gradients are still accumulated.
//
// Sequence-aware layers (attention) take the batch structure explicitly:
//   forward(x, y, SequenceShape{batch, seq_len}) with x.rows == batch * seq_len.
//
// Quantization-aware layers (BitLinear, DecoupledFfn, attention projections) keep FP32 latent
// weights, quantize them on every forward, and backpropagate with the straight-through estimator:
// every quantizer is the identity in the backward pass and the backward products use the quantized
// operands (docs/method.md section 2): for Y = X_q W_q^T, dX = dY W_q and dW = dY^T X_q.
//
// Errors: wrong shapes are ShapeError, NaN/Inf input to forward is ValueError; messages name the
// layer ("Linear::forward"), the argument and what was expected. Thread safety: a layer object is
// not re-entrant (it owns its cache); layers parallelise internally with oneTBB.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

/// Batch structure of a [batch*seq_len x features] activation matrix, for sequence-aware layers.
struct SequenceShape {
  std::size_t batch = 1;
  std::size_t seq_len = 0;
  std::size_t tokens() const { return batch * seq_len; }
};

/// The tag of a forward whose input the caller lends: x stays valid and unchanged until the
/// layer's backward, and its values were already checked (it entered the model through a checked
/// forward, or the caller computed it from checked values). The layer keeps a view of x instead of
/// a copy and skips the NaN/Inf scan; shapes are still checked. Composed layers lend their own
/// buffers to their sublayers this way (one scan and no copies per activation); a NaN/Inf computed
/// inside the model still surfaces, in the loss and in global_grad_norm before the optimizer step.
struct BorrowedInput {
  explicit BorrowedInput() = default;
};
inline constexpr BorrowedInput borrowed_input{};

/// A layer that maps each token row independently ([tokens x in] -> [tokens x out]).
template <class L>
concept TokenwiseLayer = requires(L& layer, const L& clayer, Rng& rng, MatrixView<const float> x,
                                  MatrixView<float> y) {
  typename L::Config;
  layer.init(rng);
  layer.forward(x, y);
  layer.backward(x, y);
  { clayer.in_features() } -> std::convertible_to<std::size_t>;
  { clayer.out_features() } -> std::convertible_to<std::size_t>;
};

/// A layer that needs the sequence structure (causal attention).
template <class L>
concept SequenceLayer = requires(L& layer, const L& clayer, Rng& rng, MatrixView<const float> x,
                                 MatrixView<float> y, SequenceShape shape) {
  typename L::Config;
  layer.init(rng);
  layer.forward(x, y, shape);
  layer.backward(x, y);
  { clayer.in_features() } -> std::convertible_to<std::size_t>;
  { clayer.out_features() } -> std::convertible_to<std::size_t>;
};

/// A linear map [tokens x in] -> [tokens x out] that composite layers (attention, FFNs) take as a
/// policy: Linear (full precision) or BitLinear<...> (quantized). make_config builds its config
/// from the sizes; `normalize_input` asks a quantized projection to RMS-normalize its own input
/// (docs/method.md section 3); full-precision Linear ignores it (FP models normalize once,
/// LLaMA-style).
template <class P>
concept Projection = TokenwiseLayer<P> &&
    requires(std::size_t n, bool normalize_input, double init_std) {
  { P::make_config(n, n, normalize_input, init_std) } -> std::same_as<typename P::Config>;
  { P::kQuantized } -> std::convertible_to<bool>;
};

namespace detail {

/// Joins a layer name and a tensor name: "blocks.0.attn.q" + "weight" -> "blocks.0.attn.q.weight".
inline std::string param_name(const std::string& layer, const char* tensor) {
  return layer.empty() ? std::string(tensor) : layer + "." + tensor;
}

/// f(first, count) over blocks of 64 rows of [0, rows), in parallel: for element-wise (per-row)
/// work, whose result does not depend on the thread count.
template <class F>
void for_row_blocks(std::size_t rows, F&& f) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows, 64),
                    [&](const tbb::blocked_range<std::size_t>& b) { f(b.begin(), b.size()); });
}

/// dst = src (dst resized; src may be strided): one memcpy per block of rows (per row if strided).
template <class T>
void copy_into(MatrixView<const T> src, Matrix<T>& dst) {
  dst.resize(src.rows, src.cols);
  if (src.empty()) return;
  for_row_blocks(src.rows, [&](std::size_t r0, std::size_t rows) {
    if (src.contiguous()) {
      std::memcpy(&dst(r0, 0), src.data + r0 * src.cols, rows * src.cols * sizeof(T));
      return;
    }
    for (std::size_t r = r0; r < r0 + rows; ++r)
      std::memcpy(&dst(r, 0), src.data + r * src.stride, src.cols * sizeof(T));
  });
}

/// NaN/Inf check on the hot path: the SIMD kernel (kernels::all_finite) per block of rows; only on
/// failure does check::finite run to name the element.
inline void check_finite_fast(MatrixView<const float> x, const char* fn, const char* arg) {
  std::atomic<std::uint32_t> any_bad{0};
  for_row_blocks(x.rows, [&](std::size_t r0, std::size_t rows) {
    if (!kernels::all_finite(x.row_range(r0, rows))) any_bad.store(1, std::memory_order_relaxed);
  });
  if (any_bad.load() != 0) check::finite(x, fn, arg);
}

/// The shape checks every forward makes on its input and output.
inline void check_forward_shapes(MatrixView<const float> x, MatrixView<float> y, std::size_t in,
                                 std::size_t out, const char* fn) {
  check::non_empty(x, fn, "x");
  require<ShapeError>(x.cols == in, fn, ": argument 'x' must have ", in, " columns, got ", x.cols);
  check::shape(MatrixView<const float>(y), x.rows, out, fn, "y");
  check::non_empty(y, fn, "y");
}

/// The checks every forward makes on its input and output: shapes, then no NaN/Inf in x.
inline void check_forward_io(MatrixView<const float> x, MatrixView<float> y, std::size_t in,
                             std::size_t out, const char* fn) {
  check_forward_shapes(x, y, in, out, fn);
  check_finite_fast(x, fn, "x");
}

/// layer.forward(args..., borrowed_input) where the layer takes a borrowed input (a user's policy
/// need not), else layer.forward(args...).
template <class Layer, class... Args>
void forward_borrowed(Layer& layer, Args&&... args) {
  if constexpr (requires { layer.forward(args..., borrowed_input); })
    layer.forward(std::forward<Args>(args)..., borrowed_input);
  else
    layer.forward(std::forward<Args>(args)...);
}

/// A layer's cached forward input: its own copy, or the caller's lent view (BorrowedInput).
template <class T>
class CachedInput {
 public:
  /// Copies x (the caller may reuse its memory).
  void copy(MatrixView<const T> x) {
    copy_into(x, own_);
    borrowed_ = false;
  }
  /// Keeps the view (the caller keeps x unchanged until backward).
  void borrow(MatrixView<const T> x) {
    lent_ = x;
    borrowed_ = true;
  }
  MatrixView<const T> view() const { return borrowed_ ? lent_ : own_.view(); }
  std::size_t rows() const { return view().rows; }

 private:
  Matrix<T> own_;
  MatrixView<const T> lent_;
  bool borrowed_ = false;
};

/// The checks every backward makes: a forward happened, dy matches it, dx is empty or matches.
inline void check_backward_io(MatrixView<const float> dy, MatrixView<float> dx, std::size_t tokens,
                              std::size_t in, std::size_t out, const char* fn) {
  require<ValueError>(tokens > 0, fn, ": called before forward");
  check::shape(dy, tokens, out, fn, "dy");
  check::non_empty(dy, fn, "dy");
  if (dx.rows != 0) {
    check::shape(MatrixView<const float>(dx), tokens, in, fn, "dx");
    check::non_empty(dx, fn, "dx");
  }
}

}  // namespace detail
}  // namespace pquant
