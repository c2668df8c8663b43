// export_model: a trained DecoderModel<V> (pquant/model) -> PackedModel, latent weights dropped.
//
// Every quantized projection is re-quantized with the very quantizer its training forward uses
// (Proj::weight_quantizer::quantize: the same codes and scales fake_quantize produced), packed into
// the kernels' layout; norm gains, alpha, beta, router, embedding and head are copied as FP32.
// Supported: the paper's four variants (kName fp, bitnet, bitnet158, pquant) with per-tensor or
// per-row scales and INT8 absmax activations; anything else is a ValueError naming what differs.
// print_accounting() writes the exact figures issue 5 asks for on export.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/inference/model_config.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/model/decoder_model.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant::inference {

namespace detail {

/// One projection as integer values + one scale per row (or FP32 weights), before fusing.
struct ExportedLinear {
  WeightKind kind = WeightKind::kF32;
  Matrix<std::int8_t> values;  // integer kinds
  std::vector<float> scale;    // integer kinds: one per row
  Matrix<float> f32;           // kF32
  bool per_tensor = false;
  std::size_t rows() const { return kind == WeightKind::kF32 ? f32.rows() : values.rows(); }
};

inline ParamId find_param(const ParameterStore& s, std::string_view name) {
  const auto& infos = s.infos();
  for (std::size_t i = 0; i < infos.size(); ++i)
    if (infos[i].name == name) return ParamId{i};
  throw ValueError("pquant: export_model: the model has no tensor '" + std::string(name) + "'");
}

inline std::vector<float> gain_of(const ParameterStore& s, ParamId id) {
  if (!id.valid()) return {};
  const MatrixView<const float> g = s.value(id);
  return std::vector<float>(g.data, g.data + g.cols * g.rows);
}

template <class Proj>
ExportedLinear export_projection(const ParameterStore& s, const Proj& p, const char* what) {
  ExportedLinear e;
  const MatrixView<const float> w = s.value(p.weight_id());
  if constexpr (!Proj::kQuantized) {
    if constexpr (requires { p.bias_id(); })
      require<ValueError>(!p.bias_id().valid(), "export_model: ", what,
                          " has a bias; packed models have none");
    e.kind = WeightKind::kF32;
    e.f32 = Matrix<float>(w.rows, w.cols);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) e.f32(r, c) = w(r, c);
  } else {
    using WQ = typename Proj::weight_quantizer;
    using AQ = typename Proj::activation_quantizer;
    static_assert(std::is_same_v<AQ, Int8AbsMaxPerToken>,
                  "export_model: quantized projections need INT8 absmax per-token activations");
    const auto packed = WQ::quantize(w);
    using Packed = std::remove_cvref_t<decltype(packed)>;
    using F = typename Packed::format_type;
    using S = typename Packed::scales_type;
    static_assert(std::is_same_v<S, PerTensor> || std::is_same_v<S, PerRow>,
                  "export_model: only per-tensor and per-row weight scales are packed");
    if constexpr (std::is_same_v<F, SignBit>) {
      e.kind = WeightKind::kSign1;
    } else if constexpr (std::is_same_v<F, TernaryCode>) {
      e.kind = WeightKind::kTernary;
    } else if constexpr (std::is_same_v<F, Int8Code>) {
      e.kind = WeightKind::kInt8;
    } else {
      static_assert(sizeof(F) == 0, "export_model: unsupported weight code format");
    }
    const auto v = packed.view();
    e.values = Matrix<std::int8_t>(w.rows, w.cols);
    e.scale.resize(w.rows);
    for (std::size_t r = 0; r < w.rows; ++r) {
      e.scale[r] = v.scale(r, 0);
      for (std::size_t c = 0; c < w.cols; ++c)
        e.values(r, c) = static_cast<std::int8_t>(v.value(r, c));
    }
    e.per_tensor = std::is_same_v<S, PerTensor>;
  }
  return e;
}

/// Stacks parts row-wise ([gate; up]) into one packed linear; each part keeps its own scale.
inline PackedLinear fuse(const std::vector<const ExportedLinear*>& parts) {
  const WeightKind kind = parts[0]->kind;
  std::size_t rows = 0;
  for (const ExportedLinear* p : parts) {
    require<ValueError>(p->kind == kind,
                        "export_model: fused projections must share one weight kind");
    rows += p->rows();
  }
  if (kind == WeightKind::kF32) {
    const std::size_t cols = parts[0]->f32.cols();
    Matrix<float> w(rows, cols);
    std::size_t r0 = 0;
    for (const ExportedLinear* p : parts)
      for (std::size_t r = 0; r < p->f32.rows(); ++r, ++r0)
        for (std::size_t c = 0; c < cols; ++c) w(r0, c) = p->f32(r, c);
    return make_f32_linear(w.view());
  }
  const std::size_t cols = parts[0]->values.cols();
  Matrix<std::int8_t> v(rows, cols);
  std::vector<float> scale;
  std::size_t r0 = 0;
  for (const ExportedLinear* p : parts) {
    for (std::size_t r = 0; r < p->values.rows(); ++r, ++r0)
      for (std::size_t c = 0; c < cols; ++c) v(r0, c) = p->values(r, c);
    scale.insert(scale.end(), p->scale.begin(), p->scale.end());
  }
  // A single per-tensor part keeps one scale (smaller file, same values).
  if (parts.size() == 1 && parts[0]->per_tensor) scale.resize(1);
  switch (kind) {
    case WeightKind::kSign1:
      return make_sign_linear(v.view(), std::move(scale));
    case WeightKind::kTernary:
      return make_ternary_linear(v.view(), std::move(scale));
    default:
      return make_int8_linear(v.view(), std::move(scale));
  }
}

template <class Proj>
PackedLinear export_single(const ParameterStore& s, const Proj& p, const char* what) {
  const ExportedLinear e = export_projection(s, p, what);
  return fuse({&e});
}

/// [gate; up] (SwiGLU) or [up] (ReLU^2), down and down's own norm of an FfnBranch.
template <class Branch>
void export_branch(const ParameterStore& s, const Branch& b, PackedLinear& up, PackedLinear& down,
                   std::vector<float>& down_norm) {
  const ExportedLinear u = export_projection(s, b.up(), "ffn up");
  if (b.gate()) {
    const ExportedLinear g = export_projection(s, *b.gate(), "ffn gate");
    up = fuse({&g, &u});
  } else {
    up = fuse({&u});
  }
  down = export_single(s, b.down(), "ffn down");
  if constexpr (requires { b.down().norm_gain_id(); })
    down_norm = gain_of(s, b.down().norm_gain_id());
}

}  // namespace detail

template <ModelVariant V>
PackedModel export_model(const DecoderModel<V>& model) {
  const ModelConfig& mc = model.config();
  const ParameterStore& s = model.store();
  PackedModel m;
  InferenceConfig& c = m.config;
  c.variant = parse_variant(V::kName);
  c.vocab = mc.vocab;
  c.d_model = mc.d_model;
  c.layers = mc.layers;
  c.heads = mc.heads;
  c.d_ff = mc.d_ff;
  c.r = c.variant == Variant::kPQuant ? mc.r : 0;
  c.experts = c.variant == Variant::kPQuant ? mc.experts : 1;
  c.context = mc.context;
  c.swiglu = mc.activation == FfnActivation::kSwiGLU;
  c.validate("export_model");
  auto copy = [&](std::string_view name) {
    const MatrixView<const float> v = s.value(detail::find_param(s, name));
    Matrix<float> out(v.rows, v.cols);
    for (std::size_t r = 0; r < v.rows; ++r)
      for (std::size_t k = 0; k < v.cols; ++k) out(r, k) = v(r, k);
    return out;
  };
  m.embedding = copy("embed.table");
  m.head = copy("head.weight");
  m.final_norm = detail::gain_of(s, detail::find_param(s, "final_norm.gain"));
  m.blocks.resize(c.layers);
  for (std::size_t l = 0; l < c.layers; ++l) {
    const auto& blk = model.block(l);
    PackedBlock& b = m.blocks[l];
    const auto& att = blk.attention();
    require<ValueError>(static_cast<float>(att.config().rope_base) == c.rope_theta,
                        "export_model: RoPE base ", att.config().rope_base, " is not ",
                        c.rope_theta);
    b.attn_norm = detail::gain_of(s, att.norm().gain_id());
    {
      const auto q = detail::export_projection(s, att.q(), "attention q");
      const auto k = detail::export_projection(s, att.k(), "attention k");
      const auto v = detail::export_projection(s, att.v(), "attention v");
      b.qkv = detail::fuse({&q, &k, &v});
    }
    b.o = detail::export_single(s, att.o(), "attention o");
    if constexpr (requires { att.o().norm_gain_id(); })
      b.o_norm = detail::gain_of(s, att.o().norm_gain_id());
    const auto& f = blk.ffn();
    b.ffn_norm = detail::gain_of(s, f.norm().gain_id());
    if constexpr (requires { f.int1_branch(); }) {  // DecoupledFfn
      detail::export_branch(s, f.int1_branch(), b.up, b.down, b.down_norm);
      if (f.router()) {
        const MatrixView<const float> rw = s.value(f.router()->weight_id());
        b.router = Matrix<float>(rw.rows, rw.cols);
        for (std::size_t r = 0; r < rw.rows; ++r)
          for (std::size_t k = 0; k < rw.cols; ++k) b.router(r, k) = rw(r, k);
      }
      for (std::size_t e = 0; e < c.experts; ++e) {
        b.expert_up.emplace_back();
        b.expert_down.emplace_back();
        b.expert_down_norm.emplace_back();
        detail::export_branch(s, f.expert(e), b.expert_up.back(), b.expert_down.back(),
                              b.expert_down_norm.back());
      }
      b.alpha = f.alpha_value();
      b.beta = f.beta_value();
    } else {
      detail::export_branch(s, f.branch(), b.up, b.down, b.down_norm);
    }
  }
  try {
    validate(m, "export_model");
  } catch (const ShapeError& e) {
    throw ValueError(std::string(e.what()) +
                     " (the variant's structure is not one the engine runs)");
  }
  return m;
}

/// The export report: bytes on disk, bits per weight (linear weights, whole model), active bytes
/// read per token, and what the same model would take in FP32 / FP16.
inline void print_accounting(std::ostream& out, const PackedModel& m, std::uint64_t file_bytes) {
  const ModelAccounting a = m.accounting();
  out << "export: variant " << variant_name(m.config.variant) << ", " << a.total_params
      << " parameters (" << a.linear_weights << " in linear layers)\n"
      << "  bytes on disk            " << file_bytes << " (FP32 would need " << a.fp32_bytes
      << ", FP16 " << a.fp32_bytes / 2 << ")\n"
      << "  bits/weight, linear      " << a.linear_bits_per_weight() << " (codes + scales)\n"
      << "  bits/weight, whole model " << a.bits_per_weight()
      << " (FP32 embedding, head, norms included)\n"
      << "  weight bytes per token   " << a.active_bytes_per_token
      << " (one INT8 expert, padded kernel layout)\n";
}

}  // namespace pquant::inference
