// ModelStructure: what a packed model is, as data: sizes, and per block the attention
// projections' packed forms and the FFN's kind and forms. A model file stores it as JSON
// (docs/model-format.md); the variant's name is only a label.
//
// Per block:
//   attention  qkv [3d x d] (Q, K, V stacked, each with its own scales), o [d x d], o_norm (O reads
//              its own RMSNorm of the attention output, as a quantized or NormedLinear O does)
//   ffn        kind "dense":      branch  [gate; up] [g*w x d], down [d x w], down_norm
//              kind "decoupled":  branch  as above (pQuant's low-bit branch, width w)
//                                 experts N of width r, each [gate; up] [g*r x d], down [d x r],
//                                 down_norm; a top-1 router [N x d] when N > 1; alpha, beta
//   (g = 2 for SwiGLU, 1 for ReLU^2). Every projection names its packed form ("sign1.row", ...)
//   with its code format, scale granularity and group.
// Limits (kLimits): every size is bounded before anything is allocated; the context, which no
// tensor depends on, is at most kMaxContext positions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"

namespace pquant::inference {

/// Longest context a packed model may declare (the KV cache grows with use up to it).
inline constexpr std::size_t kMaxContext = std::size_t{1} << 16;
inline constexpr std::size_t kMaxWidth = std::size_t{1} << 20;  // d_model, FFN widths
inline constexpr std::size_t kMaxVocab = std::size_t{1} << 24;
inline constexpr std::size_t kMaxLayers = 4096;
inline constexpr std::size_t kMaxExperts = 64;

enum class FfnKind { kDense, kDecoupled };

struct BranchSpec {
  std::size_t width = 0;  // hidden width
  std::string up_form;    // [gate; up] (SwiGLU) or up (ReLU^2)
  std::string down_form;
  bool down_norm = false;  // down projection normalizes its own input
  bool operator==(const BranchSpec&) const = default;
};

struct BlockSpec {
  std::string qkv_form, o_form;
  bool o_norm = false;
  FfnKind ffn = FfnKind::kDense;
  BranchSpec branch;        // dense FFN, or the decoupled FFN's low-bit branch
  std::size_t experts = 0;  // decoupled: N experts (router when N > 1)
  BranchSpec expert;        // decoupled: each expert
  bool operator==(const BlockSpec&) const = default;
};

struct ModelStructure {
  std::string label;  // the variant's name (a label only)
  std::size_t vocab = 0, d_model = 0, heads = 0, context = 0;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool swiglu = true;
  std::vector<BlockSpec> blocks;

  std::size_t layers() const { return blocks.size(); }
  std::size_t head_dim() const { return heads == 0 ? 0 : d_model / heads; }
  std::size_t gate() const { return swiglu ? 2 : 1; }

  /// ValueError naming the first size out of range or inconsistent.
  void validate(std::string_view fn) const {
    auto need = [&](bool ok, auto... what) { require<ValueError>(ok, fn, ": ", what...); };
    need(vocab > 0 && vocab <= kMaxVocab, "vocab must be in [1, ", kMaxVocab, "], got ", vocab);
    need(d_model > 0 && d_model <= kMaxWidth, "d_model must be in [1, ", kMaxWidth, "], got ",
         d_model);
    need(heads > 0 && d_model % heads == 0 && head_dim() % 2 == 0,
         "d_model must be a multiple of heads with an even head_dim, got d_model ", d_model,
         " and heads ", heads);
    need(context > 0 && context <= kMaxContext, "context must be in [1, ", kMaxContext,
         "], got ", context);
    need(!blocks.empty() && blocks.size() <= kMaxLayers, "layers must be in [1, ", kMaxLayers,
         "], got ", blocks.size());
    need(std::isfinite(rope_theta) && rope_theta > 1.0f, "rope_theta must be > 1");
    need(std::isfinite(norm_eps) && norm_eps > 0.0f, "norm_eps must be > 0");
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      const BlockSpec& b = blocks[l];
      need(b.branch.width > 0 && b.branch.width <= kMaxWidth, "block ", l,
           ": FFN width must be in [1, ", kMaxWidth, "], got ", b.branch.width);
      if (b.ffn == FfnKind::kDecoupled) {
        need(b.experts >= 1 && b.experts <= kMaxExperts, "block ", l, ": experts must be in [1, ",
             kMaxExperts, "], got ", b.experts);
        need(b.expert.width > 0 && b.expert.width <= kMaxWidth, "block ", l,
             ": expert width must be in [1, ", kMaxWidth, "], got ", b.expert.width);
      } else {
        need(b.experts == 0, "block ", l, ": a dense FFN has no experts");
      }
    }
  }

  static nlohmann::json branch_json(const BranchSpec& s, const nlohmann::json& up,
                                    const nlohmann::json& down) {
    return {{"width", s.width}, {"up", up}, {"down", down}, {"down_norm", s.down_norm}};
  }
};

namespace detail {

/// Parses `text` as JSON, rejecting duplicate keys in any object (FormatError naming `what`).
inline nlohmann::json parse_strict_json(const std::string& text, std::string_view what) {
  using nlohmann::json;
  std::vector<std::vector<std::string>> open;
  std::string duplicate;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open.empty()) open.pop_back();
    } else if (event == json::parse_event_t::key && !open.empty() && parsed.is_string()) {
      const auto& key = parsed.get_ref<const std::string&>();
      auto& keys = open.back();
      if (std::find(keys.begin(), keys.end(), key) != keys.end() && duplicate.empty())
        duplicate = key;
      keys.push_back(key);
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    throw FormatError(std::string("pquant: load_model: ") + std::string(what) +
                      " is not valid JSON: " + e.what());
  }
  require<FormatError>(duplicate.empty(), "load_model: ", what, " has the duplicate key '",
                       duplicate, "'");
  return j;
}

/// Typed access to a JSON object with exactly the keys `allowed` (FormatError otherwise).
class StrictObject {
 public:
  StrictObject(const nlohmann::json& j, std::string path, std::vector<std::string_view> allowed)
      : j_(j), path_(std::move(path)) {
    require<FormatError>(j.is_object(), "load_model: '", path_, "' must be a JSON object");
    for (auto it = j.begin(); it != j.end(); ++it)
      require<FormatError>(std::find(allowed.begin(), allowed.end(), it.key()) != allowed.end(),
                           "load_model: '", path_, "' has the unknown field '", it.key(), "'");
  }
  const nlohmann::json& at(std::string_view key) const {
    const auto it = j_.find(std::string(key));
    require<FormatError>(it != j_.end(), "load_model: '", path_, "' lacks the field '", key, "'");
    return *it;
  }
  std::size_t size(std::string_view key, std::uint64_t max) const {
    const nlohmann::json& v = at(key);
    require<FormatError>(v.is_number_unsigned(), "load_model: '", path_, ".", key,
                         "' must be a non-negative integer");
    const auto n = v.get<std::uint64_t>();
    require<FormatError>(n <= max, "load_model: '", path_, ".", key, "' = ", n,
                         " exceeds the limit ", max);
    return static_cast<std::size_t>(n);
  }
  float number(std::string_view key) const {
    const nlohmann::json& v = at(key);
    require<FormatError>(v.is_number(), "load_model: '", path_, ".", key, "' must be a number");
    return v.get<float>();
  }
  bool boolean(std::string_view key) const {
    const nlohmann::json& v = at(key);
    require<FormatError>(v.is_boolean(), "load_model: '", path_, ".", key, "' must be a boolean");
    return v.get<bool>();
  }
  std::string string(std::string_view key) const {
    const nlohmann::json& v = at(key);
    require<FormatError>(v.is_string(), "load_model: '", path_, ".", key, "' must be a string");
    return v.get<std::string>();
  }
  const std::string& path() const { return path_; }

 private:
  const nlohmann::json& j_;
  std::string path_;
};

}  // namespace detail

}  // namespace pquant::inference
