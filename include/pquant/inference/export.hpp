// export_model: a trained DecoderModel<V> of any exportable variant -> PackedModel, latent weights
// dropped. Every projection is packed by its quantizer's packed form (quantizers/packed_form.hpp):
// the same codes and parameters the training forward's fake_quantize / integer path uses; FP
// projections are copied as FP32; norm gains, alpha, beta, router, embedding and head as FP32.
// The structure (sizes, per-block forms, FFN kind) is read off the variant's layer types; the
// variant's name becomes the model's label.
//
// exportable<V> says at compile time whether every projection of V has a packed form;
// export_model<V> (and static_assert(exportable<V>) in user code, before training) reports the
// first projection that has none with its quantizer type in the diagnostic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/inference/model_structure.hpp"
#include "pquant/inference/packed_linear.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/model/decoder_model.hpp"
#include "pquant/model/transformer_block.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/quantizers/packed_form.hpp"

namespace pquant::inference {

namespace detail {

// Tags naming a projection in the diagnostic of an unservable variant.
struct attention_projection {};
struct ffn_projection {};
struct decoupled_ffn_expert_projection {};
struct decoupled_ffn_low_bit_projection {};

template <class Proj>
struct quantizer_of {
  using type = void;  // full precision
};
template <class Proj>
  requires(Proj::kQuantized)
struct quantizer_of<Proj> {
  using type = typename Proj::weight_quantizer;
};

/// A projection the engine can serve: full precision, or INT8 per-token activations with a weight
/// quantizer that has a packed form.
template <class Proj>
constexpr bool servable_projection() {
  if constexpr (!Proj::kQuantized) {
    return true;
  } else {
    return ServableQuantizer<typename Proj::weight_quantizer> &&
           std::is_same_v<typename Proj::activation_quantizer, Int8AbsMaxPerToken>;
  }
}

template <class Where, class Quantizer>
constexpr bool dependent_false = false;

/// Instantiated only for an unservable projection: the compiler names Where and Quantizer.
template <class Where, class Quantizer>
struct no_packed_form_for {
  static_assert(dependent_false<Where, Quantizer>,
                "export_model: this projection (first template argument) has no packed form for "
                "its weight quantizer (second): give the quantizer `using packed_form = P;` with P "
                "a PackedForm (docs/inference.md), or use INT8 per-token activations");
  static constexpr bool value = false;
};

template <class Where, class Proj>
constexpr bool diagnose() {
  if constexpr (servable_projection<Proj>())
    return true;
  else
    return no_packed_form_for<Where, typename quantizer_of<Proj>::type>::value;
}

template <class Ffn>
concept DecoupledFfnLayer = requires(const Ffn& f) {
  f.int1_branch();
  f.expert(std::size_t{0});
  f.router();
  f.alpha_value();
};
template <class Ffn>
concept DenseFfnLayer = requires(const Ffn& f) { f.branch().up(); };

template <class Branch>
using branch_projection = std::remove_cvref_t<decltype(std::declval<const Branch&>().up())>;

template <class Where, class Proj, bool Report>
constexpr bool check_projection() {
  if constexpr (Report)
    return diagnose<Where, Proj>();
  else
    return servable_projection<Proj>();
}

/// Every projection of V servable; with Report, the first one that is not is a static_assert
/// naming it and its quantizer.
template <class V, bool Report>
constexpr bool variant_servable() {
  using AttnProj = typename V::Attention::projection_type;
  using Ffn = typename V::Ffn;
  bool ok = check_projection<attention_projection, AttnProj, Report>();
  if constexpr (DecoupledFfnLayer<Ffn>) {
    using P1 = branch_projection<decltype(std::declval<const Ffn&>().int1_branch())>;
    using P8 = branch_projection<decltype(std::declval<const Ffn&>().expert(0))>;
    ok = check_projection<decoupled_ffn_expert_projection, P8, Report>() && ok;
    ok = check_projection<decoupled_ffn_low_bit_projection, P1, Report>() && ok;
  } else if constexpr (DenseFfnLayer<Ffn>) {
    using P = branch_projection<decltype(std::declval<const Ffn&>().branch())>;
    ok = check_projection<ffn_projection, P, Report>() && ok;
  } else {
    ok = false;
  }
  return ok;
}

template <class V>
concept KnownLayers = requires { typename V::Attention::projection_type; } &&
    (DecoupledFfnLayer<typename V::Ffn> || DenseFfnLayer<typename V::Ffn>);

}  // namespace detail

/// Every projection of V has a packed form (and the FFN is dense or decoupled).
template <class V>
concept exportable = ModelVariant<V> && detail::KnownLayers<V> && detail::variant_servable<V, false>();

namespace detail {

/// Packs projections that read one input, stacked row-wise ([Q; K; V], [gate; up]).
template <class Proj>
PackedLinear pack_projections(const ParameterStore& s, std::vector<const Proj*> ps,
                              const char* what) {
  std::vector<MatrixView<const float>> parts;
  for (const Proj* p : ps) {
    if constexpr (requires { p->bias_id(); })
      require<ValueError>(!p->bias_id().valid(), "export_model: ", what,
                          " has a bias; packed models have none");
    parts.push_back(s.value(p->weight_id()));
  }
  if constexpr (!Proj::kQuantized) {
    register_form<Fp32Weights>();
    return PackedLinear::of(Fp32Weights::pack(parts));
  } else {
    using Q = typename Proj::weight_quantizer;
    using P = packed_form_t<Q>;
    register_form<P>();
    return PackedLinear::of(P::template pack<Q>(parts));
  }
}

inline std::vector<float> gain_of(const ParameterStore& s, ParamId id) {
  if (!id.valid()) return {};
  const MatrixView<const float> g = s.value(id);
  return std::vector<float>(g.data, g.data + g.cols * g.rows);
}

inline Matrix<float> copy_of(MatrixView<const float> v) {
  Matrix<float> out(v.rows, v.cols);
  for (std::size_t r = 0; r < v.rows; ++r)
    for (std::size_t c = 0; c < v.cols; ++c) out(r, c) = v(r, c);
  return out;
}

template <class Proj>
std::vector<float> own_norm(const ParameterStore& s, const Proj& p) {
  if constexpr (requires { p.norm_gain_id(); })
    return gain_of(s, p.norm_gain_id());
  else
    return {};
}

/// An FfnBranch: [gate; up] (SwiGLU) or [up] (ReLU^2), down and down's own norm.
template <class Branch>
PackedBranch export_branch(const ParameterStore& s, const Branch& b, BranchSpec& spec,
                           const char* what) {
  PackedBranch out;
  using Proj = branch_projection<Branch>;
  std::vector<const Proj*> up;
  if (b.gate()) up.push_back(&*b.gate());
  up.push_back(&b.up());
  out.up = pack_projections<Proj>(s, up, what);
  out.down = pack_projections<Proj>(s, {&b.down()}, what);
  out.down_norm = own_norm(s, b.down());
  spec.width = b.config().hidden;
  spec.up_form = std::string(out.up.id());
  spec.down_form = std::string(out.down.id());
  spec.down_norm = !out.down_norm.empty();
  return out;
}

/// One block of any exportable variant, packed, and its structure entry.
template <ModelVariant V>
std::pair<PackedBlock, BlockSpec> export_block(const ParameterStore& s,
                                               const TransformerBlock<V>& blk, float rope_theta) {
  PackedBlock b;
  BlockSpec spec;
  const auto& att = blk.attention();
  require<ValueError>(static_cast<float>(att.config().rope_base) == rope_theta,
                      "export_model: every block must use the RoPE base ", rope_theta, ", got ",
                      att.config().rope_base);
  require<ValueError>(!blk.has_block_norm(),
                      "export_model: blocks with block_norm (a second pre-norm before each "
                      "sublayer) have no packed form; train without it to serve the model");
  using AttnProj = typename V::Attention::projection_type;
  b.attn_norm = gain_of(s, att.norm().gain_id());
  b.qkv = pack_projections<AttnProj>(s, att.qkv_projections(), "attention q/k/v");
  b.o = pack_projections<AttnProj>(s, {&att.o()}, "attention o");
  b.o_norm = own_norm(s, att.o());
  spec.qkv_form = std::string(b.qkv.id());
  spec.o_form = std::string(b.o.id());
  spec.o_norm = !b.o_norm.empty();
  const auto& f = blk.ffn();
  b.ffn_norm = gain_of(s, f.norm().gain_id());
  if constexpr (DecoupledFfnLayer<typename V::Ffn>) {
    spec.ffn = FfnKind::kDecoupled;
    b.branch = export_branch(s, f.int1_branch(), spec.branch, "decoupled FFN low-bit branch");
    if (f.router()) b.router = copy_of(s.value(f.router()->weight_id()));
    spec.experts = f.config().experts;
    for (std::size_t e = 0; e < spec.experts; ++e)
      b.experts.push_back(export_branch(s, f.expert(e), spec.expert, "decoupled FFN expert"));
    b.alpha = f.alpha_value();
    b.beta = f.beta_value();
  } else {
    spec.ffn = FfnKind::kDense;
    b.branch = export_branch(s, f.branch(), spec.branch, "FFN");
  }
  return {std::move(b), std::move(spec)};
}

template <ModelVariant V>
ModelStructure base_structure(const ModelConfig& mc) {
  ModelStructure st;
  st.label = std::string(V::kName);
  st.vocab = mc.vocab;
  st.d_model = mc.d_model;
  st.heads = mc.heads;
  st.context = mc.context;
  st.swiglu = mc.activation == FfnActivation::kSwiGLU;
  st.rope_theta = static_cast<float>(V::attention_config(mc).rope_base);
  return st;
}

template <ModelVariant V>
constexpr void check_exportable() {
  static_assert(detail::KnownLayers<V>,
                "export_model: the variant's attention must be a CausalSelfAttention<Proj> and its "
                "FFN an Ffn<Proj> or a DecoupledFfn<Proj8, Proj1>");
  if constexpr (detail::KnownLayers<V>) static_assert(detail::variant_servable<V, true>());
}

}  // namespace detail

template <ModelVariant V>
PackedModel export_model(const DecoderModel<V>& model) {
  detail::check_exportable<V>();
  const ModelConfig& mc = model.config();
  const ParameterStore& s = model.store();
  auto find = [&](std::string_view name) {
    const auto& infos = s.infos();
    for (std::size_t i = 0; i < infos.size(); ++i)
      if (infos[i].name == name) return ParamId{i};
    throw ValueError("pquant: export_model: the model has no tensor '" + std::string(name) + "'");
  };
  PackedModel m;
  m.structure = detail::base_structure<V>(mc);
  m.embedding = detail::copy_of(s.value(find("embed.table")));
  m.head = detail::copy_of(s.value(find("head.weight")));
  m.final_norm = detail::gain_of(s, find("final_norm.gain"));
  for (std::size_t l = 0; l < mc.layers; ++l) {
    auto [block, spec] = detail::export_block<V>(s, model.block(l), m.structure.rope_theta);
    m.blocks.push_back(std::move(block));
    m.structure.blocks.push_back(std::move(spec));
  }
  m.structure.validate("export_model");
  validate(m, "export_model");
  return m;
}

/// The export report: bytes on disk, bits per weight (linear weights, whole model), active bytes
/// read per token, and what the same model would take in FP32 / FP16.
inline void print_accounting(std::ostream& out, const PackedModel& m, std::uint64_t file_bytes) {
  const ModelAccounting a = m.accounting();
  out << "export: " << m.structure.label << ", " << a.total_params << " parameters ("
      << a.linear_weights << " in linear layers)\n"
      << "  bytes on disk            " << file_bytes << " (FP32 would need " << a.fp32_bytes
      << ", FP16 " << a.fp32_bytes / 2 << ")\n"
      << "  bits/weight, linear      " << a.linear_bits_per_weight() << " (codes + parameters)\n"
      << "  bits/weight, whole model " << a.bits_per_weight()
      << " (FP32 embedding, head, norms included)\n"
      << "  weight bytes per token   " << a.active_bytes_per_token
      << " (one expert, kernel layout)\n";
}

}  // namespace pquant::inference
