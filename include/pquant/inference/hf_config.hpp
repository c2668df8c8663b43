// The Hugging Face LLaMA / BitNet naming of a decoder-only model (docs/model-format.md, "HF
// naming"): config.json <-> ModelConfig and variant, and the tensor name of every parameter of a
// DecoderModel. hf_import.hpp reads a checkpoint in that naming, hf_export.hpp writes one.
//
//   architectures   LlamaForCausalLM -> "llama" (Dense<Linear>: FP, one RMSNorm per sublayer)
//                   BitNetForCausalLM / BitnetForCausalLM -> "bitnet158" (sub-norms before o, down)
//                   PQuantForCausalLM (pquant's extension) -> "pquant"
//   "pquant_variant" (extension) picks any of kHfVariants for the architecture's naming.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/inference/model_structure.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/layers/rope.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/model/variants.hpp"

namespace pquant {

namespace variants {
/// Hugging Face LLaMA: FP projections, one RMSNorm per sublayer (no sub-norms before o, down).
struct Llama : Dense<Linear> {
  static constexpr std::string_view kName = "llama";
};
}  // namespace variants

namespace inference {

/// The variants a checkpoint in the HF naming can hold (config.json "pquant_variant").
using HfVariants = VariantList<variants::Llama, variants::FP, variants::BitNet, variants::BitNet158,
                               variants::PQuant<>>;

/// What config.json says, checked: the model's sizes and which variant's layers hold the weights.
struct HfConfig {
  std::string architecture;  // as written in config.json
  std::string variant;       // a name of HfVariants
  ModelConfig model;
  bool tied_embeddings = false;  // lm_head.weight is model.embed_tokens.weight
  // transformers' offline BitNet quantization: projections stored as U8 ternary codes (four per
  // byte along the output dimension) with a weight_scale each (hf_import.hpp).
  bool packed_ternary = false;
};

namespace detail {

inline constexpr std::string_view kHfArchitectures[][2] = {
    {"LlamaForCausalLM", "llama"},
    {"BitNetForCausalLM", "bitnet158"},
    {"BitnetForCausalLM", "bitnet158"},
    {"PQuantForCausalLM", "pquant"}};

/// The architecture written for a variant on export.
inline std::string_view hf_architecture_of(std::string_view variant) {
  if (variant == "llama") return "LlamaForCausalLM";
  if (variant == "pquant") return "PQuantForCausalLM";
  return "BitNetForCausalLM";
}

template <class... Parts>
[[noreturn]] void hf_error(std::string_view where, const Parts&... parts) {
  throw FormatError(::pquant::detail::concat("pquant: import_hf: ", where, ": ", parts...));
}

class HfJson {
 public:
  HfJson(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}
  bool has(std::string_view key) const { return j_.contains(std::string(key)); }
  std::size_t size(std::string_view key, std::size_t max) const {
    const nlohmann::json& v = at(key);
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 || v.get<std::uint64_t>() > max)
      hf_error(where_, "'", key, "' must be an integer in [1, ", max, "], got ", v.dump());
    return static_cast<std::size_t>(v.get<std::uint64_t>());
  }
  double number(std::string_view key) const {
    const nlohmann::json& v = at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      hf_error(where_, "'", key, "' must be a finite number, got ", v.dump());
    return v.get<double>();
  }
  std::string string(std::string_view key) const {
    const nlohmann::json& v = at(key);
    if (!v.is_string()) hf_error(where_, "'", key, "' must be a string, got ", v.dump());
    return v.get<std::string>();
  }
  bool boolean(std::string_view key, bool fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = at(key);
    if (!v.is_boolean()) hf_error(where_, "'", key, "' must be true or false, got ", v.dump());
    return v.get<bool>();
  }
  const nlohmann::json& at(std::string_view key) const {
    const auto it = j_.find(std::string(key));
    if (it == j_.end()) hf_error(where_, "lacks the field '", key, "'");
    return *it;
  }
  const std::string& where() const { return where_; }

 private:
  const nlohmann::json& j_;
  std::string where_;
};

}  // namespace detail

/// Parses and checks config.json (its text; `where` names it in errors). Every source feature
/// pquant's layers cannot represent is a FormatError naming the field.
inline HfConfig parse_hf_config(const std::string& text, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) detail::hf_error(where, "is not a JSON object");
  const detail::HfJson c(j, where);
  HfConfig out;
  const nlohmann::json& archs = c.at("architectures");
  if (!archs.is_array() || archs.size() != 1 || !archs[0].is_string())
    detail::hf_error(where, "'architectures' must be a list of one string, got ", archs.dump());
  out.architecture = archs[0].get<std::string>();
  for (const auto& a : detail::kHfArchitectures)
    if (a[0] == out.architecture) out.variant = std::string(a[1]);
  if (out.variant.empty())
    detail::hf_error(where, "unsupported architecture '", out.architecture,
                     "' (supported: LlamaForCausalLM, BitNetForCausalLM, BitnetForCausalLM, "
                     "PQuantForCausalLM)");
  if (c.has("pquant_variant")) {
    out.variant = c.string("pquant_variant");
    if (!HfVariants::contains(out.variant))
      detail::hf_error(where, "'pquant_variant' is '", out.variant, "', expected ",
                       HfVariants::names_text());
  }
  ModelConfig& m = out.model;
  m.vocab = c.size("vocab_size", kMaxVocab);
  m.d_model = c.size("hidden_size", kMaxWidth);
  m.layers = c.size("num_hidden_layers", kMaxLayers);
  m.heads = c.size("num_attention_heads", m.d_model);
  m.d_ff = c.size("intermediate_size", kMaxWidth);
  // Positions beyond kMaxContext are not served; RoPE needs no table entry past the context.
  m.context = std::min(c.size("max_position_embeddings", std::size_t{1} << 31), kMaxContext);
  if (m.d_model % m.heads != 0 || (m.d_model / m.heads) % 2 != 0)
    detail::hf_error(where, "'hidden_size' ", m.d_model, " must be a multiple of "
                     "'num_attention_heads' ", m.heads, " with an even head width");
  if (c.has("num_key_value_heads") && c.size("num_key_value_heads", m.heads) != m.heads)
    detail::hf_error(where, "'num_key_value_heads' ", c.at("num_key_value_heads").dump(),
                     " != 'num_attention_heads' ", m.heads,
                     ": grouped-query attention is not supported");
  if (c.has("head_dim") && !c.at("head_dim").is_null() &&
      c.size("head_dim", kMaxWidth) != m.d_model / m.heads)
    detail::hf_error(where, "'head_dim' ", c.at("head_dim").dump(),
                     " != hidden_size / num_attention_heads = ", m.d_model / m.heads);
  for (const char* bias : {"attention_bias", "mlp_bias"})
    if (c.boolean(bias, false))
      detail::hf_error(where, "'", bias, "' is true: projections with biases are not supported");
  if (c.has("rope_scaling") && !c.at("rope_scaling").is_null())
    detail::hf_error(where, "'rope_scaling' is ", c.at("rope_scaling").dump(),
                     ": only plain RoPE (null) is supported");
  m.rope_theta = c.has("rope_theta") ? c.number("rope_theta") : kRopeBase;
  if (!(m.rope_theta > 1) || static_cast<float>(m.rope_theta) != m.rope_theta)
    detail::hf_error(where, "'rope_theta' is ", m.rope_theta,
                     ": it must be > 1 and exact in FP32 (the packed model stores it as FP32)");
  const double eps = c.has("rms_norm_eps") ? c.number("rms_norm_eps") : kRmsNormEps;
  if (std::abs(eps - static_cast<double>(kRmsNormEps)) > 1e-12)
    detail::hf_error(where, "'rms_norm_eps' is ", eps, ": pquant's RMSNorm uses eps ",
                     kRmsNormEps);
  const std::string act = c.has("hidden_act") ? c.string("hidden_act") : "silu";
  const bool gated = c.boolean("pquant_ffn_gated", true);
  if (act == "silu" && gated) {
    m.activation = FfnActivation::kSwiGLU;
  } else if (act == "relu2" && !gated) {
    m.activation = FfnActivation::kReLU2;
  } else if (act == "relu2") {
    detail::hf_error(where, "'hidden_act' is 'relu2' with gate_proj (BitNet b1.58's gated "
                     "relu(gate)^2 * up): pquant's ReLU^2 FFN has no gate; supported: 'silu', or "
                     "'relu2' with \"pquant_ffn_gated\": false");
  } else {
    detail::hf_error(where, "'hidden_act' is '", act, "'", gated ? "" : " with no gate",
                     ": supported are 'silu' (SwiGLU) and 'relu2' with \"pquant_ffn_gated\": "
                     "false");
  }
  out.tied_embeddings = c.boolean("tie_word_embeddings", false);
  if (c.has("quantization_config") && !c.at("quantization_config").is_null()) {
    const detail::HfJson q(c.at("quantization_config"), where + ": quantization_config");
    if (!c.at("quantization_config").is_object() || !q.has("quant_method") ||
        q.string("quant_method") != "bitnet")
      detail::hf_error(where, "'quantization_config' is ", c.at("quantization_config").dump(),
                       ": only transformers' BitNet quantization (quant_method 'bitnet') is read");
    // "online" (AutoBitLinear): latent weights quantized at every forward, like pquant's layers;
    // otherwise ("offline", the default) the projections are stored packed.
    const std::string mode = q.has("quantization_mode") ? q.string("quantization_mode") : "offline";
    if (mode != "online" && mode != "offline")
      detail::hf_error(where, "quantization_config 'quantization_mode' is '", mode,
                       "', expected 'online' or 'offline'");
    out.packed_ternary = mode == "offline";
    if (out.variant != "bitnet158")
      detail::hf_error(where, "quantization_config (BitNet b1.58's ternary weights) needs the "
                       "bitnet158 variant, config.json selects '", out.variant, "'");
  }
  const bool decoupled = out.variant == "pquant";
  if (decoupled) {
    m.experts = c.size("pquant_num_experts", kMaxExperts);
    m.r = c.size("pquant_expert_intermediate_size", kMaxWidth);
    if (m.r >= m.d_ff)
      detail::hf_error(where, "'pquant_expert_intermediate_size' ", m.r,
                       " must be below 'intermediate_size' ", m.d_ff,
                       " (the 1-bit branch has width intermediate_size - expert size)");
  } else {
    for (const char* k : {"pquant_num_experts", "pquant_expert_intermediate_size"})
      if (c.has(k)) detail::hf_error(where, "'", k, "' is only valid for the pquant variant");
  }
  return out;
}

/// config.json for a model of `variant` with config `m` (the inverse of parse_hf_config).
inline nlohmann::json hf_config_json(std::string_view variant, const ModelConfig& m) {
  const std::string_view arch = detail::hf_architecture_of(variant);
  nlohmann::json j = {
      {"architectures", {arch}},
      {"model_type", arch == "LlamaForCausalLM" ? "llama"
                     : arch == "PQuantForCausalLM" ? "pquant"
                                                   : "bitnet"},
      {"vocab_size", m.vocab},
      {"hidden_size", m.d_model},
      {"num_hidden_layers", m.layers},
      {"num_attention_heads", m.heads},
      {"num_key_value_heads", m.heads},
      {"intermediate_size", m.d_ff},
      {"max_position_embeddings", m.context},
      {"hidden_act", m.activation == FfnActivation::kSwiGLU ? "silu" : "relu2"},
      {"rms_norm_eps", kRmsNormEps},
      {"rope_theta", m.rope_theta},
      {"tie_word_embeddings", false},
      {"attention_bias", false},
      {"torch_dtype", "float32"}};
  if (m.activation != FfnActivation::kSwiGLU) j["pquant_ffn_gated"] = false;
  if (variant != "llama" && variant != "bitnet158" && variant != "pquant")
    j["pquant_variant"] = variant;
  if (variant == "pquant") {
    j["pquant_num_experts"] = m.experts;
    j["pquant_expert_intermediate_size"] = m.r;
  }
  return j;
}

/// One parameter's name and shape in the HF naming.
struct HfTensor {
  std::string name;
  std::vector<std::uint64_t> shape;
};

namespace detail {

// A layer part of a block: our suffix -> HF suffix (the branch parts apply under "mlp." and
// "mlp.int8_experts.{e}.").
inline std::optional<std::string> hf_branch_part(std::string_view s) {
  if (s == "gate.weight") return "gate_proj.weight";
  if (s == "up.weight") return "up_proj.weight";
  if (s == "down.weight") return "down_proj.weight";
  if (s == "down.norm.gain") return "ffn_sub_norm.weight";
  return std::nullopt;
}

inline std::optional<std::string> hf_block_part(std::string_view s) {
  if (s == "attn.norm.gain") return "input_layernorm.weight";
  for (const char* p : {"q", "k", "v", "o"})
    if (s == std::string("attn.") + p + ".weight") return std::string("self_attn.") + p + "_proj.weight";
  if (s == "attn.o.norm.gain") return "self_attn.attn_sub_norm.weight";
  if (s == "ffn.norm.gain") return "post_attention_layernorm.weight";
  if (s == "ffn.alpha") return "mlp.alpha";
  if (s == "ffn.beta") return "mlp.beta";
  if (s == "ffn.router.weight") return "mlp.router.weight";
  if (s.starts_with("ffn.int1.")) {
    if (auto b = hf_branch_part(s.substr(9))) return "mlp." + *b;
  } else if (s.starts_with("ffn.experts.")) {
    const std::string_view rest = s.substr(12);
    const std::size_t dot = rest.find('.');
    if (dot != std::string_view::npos && dot > 0)
      if (auto b = hf_branch_part(rest.substr(dot + 1)))
        return "mlp.int8_experts." + std::string(rest.substr(0, dot)) + "." + *b;
  } else if (s.starts_with("ffn.")) {
    if (auto b = hf_branch_part(s.substr(4))) return "mlp." + *b;
  }
  return std::nullopt;
}

}  // namespace detail

/// The HF name and shape of parameter `p` of a DecoderModel (ValueError for a parameter the naming
/// has no place for: a variant with other layers).
inline HfTensor hf_tensor(const ParamInfo& p) {
  std::vector<std::uint64_t> shape;
  if (p.role == ParamRole::kNormGain)
    shape = {p.cols};
  else if (p.role == ParamRole::kScalar)
    shape = {};
  else
    shape = {p.rows, p.cols};
  const std::string_view n = p.name;
  if (n == "embed.table") return {"model.embed_tokens.weight", shape};
  if (n == "final_norm.gain") return {"model.norm.weight", shape};
  if (n == "head.weight") return {"lm_head.weight", shape};
  if (n.starts_with("blocks.")) {
    const std::string_view rest = n.substr(7);
    const std::size_t dot = rest.find('.');
    if (dot != std::string_view::npos && dot > 0)
      if (auto part = detail::hf_block_part(rest.substr(dot + 1)))
        return {"model.layers." + std::string(rest.substr(0, dot)) + "." + *part, shape};
  }
  throw ValueError("pquant: hf_tensor: parameter '" + p.name +
                   "' has no name in the Hugging Face naming (docs/model-format.md)");
}

}  // namespace inference
}  // namespace pquant
