// InferenceConfig: the runtime sizes and conventions of a packed (deployable) model.
//
// A packed model is one of the paper's variants (method.md sections 3 and 6):
//   fp         every linear FP32, no activation quantization (LLaMA)
//   bitnet     every attention/FFN linear 1-bit (sign codes, per-tensor lambda), INT8 activations
//   bitnet158  every attention/FFN linear ternary (per-tensor gamma), INT8 activations
//   pquant     1-bit attention; decoupled FFN = alpha * INT8 branch (width r, N experts behind a
//              top-1 router) + beta * 1-bit branch (width d_ff - r)
// Embeddings, the router and the output head stay FP32 in every variant. The config is stored as
// JSON in the model file's __metadata__ ("pquant.config").
#pragma once

#include <cmath>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "pquant/core/error.hpp"

namespace pquant::inference {

enum class Variant { kFp, kBitNet, kBitNet158, kPQuant };

inline std::string_view variant_name(Variant v) {
  switch (v) {
    case Variant::kFp:
      return "fp";
    case Variant::kBitNet:
      return "bitnet";
    case Variant::kBitNet158:
      return "bitnet158";
    case Variant::kPQuant:
      return "pquant";
  }
  return "?";
}

inline Variant parse_variant(std::string_view s) {
  if (s == "fp") return Variant::kFp;
  if (s == "bitnet") return Variant::kBitNet;
  if (s == "bitnet158") return Variant::kBitNet158;
  if (s == "pquant") return Variant::kPQuant;
  throw ValueError("pquant: parse_variant: unknown variant '" + std::string(s) +
                   "', expected fp, bitnet, bitnet158 or pquant");
}

struct InferenceConfig {
  Variant variant = Variant::kPQuant;
  std::size_t vocab = 256;
  std::size_t d_model = 0;
  std::size_t layers = 0;
  std::size_t heads = 0;
  std::size_t d_ff = 0;     // total FFN hidden width (both branches of the decoupled FFN)
  std::size_t r = 0;        // INT8 branch width (pquant only)
  std::size_t experts = 1;  // INT8 experts (pquant only)
  std::size_t context = 0;  // maximum sequence length (KV cache size)
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool swiglu = true;  // false: ReLU^2 (no gate projection)

  std::size_t head_dim() const { return heads == 0 ? 0 : d_model / heads; }
  /// Width of the low-bit (or FP) FFN branch.
  std::size_t lowbit_ff() const { return variant == Variant::kPQuant ? d_ff - r : d_ff; }
  bool quantized() const { return variant != Variant::kFp; }

  /// Throws ValueError naming the first inconsistent field.
  void validate(std::string_view fn = "InferenceConfig::validate") const {
    auto need = [&](bool ok, const char* what) {
      require<ValueError>(ok, fn, ": config must have ", what);
    };
    need(vocab > 0 && d_model > 0 && layers > 0 && heads > 0 && d_ff > 0 && context > 0,
         "vocab, d_model, layers, heads, d_ff and context > 0");
    need(d_model % heads == 0 && head_dim() % 2 == 0,
         "d_model divisible by heads and an even head_dim");
    need(std::isfinite(rope_theta) && rope_theta > 1.0f, "rope_theta > 1");
    need(std::isfinite(norm_eps) && norm_eps > 0.0f, "norm_eps > 0");
    need(d_model <= (1u << 20) && d_ff <= (1u << 20) && vocab <= (1u << 24) && layers <= 4096 &&
             context <= (1u << 24),
         "sizes within d_model, d_ff <= 2^20, vocab <= 2^24, layers <= 4096, context <= 2^24");
    if (variant == Variant::kPQuant) {
      need(r > 0 && r < d_ff, "0 < r < d_ff for pquant");
      need(experts >= 1 && experts <= 64, "1 <= experts <= 64 for pquant");
    } else {
      need(r == 0 && experts == 1, "r == 0 and experts == 1 outside pquant");
    }
  }

  nlohmann::json to_json() const {
    return {{"variant", variant_name(variant)},
            {"vocab", vocab},
            {"d_model", d_model},
            {"layers", layers},
            {"heads", heads},
            {"d_ff", d_ff},
            {"r", r},
            {"experts", experts},
            {"context", context},
            {"rope_theta", rope_theta},
            {"norm_eps", norm_eps},
            {"activation", swiglu ? "swiglu" : "relu2"}};
  }

  /// Parses and validates; any missing/mistyped field is a FormatError.
  static InferenceConfig from_json(const nlohmann::json& j) {
    InferenceConfig c;
    try {
      c.variant = parse_variant(j.at("variant").get<std::string>());
      c.vocab = j.at("vocab").get<std::size_t>();
      c.d_model = j.at("d_model").get<std::size_t>();
      c.layers = j.at("layers").get<std::size_t>();
      c.heads = j.at("heads").get<std::size_t>();
      c.d_ff = j.at("d_ff").get<std::size_t>();
      c.r = j.at("r").get<std::size_t>();
      c.experts = j.at("experts").get<std::size_t>();
      c.context = j.at("context").get<std::size_t>();
      c.rope_theta = j.at("rope_theta").get<float>();
      c.norm_eps = j.at("norm_eps").get<float>();
      const std::string act = j.at("activation").get<std::string>();
      require<ValueError>(act == "swiglu" || act == "relu2", "activation must be swiglu or relu2");
      c.swiglu = act == "swiglu";
      for (const char* k :
           {"vocab", "d_model", "layers", "heads", "d_ff", "r", "experts", "context"})
        require<ValueError>(j.at(k).is_number_unsigned(), "'", k,
                            "' must be a non-negative integer");
      c.validate("InferenceConfig::from_json");
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(std::string("pquant: InferenceConfig::from_json: bad model config: ") +
                        e.what());
    } catch (const ValueError& e) {
      throw FormatError(std::string("pquant: InferenceConfig::from_json: bad model config: ") +
                        e.what());
    }
    return c;
  }
};

}  // namespace pquant::inference
