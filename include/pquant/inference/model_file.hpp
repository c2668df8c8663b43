// Model files: a PackedModel as safetensors (docs/model-format.md), saved atomically, loaded with
// every shape and code checked against the config (a hostile file is a FormatError).
//
// __metadata__: "pquant.format" = "pquant-packed", "pquant.format_version" = "2",
//               "pquant.config" = InferenceConfig JSON, "pquant.layout" = packing layout JSON.
// Tensors (F32 unless noted; optional ones may be absent):
//   embedding [vocab, d], head [vocab, d], final_norm [d]
//   blocks.{l}.attn_norm [d], blocks.{l}.ffn_norm [d], blocks.{l}.o_norm [d]?, blocks.{l}.down_norm
//   [h]? <linear>.codes   U8 [tiles, pairs, 32]   sign1 / ternary2 in the kernels' LUT layout
//   <linear>.values  I8 [rows, cols]         int8 (unpadded)
//   <linear>.weight  F32 [rows, cols]        fp
//   <linear>.scale   [1] or [rows]           integer kinds
//   linears: blocks.{l}.{qkv,o,up,down}, blocks.{l}.experts.{e}.{up,down} (pquant)
//   blocks.{l}.experts.{e}.down_norm [r]?, blocks.{l}.router [N, d] (N > 1), blocks.{l}.alpha_beta
//   [2]
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/inference/model_config.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/io/safetensors.hpp"
#include "pquant/kernels/kernel_weights.hpp"

namespace pquant::inference {

inline constexpr const char* kModelFormat = "pquant-packed";
inline constexpr const char* kModelFormatVersion = "2";  // 2: Q, K, V stored fused as qkv

/// The packing layout recorded in every file, so other readers can decode the codes.
inline nlohmann::json packing_layout() {
  return {
      {"sign1",
       {{"layout", "lut_tile32"},
        {"bits", 1},
        {"code", "bit 1 = +1, bit 0 = -1"},
        {"group", 4},
        {"byte",
         "(tile * pairs + pair) * 32 + row % 32; low nibble = group 2*pair, high = 2*pair+1"},
        {"nibble", "weight g*G+i at bit i*bits"},
        {"padding", "rows to 32, columns to 2 groups, zero codes"}}},
      {"ternary2",
       {{"layout", "lut_tile32"}, {"bits", 2}, {"code", "0 = -1, 1 = 0, 2 = +1"}, {"group", 2}}},
      {"int8", {{"layout", "row_major"}, {"value", "scale[row] * code"}}},
      {"scales", "one float per tensor or per row; y = fma(acc, scale / g, residual)"}};
}

namespace detail {

inline void put_vec(io::SafetensorsWriter& w, const std::string& name,
                    const std::vector<float>& v) {
  if (!v.empty()) w.add<float>(name, {v.size()}, std::span<const float>(v));
}

inline void put_matrix(io::SafetensorsWriter& w, const std::string& name, const Matrix<float>& m) {
  w.add<float>(name, {m.rows(), m.cols()}, m.flat());
}

inline void put_linear(io::SafetensorsWriter& w, const std::string& name, const PackedLinear& l) {
  switch (l.kind) {
    case WeightKind::kSign1:
      w.add<std::uint8_t>(name + ".codes", {l.sign.tiles(), l.sign.pairs(), kernels::kLutTile},
                          std::span<const std::uint8_t>(l.sign.data(), l.sign.bytes()));
      break;
    case WeightKind::kTernary:
      w.add<std::uint8_t>(name + ".codes",
                          {l.ternary.tiles(), l.ternary.pairs(), kernels::kLutTile},
                          std::span<const std::uint8_t>(l.ternary.data(), l.ternary.bytes()));
      break;
    case WeightKind::kInt8: {
      std::vector<std::int8_t> v(l.rows * l.cols);
      for (std::size_t r = 0; r < l.rows; ++r)
        for (std::size_t c = 0; c < l.cols; ++c) v[r * l.cols + c] = l.int8.value(r, c);
      w.add<std::int8_t>(name + ".values", {l.rows, l.cols}, std::span<const std::int8_t>(v));
      break;
    }
    case WeightKind::kF32:
      put_matrix(w, name + ".weight", l.f32);
      break;
  }
  put_vec(w, name + ".scale", l.scale);
}

inline std::vector<float> get_vec(const io::SafetensorsView& f, const std::string& name,
                                  std::size_t n, bool optional = false) {
  if (optional && f.find(name) == nullptr) return {};
  std::vector<float> v(n);
  f.read_into<float>(name, std::span<float>(v), std::vector<std::uint64_t>{n});
  return v;
}

inline Matrix<float> get_matrix(const io::SafetensorsView& f, const std::string& name,
                                std::size_t rows, std::size_t cols) {
  Matrix<float> m(rows, cols);
  f.read_into<float>(name, m.flat(), std::vector<std::uint64_t>{rows, cols});
  return m;
}

/// Reads LUT-layout codes straight into the kernel buffer (the file stores the kernel's layout),
/// then checks every byte: padding (rows past `rows`, weights past `cols`) must be zero codes, and
/// ternary codes must not be 3. One pass over the bytes instead of one call per weight.
template <class F>
kernels::LutWeights<F> get_lut(const io::SafetensorsView& f, const std::string& name,
                               std::size_t rows, std::size_t cols) {
  kernels::LutWeights<F> w(rows, cols);
  f.read_into<std::uint8_t>(name, std::span<std::uint8_t>(w.data(), w.bytes()),
                            std::vector<std::uint64_t>{w.tiles(), w.pairs(), kernels::kLutTile});
  constexpr std::size_t G = kernels::LutWeights<F>::kGroup, T = kernels::kLutTile;
  constexpr unsigned bits = F::kBits;
  // Bits of a pair's byte that hold real weights: group 2p in the low nibble, 2p + 1 in the high.
  std::vector<std::uint8_t> valid(w.pairs(), 0);
  for (std::size_t p = 0; p < w.pairs(); ++p)
    for (unsigned half = 0; half < 2; ++half)
      for (std::size_t i = 0; i < G; ++i)
        if ((2 * p + half) * G + i < cols)
          valid[p] |= static_cast<std::uint8_t>(((1u << bits) - 1) << (half * 4 + i * bits));
  const std::uint8_t* bytes = w.data();
  for (std::size_t t = 0; t < w.tiles(); ++t)
    for (std::size_t p = 0; p < w.pairs(); ++p)
      for (std::size_t r = 0; r < T; ++r) {
        const unsigned byte = bytes[(t * w.pairs() + p) * T + r];
        const std::size_t row = t * T + r;
        const unsigned allowed = row < rows ? valid[p] : 0u;
        require<FormatError>((byte & ~allowed) == 0, "load_model: tensor '", name,
                             "' has non-zero padding codes (tile ", t, ", pair ", p, ", row ", row,
                             ")");
        if constexpr (bits == 2) {
          const unsigned three = byte & (byte >> 1) & 0x55u;  // both bits of a 2-bit code set
          if (three != 0) {
            const auto k = static_cast<std::size_t>(std::countr_zero(three));
            const std::size_t col = (2 * p + k / 4) * G + (k % 4) / bits;
            throw FormatError("pquant: load_model: tensor '" + name +
                              "' holds the invalid ternary code 3 at (" + std::to_string(row) +
                              ", " + std::to_string(col) + ")");
          }
        }
      }
  return w;
}

inline PackedLinear get_linear(const io::SafetensorsView& f, const std::string& name,
                               WeightKind kind, std::size_t rows, std::size_t cols) {
  PackedLinear l;
  l.kind = kind;
  l.rows = rows;
  l.cols = cols;
  switch (kind) {
    case WeightKind::kSign1:
      l.sign = get_lut<SignBit>(f, name + ".codes", rows, cols);
      break;
    case WeightKind::kTernary:
      l.ternary = get_lut<TernaryCode>(f, name + ".codes", rows, cols);
      break;
    case WeightKind::kInt8: {
      Matrix<std::int8_t> v(rows, cols);
      f.read_into<std::int8_t>(name + ".values", v.flat(), std::vector<std::uint64_t>{rows, cols});
      l.int8 = kernels::pack_int8(v.view());
      break;
    }
    case WeightKind::kF32:
      l.f32 = get_matrix(f, name + ".weight", rows, cols);
      break;
  }
  if (kind != WeightKind::kF32) {
    const io::TensorInfo& s = f.at(name + ".scale");
    const std::size_t n = kind == WeightKind::kInt8                     ? rows
                          : (s.shape.size() == 1 && s.shape[0] == rows) ? rows
                                                                        : 1;
    l.scale = get_vec(f, name + ".scale", n);
    for (float v : l.scale)
      require<FormatError>(std::isfinite(v), "load_model: tensor '", name, ".scale' is not finite");
  }
  return l;
}

}  // namespace detail

/// Serialises `m` (validated) into a safetensors writer.
inline io::SafetensorsWriter model_writer(const PackedModel& m) {
  validate(m, "save_model");
  io::SafetensorsWriter w;
  w.set_metadata("pquant.format", kModelFormat);
  w.set_metadata("pquant.format_version", kModelFormatVersion);
  w.set_metadata("pquant.config", m.config.to_json().dump());
  w.set_metadata("pquant.layout", packing_layout().dump());
  detail::put_matrix(w, "embedding", m.embedding);
  detail::put_matrix(w, "head", m.head);
  detail::put_vec(w, "final_norm", m.final_norm);
  for (std::size_t l = 0; l < m.blocks.size(); ++l) {
    const PackedBlock& b = m.blocks[l];
    const std::string p = "blocks." + std::to_string(l) + ".";
    detail::put_vec(w, p + "attn_norm", b.attn_norm);
    detail::put_vec(w, p + "o_norm", b.o_norm);
    detail::put_vec(w, p + "ffn_norm", b.ffn_norm);
    detail::put_vec(w, p + "down_norm", b.down_norm);
    detail::put_linear(w, p + "qkv", b.qkv);
    detail::put_linear(w, p + "o", b.o);
    detail::put_linear(w, p + "up", b.up);
    detail::put_linear(w, p + "down", b.down);
    if (m.config.variant == Variant::kPQuant) {
      if (!b.router.empty()) detail::put_matrix(w, p + "router", b.router);
      for (std::size_t e = 0; e < b.expert_up.size(); ++e) {
        const std::string x = p + "experts." + std::to_string(e) + ".";
        detail::put_linear(w, x + "up", b.expert_up[e]);
        detail::put_linear(w, x + "down", b.expert_down[e]);
        detail::put_vec(w, x + "down_norm", b.expert_down_norm[e]);
      }
      const std::vector<float> ab = {b.alpha, b.beta};
      detail::put_vec(w, p + "alpha_beta", ab);
    }
  }
  return w;
}

/// Writes `m` atomically; returns the file size in bytes.
inline std::uint64_t save_model(const PackedModel& m, const std::string& path) {
  return model_writer(m).save(path);
}

/// Builds a PackedModel from a parsed file; FormatError on any inconsistency.
inline PackedModel load_model(const io::SafetensorsView& f) {
  require<FormatError>(
      f.metadata().count("pquant.format") && f.meta("pquant.format") == kModelFormat,
      "load_model: not a pquant packed model (__metadata__ 'pquant.format' must be '", kModelFormat,
      "')");
  require<FormatError>(f.meta("pquant.format_version") == kModelFormatVersion,
                       "load_model: unsupported format version '", f.meta("pquant.format_version"),
                       "', expected ", kModelFormatVersion,
                       " (version 1 files stored q, k, v separately: export the model again)");
  nlohmann::json cj = nlohmann::json::parse(f.meta("pquant.config"), nullptr, false);
  require<FormatError>(!cj.is_discarded() && cj.is_object(),
                       "load_model: 'pquant.config' is not a JSON object");
  PackedModel m;
  m.config = InferenceConfig::from_json(cj);
  const InferenceConfig& c = m.config;
  const std::size_t d = c.d_model, h = c.lowbit_ff(), gate = c.swiglu ? 2 : 1;
  const WeightKind low = c.variant == Variant::kFp          ? WeightKind::kF32
                         : c.variant == Variant::kBitNet158 ? WeightKind::kTernary
                                                            : WeightKind::kSign1;
  m.embedding = detail::get_matrix(f, "embedding", c.vocab, d);
  m.head = detail::get_matrix(f, "head", c.vocab, d);
  m.final_norm = detail::get_vec(f, "final_norm", d);
  m.blocks.resize(c.layers);
  for (std::size_t l = 0; l < c.layers; ++l) {
    PackedBlock& b = m.blocks[l];
    const std::string p = "blocks." + std::to_string(l) + ".";
    b.attn_norm = detail::get_vec(f, p + "attn_norm", d);
    b.o_norm = detail::get_vec(f, p + "o_norm", d, true);
    b.ffn_norm = detail::get_vec(f, p + "ffn_norm", d);
    b.down_norm = detail::get_vec(f, p + "down_norm", h, true);
    b.qkv = detail::get_linear(f, p + "qkv", low, 3 * d, d);
    b.o = detail::get_linear(f, p + "o", low, d, d);
    b.up = detail::get_linear(f, p + "up", low, gate * h, d);
    b.down = detail::get_linear(f, p + "down", low, d, h);
    if (c.variant == Variant::kPQuant) {
      if (c.experts > 1) b.router = detail::get_matrix(f, p + "router", c.experts, d);
      for (std::size_t e = 0; e < c.experts; ++e) {
        const std::string x = p + "experts." + std::to_string(e) + ".";
        b.expert_up.push_back(detail::get_linear(f, x + "up", WeightKind::kInt8, gate * c.r, d));
        b.expert_down.push_back(detail::get_linear(f, x + "down", WeightKind::kInt8, d, c.r));
        b.expert_down_norm.push_back(detail::get_vec(f, x + "down_norm", c.r, true));
      }
      const std::vector<float> ab = detail::get_vec(f, p + "alpha_beta", 2);
      b.alpha = ab[0];
      b.beta = ab[1];
    }
  }
  try {
    validate(m, "load_model");
  } catch (const ShapeError& e) {
    throw FormatError(e.what());
  }
  return m;
}

inline PackedModel load_model(const std::string& path, io::LoadMode mode = io::LoadMode::kMap) {
  const io::SafetensorsFile f = io::SafetensorsFile::load(path, mode);
  try {
    return load_model(f.view());
  } catch (const FormatError& e) {
    throw FormatError(std::string(e.what()) + " (file '" + path + "')");
  }
}

}  // namespace pquant::inference
