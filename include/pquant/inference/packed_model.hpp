// PackedModel: a decoder-only transformer in deployable form (no latent weights), its exact
// accounting, and builders for packed linears.
//
// Structure (pre-norm residual blocks; conventions match pquant/model):
//   x  = embedding[token]
//   per block:  a = RMSNorm(x; attn_norm);  [q; k; v] = W_qkv a;  RoPE(q, k);  causal attention
//               x += W_o RMSNorm?(attn; o_norm)            (o_norm empty: no norm, FP models)
//               a = RMSNorm(x; ffn_norm)
//               low-bit / FP branch:  [g; u] = W_up a,  h = silu(g) * u  (ReLU^2: h = max(u,0)^2)
//                                     y_1 = W_down RMSNorm?(h; down_norm)
//               pquant INT8 branch:   p = softmax(W_router a), e = argmax p (lowest index on ties),
//                                     y_8 = p_e * W_down,e RMSNorm?(h_e; expert_down_norm[e])
//               x += alpha * y_8 + beta * y_1        (non-pquant: x += y_1)
//   logits = W_head RMSNorm(x; final_norm)
// Matrices that read the same input are stored fused, with per-row scales (each original matrix
// keeps its own lambda): Q, K and V as one [3d x d] matrix, gate and up of a branch as one
// [2h x d] matrix; one table build and one parallel pass over the quantized input serve them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/inference/model_config.hpp"
#include "pquant/inference/packed_linear.hpp"
#include "pquant/kernels/kernel_weights.hpp"

namespace pquant::inference {

struct PackedBlock {
  std::vector<float> attn_norm;  // [d]
  PackedLinear qkv;              // [3d x d]: rows 0..d-1 Q, d..2d-1 K, 2d..3d-1 V
  PackedLinear o;                // [d x d]
  std::vector<float> o_norm;     // [d] or empty
  std::vector<float> ffn_norm;   // [d]
  PackedLinear up;               // [2h x d] (SwiGLU: gate rows then up rows) or [h x d] (ReLU^2)
  PackedLinear down;             // [d x h]
  std::vector<float> down_norm;  // [h] or empty
  // pquant INT8 branch
  Matrix<float> router;                              // [N x d], empty when N == 1
  std::vector<PackedLinear> expert_up;               // N x [2r x d]
  std::vector<PackedLinear> expert_down;             // N x [d x r]
  std::vector<std::vector<float>> expert_down_norm;  // N x ([r] or empty)
  float alpha = 1.0f, beta = 1.0f;
};

/// Exact accounting of a packed model (method.md section 5; numbers printed on export).
struct ModelAccounting {
  std::size_t linear_weights = 0;  // attention + FFN + router weights (all experts)
  std::size_t linear_bits = 0;     // their codes + scales, exact bits
  std::size_t total_params = 0;    // everything: embeddings, head, norms, alpha/beta too
  std::size_t total_bits = 0;
  std::size_t active_bytes_per_token = 0;  // weight bytes one decode step reads (one expert)
  std::size_t fp32_bytes = 0;              // the same model in FP32 (4 bytes per parameter)
  double linear_bits_per_weight() const {
    return linear_weights ? static_cast<double>(linear_bits) / static_cast<double>(linear_weights)
                          : 0.0;
  }
  double bits_per_weight() const {
    return total_params ? static_cast<double>(total_bits) / static_cast<double>(total_params) : 0.0;
  }
};

struct PackedModel {
  InferenceConfig config;
  Matrix<float> embedding;  // [vocab x d]
  std::vector<PackedBlock> blocks;
  std::vector<float> final_norm;  // [d]
  Matrix<float> head;             // [vocab x d]

  ModelAccounting accounting() const {
    ModelAccounting a;
    const std::size_t d = config.d_model;
    auto linear = [&](const PackedLinear& l, bool active) {
      a.linear_weights += l.rows * l.cols;
      a.linear_bits += l.payload_bits();
      a.total_params += l.rows * l.cols;
      a.total_bits += l.payload_bits();
      if (active) a.active_bytes_per_token += l.streamed_bytes();
    };
    auto vec = [&](std::size_t n, bool active) {
      a.total_params += n;
      a.total_bits += 32 * n;
      if (active) a.active_bytes_per_token += 4 * n;
    };
    vec(embedding.size(), false);
    a.active_bytes_per_token += 4 * d;  // one embedding row
    vec(head.size(), true);
    vec(final_norm.size(), true);
    for (const PackedBlock& b : blocks) {
      vec(b.attn_norm.size() + b.o_norm.size() + b.ffn_norm.size() + b.down_norm.size(), true);
      for (const PackedLinear* l : {&b.qkv, &b.o, &b.up, &b.down}) linear(*l, true);
      if (!b.router.empty()) {
        a.linear_weights += b.router.size();
        a.linear_bits += 32 * b.router.size();
        vec(b.router.size(), true);
      }
      for (std::size_t e = 0; e < b.expert_up.size(); ++e) {
        linear(b.expert_up[e], e == 0);  // one expert is read per token; all have equal size
        linear(b.expert_down[e], e == 0);
        vec(b.expert_down_norm[e].size(), e == 0);
      }
      if (config.variant == Variant::kPQuant) vec(2, true);  // alpha, beta
    }
    a.fp32_bytes = 4 * a.total_params;
    return a;
  }
};

// ---------------------------------------------------------------------------------------------
// Builders: integer values (as the training code's quantizers produce them) -> packed linears.

/// values [rows x cols] in {-1, +1}; scale: 1 float (per tensor) or `rows` floats.
inline PackedLinear make_sign_linear(MatrixView<const std::int8_t> values,
                                     std::vector<float> scale) {
  PackedLinear l;
  l.kind = WeightKind::kSign1;
  l.rows = values.rows;
  l.cols = values.cols;
  l.sign = kernels::pack_sign(values);
  l.scale = std::move(scale);
  return l;
}

/// values [rows x cols] in {-1, 0, +1}.
inline PackedLinear make_ternary_linear(MatrixView<const std::int8_t> values,
                                        std::vector<float> scale) {
  PackedLinear l;
  l.kind = WeightKind::kTernary;
  l.rows = values.rows;
  l.cols = values.cols;
  l.ternary = kernels::pack_ternary(values);
  l.scale = std::move(scale);
  return l;
}

/// values [rows x cols] INT8 codes, scale per row (value = scale[r] * code).
inline PackedLinear make_int8_linear(MatrixView<const std::int8_t> values,
                                     std::vector<float> scale) {
  PackedLinear l;
  l.kind = WeightKind::kInt8;
  l.rows = values.rows;
  l.cols = values.cols;
  l.int8 = kernels::pack_int8(values);
  l.scale = std::move(scale);
  return l;
}

inline PackedLinear make_f32_linear(MatrixView<const float> w) {
  PackedLinear l;
  l.kind = WeightKind::kF32;
  l.rows = w.rows;
  l.cols = w.cols;
  l.f32 = Matrix<float>(w.rows, w.cols);
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) l.f32(r, c) = w(r, c);
  return l;
}

/// A per-row scale vector for a fused [A; B] matrix whose parts have per-tensor scales.
inline std::vector<float> fused_scales(std::size_t rows_a, float a, std::size_t rows_b, float b) {
  std::vector<float> s(rows_a, a);
  s.insert(s.end(), rows_b, b);
  return s;
}

/// Shape checks every consumer of a PackedModel relies on (engine, file writer).
inline void validate(const PackedModel& m, const char* fn) {
  const InferenceConfig& c = m.config;
  c.validate(fn);
  const std::size_t d = c.d_model, h = c.lowbit_ff(), gate = c.swiglu ? 2 : 1;
  auto need = [&](bool ok, const char* what, std::size_t layer) {
    require<ShapeError>(ok, fn, ": packed model block ", layer, ": ", what);
  };
  require<ShapeError>(
      m.embedding.rows() == c.vocab && m.embedding.cols() == d && m.head.rows() == c.vocab &&
          m.head.cols() == d && m.final_norm.size() == d && m.blocks.size() == c.layers,
      fn, ": packed model embedding/head/final_norm/blocks disagree with the config");
  const WeightKind low = c.variant == Variant::kFp          ? WeightKind::kF32
                         : c.variant == Variant::kBitNet158 ? WeightKind::kTernary
                                                            : WeightKind::kSign1;
  auto lin = [&](const PackedLinear& l, WeightKind kind, std::size_t rows, std::size_t cols) {
    const std::size_t want_scales = kind == WeightKind::kF32    ? 0
                                    : kind == WeightKind::kInt8 ? rows
                                                                : 0;
    return l.kind == kind && l.rows == rows && l.cols == cols &&
           (kind == WeightKind::kF32    ? l.scale.empty()
            : kind == WeightKind::kInt8 ? l.scale.size() == want_scales
                                        : (l.scale.size() == 1 || l.scale.size() == rows));
  };
  for (std::size_t i = 0; i < m.blocks.size(); ++i) {
    const PackedBlock& b = m.blocks[i];
    need(b.attn_norm.size() == d && b.ffn_norm.size() == d, "attn_norm/ffn_norm must have d_model",
         i);
    need(b.o_norm.empty() || b.o_norm.size() == d, "o_norm must be empty or d_model", i);
    need(lin(b.qkv, low, 3 * d, d), "qkv must be [3d x d] of the variant's kind", i);
    need(lin(b.o, low, d, d), "o must be [d x d] of the variant's kind", i);
    need(lin(b.up, low, gate * h, d), "up must be [gate*h x d]", i);
    need(lin(b.down, low, d, h), "down must be [d x h]", i);
    need(b.down_norm.empty() || b.down_norm.size() == h, "down_norm must be empty or h", i);
    if (c.variant == Variant::kPQuant) {
      need(b.expert_up.size() == c.experts && b.expert_down.size() == c.experts &&
               b.expert_down_norm.size() == c.experts,
           "pquant blocks need one up/down/down_norm per expert", i);
      need(c.experts == 1 ? b.router.empty()
                          : (b.router.rows() == c.experts && b.router.cols() == d),
           "router must be [experts x d] (empty for one expert)", i);
      for (std::size_t e = 0; e < c.experts; ++e) {
        need(lin(b.expert_up[e], WeightKind::kInt8, gate * c.r, d),
             "expert up must be INT8 [gate*r x d]", i);
        need(lin(b.expert_down[e], WeightKind::kInt8, d, c.r), "expert down must be INT8 [d x r]",
             i);
        need(b.expert_down_norm[e].empty() || b.expert_down_norm[e].size() == c.r,
             "expert down_norm must be empty or r", i);
      }
      need(std::isfinite(b.alpha) && std::isfinite(b.beta), "alpha and beta must be finite", i);
    } else {
      need(b.expert_up.empty() && b.expert_down.empty() && b.router.empty(),
           "only pquant blocks have experts", i);
    }
  }
}

}  // namespace pquant::inference
