// What train_lm records about a run in its checkpoints (__metadata__ "pquant.meta", JSON), and the
// limits its flags accept. generate --export reads the model part back through model_from_json,
// which checks every field's JSON type and range against the same limits before anything is
// allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "pquant/core/error.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/variant_registry.hpp"

namespace train_lm {

// Largest sizes train_lm accepts (beyond them a run cannot fit in memory anyway, and products of
// sizes stay far from overflowing 64 bits).
inline constexpr std::size_t kMaxExperts = 8;
inline constexpr std::size_t kMaxWidth = 1 << 16;  // d_model, d_ff, r, context, batch
inline constexpr std::size_t kMaxLayers = 4096;
inline constexpr std::size_t kMaxSteps = 1'000'000'000;

/// A lower bound of the parameter count of a train_lm model (attention 4 d^2 and SwiGLU FFN
/// 3 d d_ff per layer, pQuant's experts 3 d r each; the embedding and head V d each; norms and
/// router left out), in double so that no product overflows. Used to refuse, before allocating,
/// sizes that cannot fit in memory or that a checkpoint's tensors do not hold.
inline double min_parameters(std::string_view variant, const pquant::ModelConfig& c) {
  const double d = static_cast<double>(c.d_model), f = static_cast<double>(c.d_ff);
  const double r = static_cast<double>(c.r), experts = static_cast<double>(c.experts);
  const double ffn =
      variant.starts_with("pquant") ? 3 * d * (f - r) + experts * 3 * d * r : 3 * d * f;
  return 2 * static_cast<double>(c.vocab) * d + static_cast<double>(c.layers) * (4 * d * d + ffn);
}

/// The model a checkpoint's meta describes: its variant name and configuration.
struct ModelSpec {
  std::string variant;
  pquant::ModelConfig config;
};

/// Reads the model part of train_lm's meta JSON; FormatError naming `path` and the field unless
/// every field is present, of the right JSON type and within train_lm's limits.
inline ModelSpec model_from_json(const nlohmann::json& j, const std::string& path) {
  using pquant::FormatError;
  pquant::require<FormatError>(j.is_object(), "'", path,
                               "' records no train_lm configuration (its meta is not a JSON "
                               "object)");
  auto size = [&](const char* key, std::size_t lo, std::size_t hi) {
    const auto it = j.find(key);
    // Parsed text gives non-negative integers as unsigned, JSON built in C++ as signed.
    const bool integer = it != j.end() && it->is_number_integer() &&
                         (it->is_number_unsigned() || it->get<std::int64_t>() >= 0);
    pquant::require<FormatError>(integer && it->get<std::uint64_t>() >= lo &&
                                     it->get<std::uint64_t>() <= hi,
                                 "'", path, "': configuration field '", key,
                                 "' must be an integer in [", lo, ", ", hi, "], got ",
                                 it == j.end() ? std::string("nothing") : it->dump());
    return static_cast<std::size_t>(it->get<std::uint64_t>());
  };
  ModelSpec s;
  const auto v = j.find("variant");
  pquant::require<FormatError>(
      v != j.end() && v->is_string() && pquant::PaperVariants::contains(v->get<std::string>()),
      "'", path, "': configuration field 'variant' must be ", pquant::PaperVariants::names_text(),
      ", got ", v == j.end() ? std::string("nothing") : v->dump());
  s.variant = v->get<std::string>();
  pquant::ModelConfig& c = s.config;
  c.d_model = size("d_model", 2, kMaxWidth);
  c.layers = size("layers", 1, kMaxLayers);
  c.heads = size("heads", 1, kMaxWidth / 2);
  c.d_ff = size("d_ff", 1, kMaxWidth);
  c.context = size("context", 1, kMaxWidth);
  c.experts = size("experts", 1, kMaxExperts);
  c.r = size("r", 1, kMaxWidth);
  if (j.contains("vocab")) c.vocab = size("vocab", 2, 65536);  // --tokens runs; bytes: 256
  try {
    c.validate("train_lm configuration");
  } catch (const pquant::ValueError& e) {
    throw FormatError(std::string("pquant: '") + path + "': " + e.what());
  }
  pquant::require<FormatError>(s.variant != "pquant" || c.r < c.d_ff, "'", path,
                               "': configuration field 'r' (", c.r, ") must be below 'd_ff' (",
                               c.d_ff, ")");
  return s;
}

}  // namespace train_lm
