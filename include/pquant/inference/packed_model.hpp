// PackedModel: a decoder-only transformer in deployable form (no latent weights): its
// ModelStructure, FP32 embedding / head / norms / router / alpha, beta, and every projection as a
// PackedLinear of its own form. Conventions are those of pquant/model (pre-norm residual blocks):
//   x = embedding[token]
//   per block:  x += Attention(x)   (layers/attention.hpp: one RMSNorm feeds Q, K, V; RoPE; causal)
//               x += Ffn(x)         (layers/ffn.hpp or layers/decoupled_ffn.hpp)
//   logits = head . RMSNorm(x; final_norm)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/inference/model_structure.hpp"
#include "pquant/inference/packed_linear.hpp"

namespace pquant::inference {

struct PackedBranch {
  PackedLinear up;               // [g*w x d]: gate rows then up rows (SwiGLU), or up (ReLU^2)
  PackedLinear down;             // [d x w]
  std::vector<float> down_norm;  // [w] or empty
};

struct PackedBlock {
  std::vector<float> attn_norm;  // [d]
  PackedLinear qkv;              // [3d x d]
  PackedLinear o;                // [d x d]
  std::vector<float> o_norm;     // [d] or empty
  std::vector<float> ffn_norm;   // [d]
  PackedBranch branch;           // dense FFN, or the decoupled FFN's low-bit branch
  Matrix<float> router;          // decoupled, N > 1: [N x d]
  std::vector<PackedBranch> experts;  // decoupled: N
  float alpha = 1.0f, beta = 1.0f;    // decoupled
};

/// Exact accounting of a packed model (docs/method.md section 5; printed on export).
struct ModelAccounting {
  std::size_t linear_weights = 0;  // attention + FFN + router weights (all experts)
  std::size_t linear_bits = 0;     // their codes + parameters, exact bits
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
  ModelStructure structure;
  Matrix<float> embedding;  // [vocab x d]
  std::vector<PackedBlock> blocks;
  std::vector<float> final_norm;  // [d]
  Matrix<float> head;             // [vocab x d]

  ModelAccounting accounting() const {
    ModelAccounting a;
    auto linear = [&](const PackedLinear& l, bool active) {
      a.linear_weights += l.rows() * l.cols();
      a.linear_bits += l.payload_bits();
      a.total_params += l.rows() * l.cols();
      a.total_bits += l.payload_bits();
      if (active) a.active_bytes_per_token += l.streamed_bytes();
    };
    auto vec = [&](std::size_t n, bool active) {
      a.total_params += n;
      a.total_bits += 32 * n;
      if (active) a.active_bytes_per_token += 4 * n;
    };
    auto branch = [&](const PackedBranch& b, bool active) {
      linear(b.up, active);
      linear(b.down, active);
      vec(b.down_norm.size(), active);
    };
    vec(embedding.size(), false);
    a.active_bytes_per_token += 4 * structure.d_model;  // one embedding row
    vec(head.size(), true);
    vec(final_norm.size(), true);
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      const PackedBlock& b = blocks[l];
      vec(b.attn_norm.size() + b.o_norm.size() + b.ffn_norm.size(), true);
      linear(b.qkv, true);
      linear(b.o, true);
      branch(b.branch, true);
      if (!b.router.empty()) {
        a.linear_weights += b.router.size();
        a.linear_bits += 32 * b.router.size();
        vec(b.router.size(), true);
      }
      for (std::size_t e = 0; e < b.experts.size(); ++e) branch(b.experts[e], e == 0);
      if (structure.blocks[l].ffn == FfnKind::kDecoupled) vec(2, true);  // alpha, beta
    }
    a.fp32_bytes = 4 * a.total_params;
    return a;
  }
};

/// Checks that `m` agrees with its structure (shapes, forms, optional norms); ShapeError naming
/// the block and tensor otherwise. Every consumer (engine, writer) relies on it.
inline void validate(const PackedModel& m, const char* fn) {
  const ModelStructure& s = m.structure;
  s.validate(fn);
  const std::size_t d = s.d_model, g = s.gate();
  require<ShapeError>(m.embedding.rows() == s.vocab && m.embedding.cols() == d &&
                          m.head.rows() == s.vocab && m.head.cols() == d &&
                          m.final_norm.size() == d && m.blocks.size() == s.layers(),
                      fn, ": embedding, head, final_norm or the block count disagree with the "
                      "structure");
  auto need = [&](bool ok, std::size_t l, const char* what) {
    require<ShapeError>(ok, fn, ": block ", l, ": ", what);
  };
  auto lin = [](const PackedLinear& p, const std::string& form, std::size_t rows,
                std::size_t cols) {
    return !p.empty() && p.id() == form && p.rows() == rows && p.cols() == cols;
  };
  auto branch = [&](const PackedBranch& b, const BranchSpec& spec, std::size_t l) {
    need(lin(b.up, spec.up_form, g * spec.width, d), l, "FFN up must be [g*width x d] of its form");
    need(lin(b.down, spec.down_form, d, spec.width), l, "FFN down must be [d x width] of its form");
    need(b.down_norm.size() == (spec.down_norm ? spec.width : 0), l,
         "FFN down_norm must have the branch width (or be absent)");
  };
  for (std::size_t l = 0; l < m.blocks.size(); ++l) {
    const PackedBlock& b = m.blocks[l];
    const BlockSpec& spec = s.blocks[l];
    need(b.attn_norm.size() == d && b.ffn_norm.size() == d, l, "attn_norm/ffn_norm must be [d]");
    need(lin(b.qkv, spec.qkv_form, 3 * d, d), l, "qkv must be [3d x d] of its form");
    need(lin(b.o, spec.o_form, d, d), l, "o must be [d x d] of its form");
    need(b.o_norm.size() == (spec.o_norm ? d : 0), l, "o_norm must be [d] (or absent)");
    branch(b.branch, spec.branch, l);
    if (spec.ffn == FfnKind::kDecoupled) {
      need(b.experts.size() == spec.experts, l, "one branch per expert");
      for (const PackedBranch& e : b.experts) branch(e, spec.expert, l);
      need(spec.experts == 1 ? b.router.empty()
                             : (b.router.rows() == spec.experts && b.router.cols() == d),
           l, "router must be [experts x d] (none for one expert)");
      need(std::isfinite(b.alpha) && std::isfinite(b.beta), l, "alpha and beta must be finite");
    } else {
      need(b.experts.empty() && b.router.empty(), l, "a dense FFN has no experts or router");
    }
  }
}

}  // namespace pquant::inference
