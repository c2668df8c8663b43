// Multi-head causal self-attention with RoPE; the four projections are a Projection policy.
//
//   a = RMSNorm(x)                      one pre-norm shared by Q, K and V (learnable gain)
//   Q = RoPE(a Wq^T), K = RoPE(a Wk^T), V = a Wv^T      (Q/K/V projections: normalize_input off)
//   (Config::fused_qkv: one projection "qkv" with W = [Wq; Wk; Wv], [3 d x d], whose output
//   columns are Q | K | V: one quantization scale and mean for the three instead of one each)
//   per sequence b and head h:  S = Q_h K_h^T / sqrt(hd), S[t, s] = -inf for s > t (causal),
//                               P = softmax_rows(S), O_h = P V_h
//   y = O Wo^T                          (a quantized O projection normalizes its own input)
// The block adds the residual (x + y) and must NOT normalize x again. Softmax subtracts the row
// max. Work is split over batch*heads with oneTBB; each task writes its own head's columns. The
// attention is fused: P lives per block of queries in a per-thread scratch and the backward
// recomputes it, so memory does not grow with batch * heads * T^2.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/matrix.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/fast_exp.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/layers/rope.hpp"

namespace pquant {

namespace detail {
/// Row t of the scores S (scaled by `scale`) -> softmax over s <= t (row max subtracted), 0 above
/// the diagonal.
/// Order-preserving int32 key of a float (negative floats have their magnitude bits flipped): max
/// over keys is max over floats, and integer compares vectorise (float ones do not under GCC's
/// -ftrapping-math). The key map is its own inverse.
inline std::int32_t float_order_key(std::int32_t bits) {
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

/// float rows: the same softmax with vectorisable loops (max on order keys, sum in 8 fixed lanes
/// added pairwise: a fixed order, so results do not depend on threads or machines).
inline void causal_softmax_row_f32(float* row, std::size_t t, std::size_t seq, float scale) {
  const std::size_t n = t + 1;
  std::int32_t best = std::numeric_limits<std::int32_t>::min();
  for (std::size_t s = 0; s < n; ++s) {
    row[s] *= scale;
    const std::int32_t key = float_order_key(std::bit_cast<std::int32_t>(row[s]));
    best = key > best ? key : best;
  }
  const float mx = std::bit_cast<float>(float_order_key(best));
  for (std::size_t s = 0; s < n; ++s) row[s] = fast_exp(row[s] - mx);
  float lane[8] = {};
  std::size_t s = 0;
  for (; s + 8 <= n; s += 8)
    for (std::size_t j = 0; j < 8; ++j) lane[j] += row[s + j];
  for (std::size_t j = 0; s + j < n; ++j) lane[j] += row[s + j];
  const float z =
      ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  const float inv = 1.0f / z;
  for (std::size_t i = 0; i < n; ++i) row[i] *= inv;
  for (std::size_t i = n; i < seq; ++i) row[i] = 0;
}

/// The softmax backward of one float row (the reference of kernels::causal_softmax_backward):
/// ds = (p * (dp - sum_{s <= t} dp * p)) * scale for s <= t (the sum in sum_in_16_lanes' order),
/// 0 above; in place.
inline void causal_softmax_backward_row_f32(float* ds, const float* p, std::size_t t,
                                            std::size_t seq, float scale) {
  const float sum = sum_in_16_lanes<float>(t + 1, [&](std::size_t s) { return ds[s] * p[s]; });
  for (std::size_t s = 0; s <= t; ++s) ds[s] = p[s] * (ds[s] - sum) * scale;
  for (std::size_t s = t + 1; s < seq; ++s) ds[s] = 0;
}

template <class T>
void causal_softmax_row(T* row, std::size_t t, std::size_t seq, T scale) {
  if constexpr (std::is_same_v<T, float>) return causal_softmax_row_f32(row, t, seq, scale);
  T mx = -std::numeric_limits<T>::infinity();
  for (std::size_t s = 0; s <= t; ++s) mx = std::max(mx, row[s] *= scale);
  T z = 0;
  for (std::size_t s = 0; s <= t; ++s) row[s] = exp_of(row[s] - mx);
  for (std::size_t s = 0; s <= t; ++s) z += row[s];
  const T inv = T(1) / z;
  for (std::size_t s = 0; s <= t; ++s) row[s] *= inv;
  for (std::size_t s = t + 1; s < seq; ++s) row[s] = 0;
}

/// Block of keys / queries of the float path's per-head products (causal blocking).
inline constexpr std::size_t kCausalBlock = 32;

template <class F>
void for_each_head(std::size_t count, F&& f) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, count),
                    [&](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i != r.end(); ++i) f(i);
                    });
}
}  // namespace detail

namespace detail {
/// The one definition of the attention probabilities of the float path: queries [r0, r1) of a
/// head (rows of qh) against keys [0, r1) (rows of kh) -> p [r1 - r0 x r1], row i the causal
/// softmax of query r0 + i (zeros above the diagonal). S = Q K^T on the kernels' FP32 GEMM (each
/// score one chain over the head's features, whatever the block), then kernels::causal_softmax.
/// The forward, the backward's recomputation and probabilities() all call it, so they agree bit
/// for bit.
inline void head_probabilities(MatrixView<const float> qh, MatrixView<const float> kh,
                               std::size_t r0, std::size_t r1, float scale, MatrixView<float> p) {
  kernels::gemm_forward(qh.row_range(r0, r1 - r0), kh.row_range(0, r1), p);
  kernels::causal_softmax(p, r0, scale);
}

/// Generic-T row: the causal softmax of query t of one head (keys s <= t, zeros above), with the
/// scores summed over features in order; the scalar reference of the float path.
template <class T>
void head_probability_row(MatrixView<const T> q, MatrixView<const T> k, std::size_t row0,
                          std::size_t col0, std::size_t hd, std::size_t t, std::size_t seq, T scale,
                          T* pt) {
  const T* qt = &q(row0 + t, col0);
  for (std::size_t s = 0; s <= t; ++s) {
    const T* ks = &k(row0 + s, col0);
    T acc = 0;
    for (std::size_t c = 0; c < hd; ++c) acc += qt[c] * ks[c];
    pt[s] = acc;
  }
  causal_softmax_row(pt, t, seq, scale);
}
}  // namespace detail

namespace detail {
/// The free attention functions' shared checks: heads > 0 dividing q's width, q with
/// batch * seq_len rows, and every other matrix (named in `others`) of q's shape.
template <class T>
void check_attention_shapes(
    const char* fn, MatrixView<const T> q, std::size_t heads, SequenceShape shape,
    std::initializer_list<std::pair<const char*, MatrixView<const T>>> others) {
  check::non_empty(q, fn, "q");
  require<ShapeError>(heads > 0 && q.cols % heads == 0, fn, ": argument 'heads' (", heads,
                      ") must be positive and divide the width of 'q' (", q.cols, ")");
  require<ShapeError>(shape.batch > 0 && shape.seq_len > 0 && q.rows == shape.tokens(), fn,
                      ": argument 'q' must have batch*seq_len = ", shape.batch, "*", shape.seq_len,
                      " rows, got ", q.rows);
  for (const auto& [name, m] : others) check::shape(m, q.rows, q.cols, fn, name);
}
}  // namespace detail

/// Q, K, V [B*T x H*hd] -> O [B*T x H*hd]. Fused: per (sequence, head) and block of kCausalBlock
/// queries, the block's scores and probabilities live in a per-thread scratch of kCausalBlock x T
/// floats and are not kept (the backward recomputes them); nothing of size T x T is written.
template <class T>
void causal_attention_forward(MatrixView<const T> q, MatrixView<const T> k, MatrixView<const T> v,
                              std::size_t heads, SequenceShape shape, MatrixView<T> o) {
  detail::check_attention_shapes<T>("causal_attention_forward", q, heads, shape,
                                    {{"k", k}, {"v", v}, {"o", o}});
  const std::size_t seq = shape.seq_len, hd = q.cols / heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  if constexpr (std::is_same_v<T, float>) {
    // Blocks of kCausalBlock queries [r0, r1) see keys [0, r1) only: the products skip the blocks
    // above the diagonal (5/8 of the full products at T = 128); the skipped terms are exact zeros.
    detail::for_each_head(shape.batch * heads, [&](std::size_t bh) {
      const std::size_t b = bh / heads, h = bh % heads, row0 = b * seq, col0 = h * hd;
      const MatrixView<const float> qh(&q(row0, col0), seq, hd, q.stride);
      const MatrixView<const float> kh(&k(row0, col0), seq, hd, k.stride);
      const MatrixView<const float> vh(&v(row0, col0), seq, hd, v.stride);
      kernels::detail::Scratch<float, 8> p_buffer(detail::kCausalBlock * seq);
      for (std::size_t r0 = 0; r0 < seq; r0 += detail::kCausalBlock) {  // O = P V_h, s < r1
        const std::size_t r1 = std::min(seq, r0 + detail::kCausalBlock);
        const MatrixView<float> p(p_buffer.data(), r1 - r0, r1, seq);
        detail::head_probabilities(qh, kh, r0, r1, scale, p);
        kernels::gemm_backward_data(MatrixView<const float>(p), vh.row_range(0, r1),
                                    MatrixView<float>(&o(row0 + r0, col0), r1 - r0, hd, o.stride));
      }
    });
    return;
  }
  detail::for_each_head(shape.batch * heads, [&](std::size_t bh) {
    const std::size_t b = bh / heads, h = bh % heads, row0 = b * seq, col0 = h * hd;
    std::vector<T> pt(seq);
    for (std::size_t t = 0; t < seq; ++t) {
      detail::head_probability_row(q, k, row0, col0, hd, t, seq, scale, pt.data());
      T* ot = &o(row0 + t, col0);
      for (std::size_t c = 0; c < hd; ++c) ot[c] = 0;
      for (std::size_t s = 0; s <= t; ++s) {
        const T* vs = &v(row0 + s, col0);
        for (std::size_t c = 0; c < hd; ++c) ot[c] += pt[s] * vs[c];
      }
    }
  });
}

/// dO -> dQ, dK, dV (all [B*T x H*hd], overwritten), from the forward's Q, K, V; P is recomputed
/// (bit for bit the forward's) per block of queries:
///   dP = dO V^T, dV = P^T dO, dS = P .* (dP - rowsum(dP .* P)) / sqrt(hd), dQ = dS K, dK = dS^T Q.
/// Float path: dQ of a query block is one product over its keys; dV and dK sum over queries in
/// blocks of kCausalBlock (each block's sum a chain from zero on the FP32 GEMM, added to the
/// gradient in query order): a fixed order, independent of the thread count.
template <class T>
void causal_attention_backward(MatrixView<const T> dout, MatrixView<const T> q,
                               MatrixView<const T> k, MatrixView<const T> v, std::size_t heads,
                               SequenceShape shape, MatrixView<T> dq, MatrixView<T> dk,
                               MatrixView<T> dv) {
  detail::check_attention_shapes<T>(
      "causal_attention_backward", q, heads, shape,
      {{"dout", dout}, {"k", k}, {"v", v}, {"dq", dq}, {"dk", dk}, {"dv", dv}});
  const std::size_t seq = shape.seq_len, hd = q.cols / heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  auto zero_head = [&](MatrixView<T> m, std::size_t row0, std::size_t col0) {
    for (std::size_t t = 0; t < seq; ++t) std::fill_n(&m(row0 + t, col0), hd, T(0));
  };
  if constexpr (std::is_same_v<T, float>) {
    constexpr auto kAccumulate = kernels::Accumulate::accumulate;
    detail::for_each_head(shape.batch * heads, [&](std::size_t bh) {
      const std::size_t b = bh / heads, h = bh % heads, row0 = b * seq, col0 = h * hd;
      const MatrixView<const float> qh(&q(row0, col0), seq, hd, q.stride);
      const MatrixView<const float> kh(&k(row0, col0), seq, hd, k.stride);
      const MatrixView<const float> vh(&v(row0, col0), seq, hd, v.stride);
      const MatrixView<const float> doh(&dout(row0, col0), seq, hd, dout.stride);
      const MatrixView<float> dvh(&dv(row0, col0), seq, hd, dv.stride);
      const MatrixView<float> dkh(&dk(row0, col0), seq, hd, dk.stride);
      zero_head(dv, row0, col0);
      zero_head(dk, row0, col0);
      // P and dS of one query block in a per-thread scratch (no allocation per head and step).
      kernels::detail::Scratch<float, 8> buffer(2 * detail::kCausalBlock * seq);
      for (std::size_t r0 = 0; r0 < seq; r0 += detail::kCausalBlock) {
        const std::size_t r1 = std::min(seq, r0 + detail::kCausalBlock), rows = r1 - r0;
        const MatrixView<float> p(buffer.data(), rows, r1, seq);
        const MatrixView<float> ds(buffer.data() + detail::kCausalBlock * seq, rows, r1, seq);
        detail::head_probabilities(qh, kh, r0, r1, scale, p);
        kernels::gemm_forward(doh.row_range(r0, rows), vh.row_range(0, r1), ds);  // dP
        // dS = P .* (dP - rowsum(dP .* P)) / sqrt(hd): causal_softmax_backward_row_f32 bit for bit.
        kernels::causal_softmax_backward(ds, p, r0, scale);
        // dV += P^T dO and dK += dS^T Q for keys [0, r1); dQ = dS K for the block's queries.
        kernels::gemm_backward_weights(p, doh.row_range(r0, rows), dvh.row_range(0, r1),
                                       kAccumulate);
        kernels::gemm_backward_weights(ds, qh.row_range(r0, rows), dkh.row_range(0, r1),
                                       kAccumulate);
        kernels::gemm_backward_data(ds, kh.row_range(0, r1),
                                    MatrixView<float>(&dq(row0 + r0, col0), rows, hd, dq.stride));
      }
    });
    return;
  }
  detail::for_each_head(shape.batch * heads, [&](std::size_t bh) {
    const std::size_t b = bh / heads, h = bh % heads, row0 = b * seq, col0 = h * hd;
    zero_head(dq, row0, col0);
    zero_head(dk, row0, col0);
    zero_head(dv, row0, col0);
    std::vector<T> pt(seq), ds(seq);
    for (std::size_t t = 0; t < seq; ++t) {
      detail::head_probability_row(q, k, row0, col0, hd, t, seq, scale, pt.data());
      const T* dot_ = &dout(row0 + t, col0);
      T sum = 0;
      for (std::size_t s = 0; s <= t; ++s) {  // dP[t, s] = sum_c dO[t, c] v[s, c]
        const T* vs = &v(row0 + s, col0);
        T acc = 0;
        for (std::size_t c = 0; c < hd; ++c) acc += dot_[c] * vs[c];
        ds[s] = acc;
        sum += acc * pt[s];
        T* dvs = &dv(row0 + s, col0);
        for (std::size_t c = 0; c < hd; ++c) dvs[c] += pt[s] * dot_[c];
      }
      T* dqt = &dq(row0 + t, col0);
      const T* qt = &q(row0 + t, col0);
      for (std::size_t s = 0; s <= t; ++s) {
        const T g = pt[s] * (ds[s] - sum) * scale;
        if (g == 0) continue;
        const T* ks = &k(row0 + s, col0);
        T* dks = &dk(row0 + s, col0);
        for (std::size_t c = 0; c < hd; ++c) {
          dqt[c] += g * ks[c];
          dks[c] += g * qt[c];
        }
      }
    }
  });
}

/// The attention probabilities of Q, K (as the forward computes them) -> probs [B*H*T*T],
/// row-major per (b, h): probs[((b*H + h)*T + t)*T + s], zero above the diagonal. For analysis:
/// training neither keeps nor needs them.
template <class T>
void causal_attention_probabilities(MatrixView<const T> q, MatrixView<const T> k, std::size_t heads,
                                    SequenceShape shape, std::span<T> probs) {
  detail::check_attention_shapes<T>("causal_attention_probabilities", q, heads, shape, {{"k", k}});
  const std::size_t seq = shape.seq_len, hd = q.cols / heads;
  check::size(probs, shape.batch * heads * seq * seq, "causal_attention_probabilities", "probs");
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  detail::for_each_head(shape.batch * heads, [&](std::size_t bh) {
    const std::size_t b = bh / heads, h = bh % heads, row0 = b * seq, col0 = h * hd;
    T* ph = probs.data() + bh * seq * seq;
    if constexpr (std::is_same_v<T, float>) {
      const MatrixView<const float> qh(&q(row0, col0), seq, hd, q.stride);
      const MatrixView<const float> kh(&k(row0, col0), seq, hd, k.stride);
      for (std::size_t r0 = 0; r0 < seq; r0 += detail::kCausalBlock) {
        const std::size_t r1 = std::min(seq, r0 + detail::kCausalBlock);
        detail::head_probabilities(qh, kh, r0, r1, scale,
                                   MatrixView<float>(ph + r0 * seq, r1 - r0, r1, seq));
        for (std::size_t t = r0; t < r1; ++t) std::fill(ph + t * seq + r1, ph + (t + 1) * seq, 0.f);
      }
    } else {
      for (std::size_t t = 0; t < seq; ++t)
        detail::head_probability_row(q, k, row0, col0, hd, t, seq, scale, ph + t * seq);
    }
  });
}

template <Projection Proj = SignBitLinear>
class CausalSelfAttention {
 public:
  using projection_type = Proj;

  struct Config {
    std::size_t d_model = 0;
    std::size_t heads = 0;  // d_model % heads == 0, head_dim = d_model / heads even
    double rope_base = kRopeBase;
    double init_std = 0.02;      // Q, K, V latent weights
    double out_init_std = 0.02;  // O (GPT-2 scales it by 1/sqrt(2 * layers): caller's choice)
    bool fused_qkv = false;      // Q, K, V as one [3 d_model x d_model] projection "qkv"
  };

  /// Registers "<name>.norm.gain", then "<name>.{q,k,v,o}.*" (Proj's tensors, e.g. ".weight";
  /// a quantized O also has "<name>.o.norm.gain"); with fused_qkv "<name>.qkv.*" instead of q, k,
  /// v.
  CausalSelfAttention(ParameterStore& store, std::string name, Config cfg)
      : cfg_(checked(cfg, name)),
        norm_(store, detail::param_name(name, "norm"), RMSNorm::Config{cfg.d_model}),
        q_(input_projection(!cfg.fused_qkv, store, name, "q", 1, cfg)),
        k_(input_projection(!cfg.fused_qkv, store, name, "k", 1, cfg)),
        v_(input_projection(!cfg.fused_qkv, store, name, "v", 1, cfg)),
        qkv_(input_projection(cfg.fused_qkv, store, name, "qkv", 3, cfg)),
        o_(store, detail::param_name(name, "o"),
           Proj::make_config(cfg.d_model, cfg.d_model, true, cfg.out_init_std)) {}

  void init(Rng& rng) {
    norm_.init(rng);
    for (auto* p : {&q_, &k_, &v_, &qkv_})
      if (*p) (*p)->init(rng);
    o_.init(rng);
  }

  /// x [batch*seq_len x d_model] -> y [batch*seq_len x d_model] (the residual is the caller's).
  void forward(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape) {
    check_input(x, y, shape);
    detail::check_finite_fast(x, kForward, "x");
    detail::copy_into(x, x_);  // x is the caller's; the norm's backward reads this copy
    norm_.forward(x_.view(), a_.view(), borrowed_input);
    attend(y, shape);
  }
  /// The same with x lent by the caller (BorrowedInput: kept as a view, not scanned).
  void forward(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape, BorrowedInput) {
    check_input(x, y, shape);
    norm_.forward(x, a_.view(), borrowed_input);
    attend(y, shape);
  }

  /// dy [tokens x d_model] -> dx (overwritten; empty view skips it); parameter gradients +=.
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    constexpr const char* fn = "CausalSelfAttention::backward";
    detail::check_backward_io(dy, dx, q_view_.rows, cfg_.d_model, cfg_.d_model, fn);
    const std::size_t n = dy.rows, d = cfg_.d_model;
    for (Matrix<float>* m : {&datt_, &da_}) m->resize(n, d);
    ensure_qkv_shapes(n, dqkv_, {&dk_, &dv_, &da_part_});
    const auto [dq, dk, dv] = split_qkv(dqkv_, dk_, dv_);
    o_.backward(dy, datt_.view());
    causal_attention_backward<float>(datt_.view(), q_view_, k_view_, v_view_, cfg_.heads, shape_,
                                     dq, dk, dv);
    rope_apply<float>(dq, cfg_.heads, rope_, /*inverse=*/true);
    rope_apply<float>(dk, cfg_.heads, rope_, /*inverse=*/true);
    if (cfg_.fused_qkv) {
      qkv_->backward(dqkv_.view(), da_.view());
    } else {
      q_->backward(dq, da_.view());
      k_->backward(dk, da_part_.view());
      add_into(da_, da_part_);
      v_->backward(dv, da_part_.view());
      add_into(da_, da_part_);
    }
    norm_.backward(da_.view(), dx);
  }

  std::size_t in_features() const { return cfg_.d_model; }
  std::size_t out_features() const { return cfg_.d_model; }
  std::size_t head_dim() const { return cfg_.d_model / cfg_.heads; }
  const Config& config() const { return cfg_; }
  const RMSNorm& norm() const { return norm_; }
  /// The separate Q, K, V projections (ValueError with fused_qkv: use qkv_projections()).
  const Proj& q() const { return separate(q_, "q"); }
  const Proj& k() const { return separate(k_, "k"); }
  const Proj& v() const { return separate(v_, "v"); }
  /// The projections whose stacked weights are [Wq; Wk; Wv]: {q, k, v}, or {qkv} when fused.
  std::vector<const Proj*> qkv_projections() const {
    if (cfg_.fused_qkv) return {&*qkv_};
    return {&*q_, &*k_, &*v_};
  }
  const Proj& o() const { return o_; }
  /// Attention probabilities of the last forward, [batch*heads*seq_len*seq_len] (see
  /// causal_attention_probabilities), recomputed from its queries and keys on each call into a
  /// buffer of the layer (training keeps no T x T matrix); valid until the next call or forward.
  /// Empty before the first forward.
  std::span<const float> probabilities() const {
    probs_.resize(q_view_.rows == 0 ? 0
                                    : shape_.batch * cfg_.heads * shape_.seq_len * shape_.seq_len);
    if (!probs_.empty())
      causal_attention_probabilities<float>(q_view_, k_view_, cfg_.heads, shape_, probs_);
    return probs_;
  }

 private:
  static constexpr const char* kForward = "CausalSelfAttention::forward";
  void check_input(MatrixView<const float> x, MatrixView<float> y, SequenceShape shape) {
    require<ShapeError>(shape.seq_len > 0 && shape.batch > 0 && x.rows == shape.tokens(), kForward,
                        ": argument 'x' must have batch*seq_len = ", shape.batch, "*",
                        shape.seq_len, " rows, got ", x.rows);
    detail::check_forward_shapes(x, y, cfg_.d_model, cfg_.d_model, kForward);
    const std::size_t n = x.rows, d = cfg_.d_model;
    for (Matrix<float>* m : {&a_, &att_}) m->resize(n, d);
    ensure_qkv_shapes(n, qkv_out_, {&k_out_, &v_out_});
  }
  // a_ = RMSNorm(x) -> y; the projections read the attention's own buffers (lent).
  void attend(MatrixView<float> y, SequenceShape shape) {
    shape_ = shape;
    const auto [q, k, v] = split_qkv(qkv_out_, k_out_, v_out_);
    auto project = [&](std::optional<Proj>& proj, MatrixView<float> out) {
      if constexpr (SharedInputProjection<Proj>)
        detail::forward_shared_borrowed(*proj, shared_, out);
      else
        detail::forward_borrowed(*proj, a_.view(), out);
    };
    if constexpr (SharedInputProjection<Proj>)  // Q, K, V read one quantized copy of a
      Proj::quantize_input(a_.view(), shared_);
    if (cfg_.fused_qkv) {
      project(qkv_, qkv_out_.view());
    } else {
      project(q_, q);
      project(k_, k);
      project(v_, v);
    }
    if (rope_.seq_len != shape.seq_len)
      rope_ = RopeTable<float>(shape.seq_len, head_dim(), cfg_.rope_base);
    rope_apply<float>(q, cfg_.heads, rope_);
    rope_apply<float>(k, cfg_.heads, rope_);
    q_view_ = q;
    k_view_ = k;
    v_view_ = v;
    causal_attention_forward<float>(MatrixView<const float>(q), k, v, cfg_.heads, shape,
                                    att_.view());
    detail::forward_borrowed(o_, att_.view(), y);
  }

  /// first: [n x 3d] when fused, else [n x d] like the separate-projection buffers `rest` (which
  /// a fused attention does not use).
  void ensure_qkv_shapes(std::size_t n, Matrix<float>& first,
                         std::initializer_list<Matrix<float>*> rest) const {
    const std::size_t d = cfg_.d_model;
    first.resize(n, cfg_.fused_qkv ? 3 * d : d);
    if (!cfg_.fused_qkv)
      for (Matrix<float>* m : rest) m->resize(n, d);
  }
  struct QkvViews {
    MatrixView<float> q, k, v;
  };
  /// Q, K, V (or their gradients): the three column blocks of `first` when fused, else `first`,
  /// `k` and `v` themselves.
  QkvViews split_qkv(Matrix<float>& first, Matrix<float>& k, Matrix<float>& v) const {
    if (!cfg_.fused_qkv) return {first.view(), k.view(), v.view()};
    const std::size_t d = cfg_.d_model;
    const MatrixView<float> all = first.view();
    return {all.col_range(0, d), all.col_range(d, d), all.col_range(2 * d, d)};
  }
  static std::optional<Proj> input_projection(bool present, ParameterStore& store,
                                              const std::string& name, const char* part,
                                              std::size_t stacked, const Config& cfg) {
    if (!present) return std::nullopt;
    return std::optional<Proj>(
        std::in_place, store, detail::param_name(name, part),
        Proj::make_config(cfg.d_model, stacked * cfg.d_model, false, cfg.init_std));
  }
  const Proj& separate(const std::optional<Proj>& p, const char* part) const {
    require<ValueError>(p.has_value(), "CausalSelfAttention::", part,
                        ": this attention has fused_qkv set; its one projection is "
                        "qkv_projections()[0]");
    return *p;
  }

  static Config checked(Config cfg, const std::string& name) {
    require<ShapeError>(cfg.d_model > 0 && cfg.heads > 0 && cfg.d_model % cfg.heads == 0 &&
                            (cfg.d_model / cfg.heads) % 2 == 0,
                        "CausalSelfAttention: config '", name,
                        "' needs d_model divisible by heads with an even head_dim, got d_model ",
                        cfg.d_model, " and heads ", cfg.heads);
    require<ValueError>(cfg.rope_base > 1 && std::isfinite(cfg.rope_base),
                        "CausalSelfAttention: config '", name, "' needs rope_base > 1, got ",
                        cfg.rope_base);
    return cfg;
  }
  static void add_into(Matrix<float>& acc, const Matrix<float>& part) {
    const std::size_t d = acc.cols();
    detail::for_row_blocks(acc.rows(), [&](std::size_t i0, std::size_t rows) {
      float* a = acc.data() + i0 * d;
      const float* p = part.data() + i0 * d;
      for (std::size_t i = 0; i < rows * d; ++i) a[i] += p[i];
    });
  }

  Config cfg_;
  RMSNorm norm_;
  std::optional<Proj> q_, k_, v_, qkv_;  // q, k and v, or qkv alone (fused_qkv)
  Proj o_;
  SequenceShape shape_;
  RopeTable<float> rope_;
  // x_: copy of a non-lent input. qkv_out_ holds Q (Q | K | V when fused), dqkv_ its gradient;
  // q_view_, k_view_, v_view_ are the forward's Q, K, V for the backward.
  Matrix<float> x_, a_, qkv_out_, k_out_, v_out_, att_;
  Matrix<float> datt_, dqkv_, dk_, dv_, da_, da_part_;
  MatrixView<float> q_view_, k_view_, v_view_;
  mutable std::vector<float> probs_;  // probabilities() only
  typename detail::shared_input_of<Proj>::type shared_;
};

}  // namespace pquant
