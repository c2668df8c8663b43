// Engine: decoding over a PackedModel (packed_model.hpp) with a KV cache.
//
//   Engine e(model);                   // model must outlive e (a temporary does not compile)
//   auto logits = e.prefill(prompt);   // all prompt tokens in one batched pass (GEMMs)
//   logits = e.step(next_token);       // one token (GEMV kernels)
// The forward is the training model's, composed from the same shared pieces: the residual add,
// RMSNorm and INT8 per-token quantization (kernels::rmsnorm_quantize: rmsnorm_forward and
// int8_absmax_quantize fused, as BitLinear::quantize_input), each projection's packed form (the training forward's products),
// RoPE (rope_rotate of layers/rope.hpp), the causal softmax (kernels::causal_softmax), the
// activations (kernels::swiglu_forward, relu2_forward), routing (top1_route), the expert gather,
// scatter and combine of layers/decoupled_ffn.hpp. Attention runs per head on the FP32 GEMM with
// the training code's operands and order (kv_cache.hpp); so with exact integer products the engine
// reproduces DecoderModel::forward bit for bit, in prefill and in decoding, except where the FP32
// GEMV and GEMM sum in different orders (the head and FP32 projections for one token).
//
// Context: at most structure.context positions per sequence (KV cache grows with use up to it).
// A forward that would pass it is a ValueError; reset() starts a new sequence.
// Threads: kernels split rows over oneTBB's current arena; the low-bit branch and the experts of a
// decoupled FFN run concurrently; results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <tbb/parallel_invoke.h>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/inference/kv_cache.hpp"
#include "pquant/inference/packed_linear.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/kernels/gemm.hpp"
#include "pquant/kernels/gemv.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/decoupled_ffn.hpp"
#include "pquant/layers/rope.hpp"
#include "pquant/layers/top1_router.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/quantizers/packed_form.hpp"

namespace pquant::inference {

/// One normalized (and, for INT8 consumers, quantized) input, shared by the projections reading it.
struct ActivationBuffer {
  Matrix<float> a, xq;
  Matrix<std::int8_t> q;
  std::vector<float> gain, inv_gain, inv_rms;
  MatrixView<const float> src;  // a, or the caller's x when there is no norm
  bool quantized = false;

  ActivationRows rows() const {
    if (!quantized) return {src, {}, {}, {}};
    return {src, q.view(), inv_gain, xq.view()};
  }
};

/// x += res (res not empty), then a = RMSNorm(x) * gain (gain empty: a = x, read in place); with
/// `quantize`, q, 1/g and X_q = q / g of Int8AbsMaxPerToken, computed as BitLinear::quantize_input
/// does. One fused kernel (kernels::rmsnorm_quantize) per block of rows.
// x: [n x d]; res: [n x d] or empty; gain: [d] or empty
inline void normalize_quantize(MatrixView<float> x, MatrixView<const float> res,
                               std::span<const float> gain, float eps, bool quantize,
                               ActivationBuffer& out) {
  const std::size_t n = x.rows, d = x.cols;
  if (!gain.empty()) {
    out.a.resize(n, d);
    out.inv_rms.resize(n);
  }
  out.src = gain.empty() ? MatrixView<const float>(x) : out.a.view();
  out.quantized = quantize;
  if (quantize) {
    out.q.resize(n, d);
    out.xq.resize(n, d);
    out.gain.resize(n);
    out.inv_gain.resize(n);
  } else if (gain.empty() && res.rows == 0) {
    return;
  }
  if (!kernels::rmsnorm_quantize(x, res, gain, eps, out.a.view(), out.inv_rms,
                                 quantize ? out.q.view() : MatrixView<std::int8_t>{}, out.gain,
                                 quantize ? out.xq.view() : MatrixView<float>{}))
    Int8AbsMaxPerToken::quantize(out.src, out.q.view(), out.gain);  // names the NaN/Inf
  if (quantize)
    for (std::size_t t = 0; t < n; ++t) out.inv_gain[t] = 1.0f / out.gain[t];
}

class Engine {
 public:
  /// Reads `model` for the engine's lifetime (it must outlive the engine).
  explicit Engine(const PackedModel& model) : m_(&model) { init(); }
  /// Owns the model (shared with other engines).
  explicit Engine(std::shared_ptr<const PackedModel> model)
      : owned_(std::move(model)), m_(owned_.get()) {
    require<ValueError>(m_ != nullptr, "Engine: argument 'model' is null");
    init();
  }
  /// A temporary would be destroyed while the engine reads it: use a named model, or
  /// Engine(std::make_shared<const PackedModel>(load_model(path))).
  Engine(PackedModel&&) = delete;
  Engine(const PackedModel&&) = delete;

  const ModelStructure& structure() const { return m_->structure; }
  const PackedModel& model() const { return *m_; }
  std::size_t context() const { return m_->structure.context; }
  std::size_t position() const { return pos_; }
  void reset() { pos_ = 0; }
  /// Expert chosen per (decoupled layer, token) by the most recent forward.
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
  void init() {
    validate(*m_, "Engine");
    const ModelStructure& s = m_->structure;
    cache_ = KvCache(s.layers(), s.d_model, s.heads, s.context, s.rope_theta);
  }

  static bool int8(const PackedLinear& l) { return l.input() == FormInput::kInt8PerToken; }

  void forward(std::span<const int> tokens, bool all_logits) {
    const ModelStructure& s = m_->structure;
    const std::size_t n = tokens.size(), d = s.d_model;
    require<ShapeError>(n > 0, "Engine::forward: argument 'tokens' must be non-empty");
    require<ValueError>(pos_ + n <= s.context, "Engine::forward: position ", pos_, " + ", n,
                        " tokens exceeds the model's context of ", s.context,
                        " positions (start a new sequence with reset())");
    for (std::size_t t = 0; t < n; ++t)
      require<ValueError>(tokens[t] >= 0 && static_cast<std::size_t>(tokens[t]) < s.vocab,
                          "Engine::forward: token ", tokens[t], " at index ", t,
                          " is outside the vocabulary [0, ", s.vocab, ")");
    x_.resize(n, d);
    for (std::size_t t = 0; t < n; ++t)
      std::copy_n(m_->embedding.row(static_cast<std::size_t>(tokens[t])).data(), d,
                  x_.row(t).data());
    last_experts_.clear();
    cache_.reserve(pos_ + n);
    residual_ = {};
    for (std::size_t l = 0; l < s.layers(); ++l) {
      attention(l, n);
      ffn(l, n);
    }
    pos_ += n;
    // Head: final RMSNorm then the FP32 projection (only the last row unless all are wanted).
    const std::size_t first = all_logits ? 0 : n - 1;
    // The last block's residual is added to the rows the head reads only (x_ is not read again).
    normalize_quantize(x_.view().row_range(first, n - first),
                       residual_.rows != 0 ? residual_.row_range(first, n - first) : residual_,
                       m_->final_norm, s.norm_eps, false, act_);
    logits_.resize(n - first, s.vocab);
    if (n - first == 1)
      kernels::gemv_f32(act_.src.row(0), m_->head.view(), logits_.row(0));
    else
      kernels::gemm_forward(act_.src, m_->head.view(), logits_.view());
  }

  // x += O(attention(RoPE(Q), RoPE(K), V)) with Q, K, V from one normalized input.
  void attention(std::size_t l, std::size_t n) {
    const PackedBlock& b = m_->blocks[l];
    const ModelStructure& s = m_->structure;
    const std::size_t d = s.d_model;
    normalize_quantize(x_.view(), residual_, b.attn_norm, s.norm_eps, int8(b.qkv), act_);
    qkv_.resize(n, 3 * d);
    b.qkv.apply(act_.rows(), qkv_.view());
    attn_.resize(n, d);
    cache_.attend(l, qkv_.view(), pos_, attn_.view());
    normalize_quantize(attn_.view(), {}, b.o_norm, s.norm_eps, int8(b.o), act_o_);
    y_.resize(n, d);
    b.o.apply(act_o_.rows(), y_.view());
    residual_ = y_.view();  // x += y: added by the next normalization (as the training block)
  }

  struct BranchBuffers {
    Matrix<float> up, h, out;
    ActivationBuffer act;
  };

  // out = W_down RMSNorm?(act(W_up x)) (FfnBranch's forward).
  void run_branch(const PackedBranch& br, const ActivationRows& in, BranchBuffers& buf) {
    const ModelStructure& s = m_->structure;
    const std::size_t n = in.rows(), w = br.down.cols();
    buf.up.resize(n, br.up.rows());
    br.up.apply(in, buf.up.view());
    buf.h.resize(n, w);
    const MatrixView<const float> up = buf.up.view();
    if (s.swiglu)
      kernels::swiglu_forward(MatrixView<const float>(up.data, n, w, up.stride),
                              MatrixView<const float>(up.data + w, n, w, up.stride), buf.h.view());
    else
      relu2_forward<float>(up, buf.h.view());
    normalize_quantize(buf.h.view(), {}, br.down_norm, s.norm_eps, int8(br.down), buf.act);
    buf.out.resize(n, s.d_model);
    br.down.apply(buf.act.rows(), buf.out.view());
  }

  void ffn(std::size_t l, std::size_t n) {
    const PackedBlock& b = m_->blocks[l];
    const ModelStructure& s = m_->structure;
    bool quant = int8(b.branch.up);
    for (const PackedBranch& e : b.experts) quant = quant || int8(e.up);
    normalize_quantize(x_.view(), residual_, b.ffn_norm, s.norm_eps, quant, act_);
    if (s.blocks[l].ffn == FfnKind::kDense) {
      run_branch(b.branch, act_.rows(), low_);
      residual_ = low_.out.view();
      return;
    }
    // The low-bit branch and the experts only read act_ and write their own buffers.
    tbb::parallel_invoke([&] { run_branch(b.branch, act_.rows(), low_); },
                         [&] { experts(b, n); });
    y_.resize(n, s.d_model);
    decoupled_combine(b.alpha, y8_.view(), b.beta, low_.out.view(), y_.view(), 0, n);
    residual_ = y_.view();
  }

  // y8_ = p_e * Expert_e(a) with e the router's top-1 expert per token (DecoupledFfn's routing).
  void experts(const PackedBlock& b, std::size_t n) {
    const std::size_t d = m_->structure.d_model, count = b.experts.size();
    choice_.assign(n, 0);
    prob_.assign(n, 1.0f);
    if (count > 1) {
      router_logits_.resize(n, count);  // the training Linear's product (FP32 GEMM)
      kernels::gemm_forward(act_.src, b.router.view(), router_logits_.view());
      for (std::size_t t = 0; t < n; ++t) {
        choice_[t] = top1_route(router_logits_.row(t));
        prob_[t] = router_logits_(t, choice_[t]);
      }
    }
    group_by_expert(choice_, count, rows_);
    for (std::size_t t = 0; t < n; ++t) last_experts_.push_back(choice_[t]);
    y8_.resize(n, d);
    for (std::size_t e = 0; e < count; ++e) {
      const std::vector<std::size_t>& rows = rows_[e];
      if (rows.empty()) continue;
      const std::size_t m = rows.size();
      ActivationRows in = act_.rows();
      if (m != n) {  // gather the expert's tokens (decoding: always all of them, read in place)
        sub_a_.resize(m, d);
        sub_q_.resize(m, d);
        sub_xq_.resize(m, d);
        sub_inv_gain_.resize(m);
        for (std::size_t i = 0; i < m; ++i) {
          std::copy_n(&in.a(rows[i], 0), d, &sub_a_(i, 0));
          if (act_.quantized) {
            std::copy_n(&in.q(rows[i], 0), d, &sub_q_(i, 0));
            std::copy_n(&in.xq(rows[i], 0), d, &sub_xq_(i, 0));
            sub_inv_gain_[i] = in.inv_gain[rows[i]];
          }
        }
        in = act_.quantized ? ActivationRows{sub_a_.view(), sub_q_.view(), sub_inv_gain_,
                                             sub_xq_.view()}
                            : ActivationRows{sub_a_.view(), {}, {}, {}};
      }
      run_branch(b.experts[e], in, expert_);
      scatter_expert_output(rows, prob_, expert_.out.view(), y8_.view());
    }
  }

  std::shared_ptr<const PackedModel> owned_;
  const PackedModel* m_;
  std::size_t pos_ = 0;
  KvCache cache_;
  Matrix<float> x_, y_, qkv_, attn_, y8_, logits_, router_logits_;
  MatrixView<const float> residual_;  // the last block output not yet added into x_
  ActivationBuffer act_, act_o_;
  BranchBuffers low_, expert_;
  Matrix<float> sub_a_, sub_xq_;
  Matrix<std::int8_t> sub_q_;
  std::vector<float> sub_inv_gain_, prob_;
  std::vector<std::uint32_t> choice_;
  std::vector<std::vector<std::size_t>> rows_;
  std::vector<std::size_t> last_experts_;
};

}  // namespace pquant::inference
