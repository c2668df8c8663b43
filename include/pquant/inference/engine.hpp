// Engine: decoding over a PackedModel with a KV cache (structure in packed_model.hpp).
//
//   Engine e(model);
//   auto logits = e.prefill(prompt);   // all prompt tokens in one batched pass (integer GEMMs)
//   logits = e.step(next_token);       // one token (GEMV kernels: W1A8 LUT, W2A8, W8A8, FP32)
// Both paths produce the same exact integer accumulators and the same FP epilogue.
//
// Numerics: RMSNorm as layers/rms_norm.hpp (FP32, eps from the config); INT8 absmax per token
// fused after it; RoPE rotates the pairs (i, i + head_dim/2) of each head by pos * theta^(-2i/hd)
// (LLaMA "rotate half"); attention S = Q K^T and O = P V on the FP32 GEMM per head with the
// training code's operands and summation order (also for one token: see decode_attention), scores
// scaled by 1/sqrt(head_dim), softmax in FP32 with the max subtracted; the router (FP32 GEMM)
// picks the lowest expert index among equal probabilities. Every FP step (norms, RoPE, attention,
// softmax, SwiGLU, residual adds, alpha/beta) follows the training code's operation order, so with
// the exact integer products the engine reproduces the training forward bit for bit, in prefill
// and in decoding, except where FP32 GEMV and GEMM sum in different orders (the head and the FP
// variant's linears for one token; nothing re-quantizes their outputs). Threads: the kernels
// split rows over oneTBB's current arena (set with tbb::global_control); the attention heads and
// the two FFN branches of pquant run concurrently; results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/inference/packed_linear.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/gemv.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/attention.hpp"

namespace pquant::inference {

/// cos/sin of pos * theta^(-2i/hd) for every position and pair, angles in double, rounded to float
/// (the training code's RopeTable values). [context x head_dim/2] each.
struct RopeCache {
  std::size_t half = 0;
  std::vector<float> cos, sin;
  RopeCache() = default;
  RopeCache(std::size_t context, std::size_t head_dim, float theta)
      : half(head_dim / 2), cos(context * half), sin(context * half) {
    for (std::size_t i = 0; i < half; ++i) {
      const double freq = std::pow(static_cast<double>(theta),
                                   -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      for (std::size_t p = 0; p < context; ++p) {
        const double angle = static_cast<double>(p) * freq;
        cos[p * half + i] = static_cast<float>(std::cos(angle));
        sin[p * half + i] = static_cast<float>(std::sin(angle));
      }
    }
  }
  /// Rotates the pairs (i, i + hd/2) of one head vector in place at position `pos`.
  // x: [head_dim]
  void rotate(float* x, std::size_t pos) const {
    const float* c = cos.data() + pos * half;
    const float* s = sin.data() + pos * half;
    for (std::size_t i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * c[i] - b * s[i];
      x[i + half] = a * s[i] + b * c[i];
    }
  }
};

/// Holds a pointer to `model`, which must outlive the engine; one engine per sequence (KV cache).
class Engine {
 public:
  explicit Engine(const PackedModel& model) : m_(&model), cfg_(model.config) {
    validate(model, "Engine");
    const std::size_t d = cfg_.d_model;
    rope_ = RopeCache(cfg_.context, cfg_.head_dim(), cfg_.rope_theta);
    kt_cache_.resize(cfg_.layers);
    v_cache_.resize(cfg_.layers);
    const std::size_t wide = (cfg_.context + kKeyPad - 1) / kKeyPad * kKeyPad;
    for (std::size_t l = 0; l < cfg_.layers; ++l) {
      kt_cache_[l] = Matrix<float>(d, wide);
      v_cache_[l] = Matrix<float>(cfg_.context, d);
    }
  }

  const InferenceConfig& config() const { return cfg_; }
  std::size_t position() const { return pos_; }
  void reset() { pos_ = 0; }
  /// Expert chosen per (layer, token) by the most recent forward (pquant, router diagnostics).
  const std::vector<std::size_t>& last_experts() const { return last_experts_; }

  /// Runs `tokens` at positions position()..; returns the last token's logits [vocab].
  std::span<const float> prefill(std::span<const int> tokens) {
    forward(tokens, /*all_logits=*/false);
    return logits_.row(logits_.rows() - 1);
  }
  std::span<const float> step(int token) { return prefill(std::span<const int>(&token, 1)); }

  /// Logits of every position of `tokens` [n x vocab] (parity tests, perplexity), batched.
  const Matrix<float>& forward_all(std::span<const int> tokens) {
    forward(tokens, /*all_logits=*/true);
    return logits_;
  }

 private:
  void forward(std::span<const int> tokens, bool all_logits) {
    const std::size_t n = tokens.size(), d = cfg_.d_model;
    require<ShapeError>(n > 0, "Engine::forward: argument 'tokens' must be non-empty");
    require<ValueError>(pos_ + n <= cfg_.context, "Engine::forward: position ", pos_, " + ", n,
                        " tokens exceeds the context of ", cfg_.context);
    for (std::size_t t = 0; t < n; ++t)
      require<ValueError>(tokens[t] >= 0 && static_cast<std::size_t>(tokens[t]) < cfg_.vocab,
                          "Engine::forward: token ", tokens[t], " at index ", t,
                          " is outside the vocabulary [0, ", cfg_.vocab, ")");
    ensure(x_, n, d);
    for (std::size_t t = 0; t < n; ++t)
      std::copy_n(m_->embedding.row(static_cast<std::size_t>(tokens[t])).data(), d,
                  x_.row(t).data());
    last_experts_.clear();
    for (std::size_t l = 0; l < cfg_.layers; ++l) {
      attention(l, n);
      ffn(l, n);
    }
    pos_ += n;
    // Head: final RMSNorm then FP32 projection (only the last row unless all logits are wanted).
    const std::size_t first = all_logits ? 0 : n - 1;
    const MatrixView<const float> xs = x_.view().row_range(first, n - first);
    normalize_quantize(xs, m_->final_norm, cfg_.norm_eps, false, act_);
    ensure(logits_, n - first, cfg_.vocab);
    if (n - first == 1) {
      kernels::gemv_f32(act_.a.row(0), m_->head.view(), logits_.row(0));
    } else {
      kernels::gemm_forward(act_.a.view(), m_->head.view(), logits_.view());
    }
  }

  void attention(std::size_t l, std::size_t n) {
    const PackedBlock& b = m_->blocks[l];
    const std::size_t d = cfg_.d_model, hd = cfg_.head_dim(), heads = cfg_.heads;
    const bool quant = cfg_.quantized();
    normalize_quantize(x_.view(), b.attn_norm, cfg_.norm_eps, quant, act_);
    // [q; k; v] in one product (one table build, one parallel pass), then RoPE on q and k; K goes
    // to the cache by column (K^T), V by row.
    ensure(qkv_, n, 3 * d);
    apply(b.qkv, act_, qkv_.view());
    Matrix<float>& Kt = kt_cache_[l];
    Matrix<float>& V = v_cache_[l];
    for (std::size_t t = 0; t < n; ++t) {
      const std::size_t pos = pos_ + t;
      float* q = qkv_.row(t).data();
      for (std::size_t h = 0; h < 2 * heads; ++h) rope_.rotate(q + h * hd, pos);  // q and k
      for (std::size_t c = 0; c < d; ++c) Kt(c, pos) = q[d + c];
      std::copy_n(q + 2 * d, d, V.row(pos).data());
    }
    ensure(attn_, n, d);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const std::size_t keys = pos_ + n;
    // Per head, as the training attention: S = Q_h K_h^T, the causal softmax row by row
    // (layers/attention.hpp), O_h = P V_h, over keys 0 .. pos_ + n - 1, on the kernels' FP32 GEMM
    // with the training code's operands, so every score and output has its summation order.
    if (n > 1) {
      ensure(probs_, n, keys);
      for (std::size_t h = 0; h < heads; ++h) {
        const MatrixView<const float> qh(&qkv_(0, h * hd), n, hd, 3 * d);
        const MatrixView<const float> kth(&Kt(h * hd, 0), hd, keys, Kt.cols());
        const MatrixView<const float> vh(&V(0, h * hd), keys, hd, d);
        kernels::gemm_backward_data(qh, kth, probs_.view());  // Q_h (K_h^T) = Q_h K_h^T
        for (std::size_t t = 0; t < n; ++t)
          pquant::detail::causal_softmax_row(&probs_(t, 0), pos_ + t, keys, scale);
        kernels::gemm_backward_data(probs_.view(), vh,
                                    MatrixView<float>(&attn_(0, h * hd), n, hd, d));
      }
    } else {
      decode_attention(Kt, V, hd, keys, scale);
    }
    normalize_quantize(attn_.view(), b.o_norm, cfg_.norm_eps, quant, act_o_);
    ensure(y_, n, d);
    apply(b.o, act_o_, y_.view());
    add_into(x_, y_);  // residual added after the projection, as the training block does
  }

  /// One query (decoding), heads split over threads. The GEMM runs as dW = dY^T X
  /// (gemm_backward_weights), which reads K^T and V in place (no packing) when the query and the
  /// probabilities are given as strided columns; each product is still one FMA chain per output in
  /// the order the training GEMM uses while the reduction fits one K slice of both (<= 128), so
  /// decoding stays bit-identical to the training forward. Longer reductions take the packed
  /// GEMM with the training code's operand order (same result, slower).
  void decode_attention(const Matrix<float>& Kt, const Matrix<float>& V, std::size_t hd,
                        std::size_t keys, float scale) {
    const std::size_t d = cfg_.d_model, heads = cfg_.heads;
    const std::size_t wide = std::min(Kt.cols(), (keys + kKeyPad - 1) / kKeyPad * kKeyPad);
    // Fixed sizes (the context's), so decoding allocates nothing per step.
    ensure(scores_, heads, Kt.cols());
    ensure(columns_, heads, 2 * std::max(hd, cfg_.context));
    tbb::parallel_for(std::size_t{0}, heads, [&](std::size_t h) {
      float* col = columns_.row(h).data();
      float* s = scores_.row(h).data();
      const float* q = &qkv_(0, h * hd);
      const MatrixView<const float> kth(&Kt(h * hd, 0), hd, wide, Kt.cols());
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
      pquant::detail::causal_softmax_row(s, keys - 1, keys, scale);
      const MatrixView<const float> vh(&V(0, h * hd), keys, hd, d);
      const MatrixView<float> oh(&attn_(0, h * hd), 1, hd, d);
      if (keys <= kInPlaceSlice) {
        for (std::size_t j = 0; j < keys; ++j) col[2 * j] = s[j];
        kernels::gemm_backward_weights(MatrixView<const float>(col, keys, 1, 2), vh, oh,
                                       kernels::Accumulate::overwrite);
      } else {
        kernels::gemm_backward_data(MatrixView<const float>(s, 1, keys, keys), vh, oh);
      }
    });
  }

  static void add_into(Matrix<float>& x, const Matrix<float>& y) {
    float* a = x.data();
    const float* b = y.data();
    for (std::size_t i = 0; i < x.size(); ++i) a[i] += b[i];
  }

  /// h = silu(g) * u (or max(u, 0)^2) from the fused up projection's output [g | u] (or [u]): the
  /// training code's swiglu_forward / relu2_forward.
  void activate(const Matrix<float>& up, std::size_t width, Matrix<float>& h) const {
    const std::size_t n = up.rows();
    ensure(h, n, width);
    if (cfg_.swiglu) {
      swiglu_forward<float>(MatrixView<const float>(up.data(), n, width, up.cols()),
                            MatrixView<const float>(up.data() + width, n, width, up.cols()),
                            h.view());
    } else {
      relu2_forward<float>(MatrixView<const float>(up.data(), n, width, up.cols()), h.view());
    }
  }

  void ffn(std::size_t l, std::size_t n) {
    const PackedBlock& b = m_->blocks[l];
    const std::size_t d = cfg_.d_model;
    const bool quant = cfg_.quantized();
    normalize_quantize(x_.view(), b.ffn_norm, cfg_.norm_eps, quant, act_);
    // Low-bit (or FP) branch: y_ = W_down RMSNorm?(act(W_up a)).
    auto lowbit = [&] {
      ensure(up_, n, b.up.rows);
      apply(b.up, act_, up_.view());
      activate(up_, cfg_.lowbit_ff(), h_);
      normalize_quantize(h_.view(), b.down_norm, cfg_.norm_eps, quant, act2_);
      ensure(y_, n, d);
      apply(b.down, act2_, y_.view());
    };
    if (cfg_.variant != Variant::kPQuant) {
      lowbit();
      add_into(x_, y_);
      return;
    }
    // pquant: the INT8 branch runs concurrently with the 1-bit one (both only read the shared
    // quantized input act_ and write their own buffers), so neither waits for the other's serial
    // steps; the results do not depend on the thread count.
    tbb::parallel_invoke(lowbit, [&] { int8_branch(b, n); });
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < d; ++c) x_(t, c) += b.alpha * y8_(t, c) + b.beta * y_(t, c);
  }

  /// y8_ = p_e * W_down,e RMSNorm?(act(W_up,e a)) with e the router's top-1 expert per token.
  void int8_branch(const PackedBlock& b, std::size_t n) {
    const std::size_t d = cfg_.d_model;
    // INT8 branch: router first, then only the chosen expert's weights are read.
    const std::size_t experts = cfg_.experts;
    chosen_.assign(n, 0);
    prob_.assign(n, 1.0f);
    if (experts > 1) {
      // Router logits on the FP32 GEMM for any number of tokens (as the training Linear): they
      // scale the expert's output, which the next layer re-quantizes, so decoding keeps the
      // training code's summation order here too ([N x d] is small).
      ensure(router_logits_, n, experts);
      kernels::gemm_forward(act_.a.view(), b.router.view(), router_logits_.view());
      for (std::size_t t = 0; t < n; ++t) {
        float* p = router_logits_.row(t).data();
        float mx = p[0];
        for (std::size_t e = 1; e < experts; ++e) mx = std::max(mx, p[e]);
        float z = 0.0f;
        for (std::size_t e = 0; e < experts; ++e) z += (p[e] = std::exp(p[e] - mx));
        std::size_t best = 0;
        for (std::size_t e = 0; e < experts; ++e) {
          p[e] /= z;
          if (p[e] > p[best]) best = e;  // strict: the lowest index wins ties
        }
        chosen_[t] = best;
        prob_[t] = p[best];
      }
    }
    for (std::size_t t = 0; t < n; ++t) last_experts_.push_back(chosen_[t]);
    ensure(y8_, n, d);
    for (std::size_t e = 0; e < experts; ++e) {
      // Gather the tokens routed to expert e (decode: one token, one expert).
      rows_.clear();
      for (std::size_t t = 0; t < n; ++t)
        if (chosen_[t] == e) rows_.push_back(t);
      if (rows_.empty()) continue;
      const std::size_t m = rows_.size();
      // Every token to this expert (always so in decoding): read the shared activations in place.
      const bool all = m == n;
      if (!all) {
        ensure(sub_.a, m, d);
        ensure(sub_.q, m, d);
        sub_.inv_gain.resize(m);
        for (std::size_t i = 0; i < m; ++i) {
          std::copy_n(act_.a.row(rows_[i]).data(), d, sub_.a.row(i).data());
          std::copy_n(act_.q.row(rows_[i]).data(), d, sub_.q.row(i).data());
          sub_.inv_gain[i] = act_.inv_gain[rows_[i]];
        }
      }
      const QuantizedTokens& in = all ? act_ : sub_;
      ensure(eup_, m, b.expert_up[e].rows);
      apply(b.expert_up[e], in, eup_.view());
      activate(eup_, cfg_.r, eh_);
      normalize_quantize(eh_.view(), b.expert_down_norm[e], cfg_.norm_eps, true, act3_);
      ensure(ey_, m, d);
      apply(b.expert_down[e], act3_, ey_.view());
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t c = 0; c < d; ++c) y8_(rows_[i], c) = prob_[rows_[i]] * ey_(i, c);
    }
  }

  template <class T>
  static void ensure(Matrix<T>& m, std::size_t rows, std::size_t cols) {
    if (m.rows() != rows || m.cols() != cols) m = Matrix<T>(rows, cols);
  }

  const PackedModel* m_;
  InferenceConfig cfg_;
  std::size_t pos_ = 0;
  RopeCache rope_;
  // Reductions up to this length are one K slice of every FP32 GEMM path (see decode_attention).
  static constexpr std::size_t kInPlaceSlice = 128;
  static constexpr std::size_t kKeyPad =
      32;                                // K^T columns: whole GEMM column panels (AVX2, AVX-512)
  std::vector<Matrix<float>> kt_cache_;  // [d x context (padded to 32)]: K^T after RoPE
  std::vector<Matrix<float>> v_cache_;   // [context x d] per layer
  Matrix<float> x_, y_, qkv_, attn_, up_, h_, y8_, eup_, eh_, ey_, logits_;
  // One per input shape (d, d, h, r), so decoding reallocates nothing.
  QuantizedTokens act_, act_o_, act2_, act3_, sub_;
  Matrix<float> router_logits_;
  Matrix<float> probs_;    // attention probabilities of several tokens [n x keys], one head
  Matrix<float> scores_;   // one token: [heads x padded context], scores then probabilities
  Matrix<float> columns_;  // one token: per head the query or the probabilities at stride 2
  std::vector<float> prob_;
  std::vector<std::size_t> chosen_, rows_, last_experts_;
};

}  // namespace pquant::inference
