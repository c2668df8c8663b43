// Model files: a PackedModel as safetensors (docs/model-format.md), written atomically, loaded
// strictly: the structure JSON is parsed with exact field names and types (no duplicate keys),
// every tensor it implies is checked for presence, dtype and exact shape, and no other tensor is
// accepted, all before anything is allocated; FP tensors must be finite. Any problem is a
// FormatError naming the file and the tensor or field.
//
// __metadata__: "pquant.format" = "pquant-packed", "pquant.format_version" = "3",
//               "pquant.structure" = the structure JSON (sizes, per-block forms).
// Tensors (F32 unless the form says otherwise):
//   embedding [vocab, d], head [vocab, d], final_norm [d]
//   blocks.{l}.attn_norm [d], blocks.{l}.qkv.*, blocks.{l}.o.*, blocks.{l}.o_norm [d]?,
//   blocks.{l}.ffn_norm [d], blocks.{l}.ffn.{up,down}.*, blocks.{l}.ffn.down_norm [w]?,
//   decoupled: blocks.{l}.router [N, d] (N > 1), blocks.{l}.experts.{e}.{up,down}.*,
//              blocks.{l}.experts.{e}.down_norm [r]?, blocks.{l}.alpha_beta [2]
//   <linear>.* are the tensors of the linear's packed form (PackedForm::expected).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/inference/model_structure.hpp"
#include "pquant/inference/packed_linear.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/io/safetensors.hpp"

namespace pquant::inference {

inline constexpr const char* kModelFormat = "pquant-packed";
inline constexpr const char* kModelFormatVersion = "3";

namespace detail {

inline nlohmann::json linear_json(const PackedLinear& l) { return l.describe(); }

inline nlohmann::json branch_json(const PackedBranch& b, const BranchSpec& s) {
  return {{"width", s.width},
          {"up", linear_json(b.up)},
          {"down", linear_json(b.down)},
          {"down_norm", s.down_norm}};
}

inline std::string block_prefix(std::size_t l) { return "blocks." + std::to_string(l) + "."; }

/// The structure JSON of `m` (validated).
inline nlohmann::json structure_json(const PackedModel& m) {
  const ModelStructure& s = m.structure;
  nlohmann::json blocks = nlohmann::json::array();
  for (std::size_t l = 0; l < m.blocks.size(); ++l) {
    const PackedBlock& b = m.blocks[l];
    const BlockSpec& spec = s.blocks[l];
    nlohmann::json ffn = {{"kind", spec.ffn == FfnKind::kDense ? "dense" : "decoupled"},
                          {"branch", branch_json(b.branch, spec.branch)}};
    if (spec.ffn == FfnKind::kDecoupled) {
      nlohmann::json e = branch_json(b.experts[0], spec.expert);
      e["count"] = spec.experts;
      ffn["experts"] = e;
    }
    blocks.push_back({{"attention",
                       {{"qkv", linear_json(b.qkv)},
                        {"o", linear_json(b.o)},
                        {"o_norm", spec.o_norm}}},
                      {"ffn", ffn}});
  }
  return {{"label", s.label},
          {"vocab", s.vocab},
          {"d_model", s.d_model},
          {"heads", s.heads},
          {"context", s.context},
          {"rope_theta", s.rope_theta},
          {"norm_eps", s.norm_eps},
          {"activation", s.swiglu ? "swiglu" : "relu2"},
          {"blocks", blocks}};
}

/// A linear's description: a registered form whose description matches field for field.
inline std::string parse_linear(const nlohmann::json& j, const std::string& path) {
  const StrictObject o(j, path, {"form", "layout", "code", "bits", "scales", "group", "params"});
  const std::string form = o.string("form");
  (void)FormRegistry::global().find(form);
  require<FormatError>(j == FormRegistry::global().describe(form), "load_model: '", path,
                       "' does not describe form '", form, "' as the library does: ", j.dump());
  return form;
}

inline BranchSpec parse_branch(const nlohmann::json& j, const std::string& path, bool expert) {
  std::vector<std::string_view> keys{"width", "up", "down", "down_norm"};
  if (expert) keys.push_back("count");
  const StrictObject o(j, path, keys);
  BranchSpec b;
  b.width = o.size("width", kMaxWidth);
  b.up_form = parse_linear(o.at("up"), path + ".up");
  b.down_form = parse_linear(o.at("down"), path + ".down");
  b.down_norm = o.boolean("down_norm");
  return b;
}

inline ModelStructure parse_structure(const nlohmann::json& j) {
  const StrictObject o(j, "pquant.structure",
                       {"label", "vocab", "d_model", "heads", "context", "rope_theta", "norm_eps",
                        "activation", "blocks"});
  ModelStructure s;
  s.label = o.string("label");
  s.vocab = o.size("vocab", kMaxVocab);
  s.d_model = o.size("d_model", kMaxWidth);
  s.heads = o.size("heads", kMaxWidth);
  s.context = o.size("context", kMaxContext);
  s.rope_theta = o.number("rope_theta");
  s.norm_eps = o.number("norm_eps");
  const std::string act = o.string("activation");
  require<FormatError>(act == "swiglu" || act == "relu2",
                       "load_model: 'pquant.structure.activation' must be swiglu or relu2, got '",
                       act, "'");
  s.swiglu = act == "swiglu";
  const nlohmann::json& blocks = o.at("blocks");
  require<FormatError>(blocks.is_array() && !blocks.empty() && blocks.size() <= kMaxLayers,
                       "load_model: 'pquant.structure.blocks' must be an array of 1 to ",
                       kMaxLayers, " blocks");
  for (std::size_t l = 0; l < blocks.size(); ++l) {
    const std::string path = "pquant.structure.blocks[" + std::to_string(l) + "]";
    const StrictObject b(blocks[l], path, {"attention", "ffn"});
    const StrictObject a(b.at("attention"), path + ".attention", {"qkv", "o", "o_norm"});
    BlockSpec spec;
    spec.qkv_form = parse_linear(a.at("qkv"), a.path() + ".qkv");
    spec.o_form = parse_linear(a.at("o"), a.path() + ".o");
    spec.o_norm = a.boolean("o_norm");
    const nlohmann::json& fj = b.at("ffn");
    const StrictObject f0(fj, path + ".ffn", {"kind", "branch", "experts"});
    const std::string kind = f0.string("kind");
    require<FormatError>(kind == "dense" || kind == "decoupled", "load_model: '", f0.path(),
                         ".kind' must be dense or decoupled, got '", kind, "'");
    spec.branch = parse_branch(f0.at("branch"), f0.path() + ".branch", false);
    if (kind == "dense") {
      spec.ffn = FfnKind::kDense;
      require<FormatError>(!fj.contains("experts"), "load_model: '", f0.path(),
                           "' is dense and must not list experts");
    } else {
      spec.ffn = FfnKind::kDecoupled;
      const std::string ep = f0.path() + ".experts";
      spec.expert = parse_branch(f0.at("experts"), ep, true);
      spec.experts = StrictObject(f0.at("experts"), ep,
                                  {"width", "up", "down", "down_norm", "count"})
                         .size("count", kMaxExperts);
    }
    s.blocks.push_back(spec);
  }
  try {
    s.validate("load_model");
  } catch (const ValueError& e) {
    throw FormatError(e.what());
  }
  return s;
}

/// Every tensor the structure implies, by name.
inline std::map<std::string, TensorSpec> expected_tensors(const ModelStructure& s) {
  std::map<std::string, TensorSpec> t;
  const std::size_t d = s.d_model, g = s.gate();
  auto vec = [&](const std::string& n, std::size_t size) {
    t[n] = TensorSpec{n, io::DType::kF32, {size}};
  };
  auto mat = [&](const std::string& n, std::size_t r, std::size_t c) {
    t[n] = TensorSpec{n, io::DType::kF32, {r, c}};
  };
  auto lin = [&](const std::string& n, const std::string& form, std::size_t r, std::size_t c) {
    for (TensorSpec& spec : FormRegistry::global().find(form).expected(n, r, c))
      t[spec.name] = spec;
  };
  auto branch = [&](const std::string& p, const BranchSpec& b) {
    lin(p + "up", b.up_form, g * b.width, d);
    lin(p + "down", b.down_form, d, b.width);
    if (b.down_norm) vec(p + "down_norm", b.width);
  };
  mat("embedding", s.vocab, d);
  mat("head", s.vocab, d);
  vec("final_norm", d);
  for (std::size_t l = 0; l < s.layers(); ++l) {
    const BlockSpec& b = s.blocks[l];
    const std::string p = block_prefix(l);
    vec(p + "attn_norm", d);
    lin(p + "qkv", b.qkv_form, 3 * d, d);
    lin(p + "o", b.o_form, d, d);
    if (b.o_norm) vec(p + "o_norm", d);
    vec(p + "ffn_norm", d);
    branch(p + "ffn.", b.branch);
    if (b.ffn == FfnKind::kDecoupled) {
      if (b.experts > 1) mat(p + "router", b.experts, d);
      for (std::size_t e = 0; e < b.experts; ++e)
        branch(p + "experts." + std::to_string(e) + ".", b.expert);
      vec(p + "alpha_beta", 2);
    }
  }
  return t;
}

inline std::vector<float> get_vec(const io::SafetensorsView& f, const std::string& name,
                                  std::size_t n) {
  std::vector<float> v(n);
  pquant::detail::read_finite(f, name, v, {n});
  return v;
}

inline Matrix<float> get_matrix(const io::SafetensorsView& f, const std::string& name,
                                std::size_t rows, std::size_t cols) {
  Matrix<float> m(rows, cols);
  pquant::detail::read_finite(f, name, m.flat(), {rows, cols});
  return m;
}

inline void put_vec(io::SafetensorsWriter& w, const std::string& name,
                    const std::vector<float>& v) {
  if (!v.empty()) w.add<float>(name, {v.size()}, std::span<const float>(v));
}

inline void put_branch(io::SafetensorsWriter& w, const std::string& p, const PackedBranch& b) {
  b.up.save(w, p + "up");
  b.down.save(w, p + "down");
  put_vec(w, p + "down_norm", b.down_norm);
}

inline void put_block(io::SafetensorsWriter& w, const std::string& p, const PackedBlock& b,
                      const BlockSpec& spec) {
  put_vec(w, p + "attn_norm", b.attn_norm);
  b.qkv.save(w, p + "qkv");
  b.o.save(w, p + "o");
  put_vec(w, p + "o_norm", b.o_norm);
  put_vec(w, p + "ffn_norm", b.ffn_norm);
  put_branch(w, p + "ffn.", b.branch);
  if (spec.ffn == FfnKind::kDecoupled) {
    if (!b.router.empty())
      w.add<float>(p + "router", {b.router.rows(), b.router.cols()}, b.router.flat());
    for (std::size_t e = 0; e < b.experts.size(); ++e)
      put_branch(w, p + "experts." + std::to_string(e) + ".", b.experts[e]);
    put_vec(w, p + "alpha_beta", std::vector<float>{b.alpha, b.beta});
  }
}

/// Block `p` of a file whose tensors were checked against the structure (load_model).
inline PackedBlock get_block(const io::SafetensorsView& f, const std::string& p,
                             const BlockSpec& spec, std::size_t d, std::size_t g) {
  auto lin = [&](const std::string& n, const std::string& form, std::size_t r, std::size_t c) {
    return FormRegistry::global().find(form).load(f, n, r, c);
  };
  auto branch = [&](const std::string& bp, const BranchSpec& b) {
    PackedBranch out;
    out.up = lin(bp + "up", b.up_form, g * b.width, d);
    out.down = lin(bp + "down", b.down_form, d, b.width);
    if (b.down_norm) out.down_norm = get_vec(f, bp + "down_norm", b.width);
    return out;
  };
  PackedBlock b;
  b.attn_norm = get_vec(f, p + "attn_norm", d);
  b.qkv = lin(p + "qkv", spec.qkv_form, 3 * d, d);
  b.o = lin(p + "o", spec.o_form, d, d);
  if (spec.o_norm) b.o_norm = get_vec(f, p + "o_norm", d);
  b.ffn_norm = get_vec(f, p + "ffn_norm", d);
  b.branch = branch(p + "ffn.", spec.branch);
  if (spec.ffn == FfnKind::kDecoupled) {
    if (spec.experts > 1) b.router = get_matrix(f, p + "router", spec.experts, d);
    for (std::size_t e = 0; e < spec.experts; ++e)
      b.experts.push_back(branch(p + "experts." + std::to_string(e) + ".", spec.expert));
    const std::vector<float> ab = get_vec(f, p + "alpha_beta", 2);
    b.alpha = ab[0];
    b.beta = ab[1];
  }
  return b;
}

/// A safetensors image of `w` in one aligned buffer, parsed, the view owning the buffer. The buffer
/// is a whole number of huge pages, so the OS can back all of it with them.
inline io::SafetensorsView image_of(const io::SafetensorsWriter& w) {
  const std::vector<std::uint8_t> bytes = w.serialize();
  const std::size_t padded = (bytes.size() + kHugePage - 1) / kHugePage * kHugePage;
  auto image = std::make_shared<AlignedBuffer<std::uint8_t>>(padded);
  std::copy(bytes.begin(), bytes.end(), image->data());
  const std::span<const std::uint8_t> span(image->data(), bytes.size());
  return io::SafetensorsView::parse(span, std::move(image));
}

}  // namespace detail

/// Moves the tensors of blocks [first, first + count) into one buffer of their own, laid out as a
/// model file and read in place as load_model reads one. Decoding streams the weights from one
/// buffer backed by huge pages instead of from many small allocations (4 KiB pages: a TLB miss
/// every 4 KiB), which is measurably faster; random_packed_model lays out its blocks this way,
/// load_model gets it from the file's buffer. The values are unchanged.
inline void relocate_blocks(PackedModel& m, std::size_t first, std::size_t count) {
  require<ValueError>(first + count <= m.blocks.size() && m.blocks.size() == m.structure.layers(),
                      "relocate_blocks: blocks [", first, ", ", first + count, ") out of range");
  if (count == 0) return;
  io::SafetensorsWriter w;
  for (std::size_t l = first; l < first + count; ++l)
    detail::put_block(w, detail::block_prefix(l), m.blocks[l], m.structure.blocks[l]);
  const io::SafetensorsView f = detail::image_of(w);
  for (std::size_t l = first; l < first + count; ++l)
    m.blocks[l] = detail::get_block(f, detail::block_prefix(l), m.structure.blocks[l],
                                    m.structure.d_model, m.structure.gate());
}

/// Serialises `m` (validated) into a safetensors writer.
inline io::SafetensorsWriter model_writer(const PackedModel& m) {
  validate(m, "save_model");
  io::SafetensorsWriter w;
  w.set_metadata("pquant.format", kModelFormat);
  w.set_metadata("pquant.format_version", kModelFormatVersion);
  w.set_metadata("pquant.structure", detail::structure_json(m).dump());
  w.add<float>("embedding", {m.embedding.rows(), m.embedding.cols()}, m.embedding.flat());
  w.add<float>("head", {m.head.rows(), m.head.cols()}, m.head.flat());
  detail::put_vec(w, "final_norm", m.final_norm);
  for (std::size_t l = 0; l < m.blocks.size(); ++l)
    detail::put_block(w, detail::block_prefix(l), m.blocks[l], m.structure.blocks[l]);
  return w;
}

/// Writes `m` atomically; returns the file size in bytes.
inline std::uint64_t save_model(const PackedModel& m, const std::string& path) {
  return model_writer(m).save(path);
}

/// Builds a PackedModel from a parsed file; FormatError on any inconsistency (see the header).
inline PackedModel load_model(const io::SafetensorsView& f) {
  for (const auto& [key, value] : f.metadata())
    require<FormatError>(key == "pquant.format" || key == "pquant.format_version" ||
                             key == "pquant.structure",
                         "load_model: unknown __metadata__ key '", key, "'");
  require<FormatError>(
      f.metadata().count("pquant.format") && f.meta("pquant.format") == kModelFormat,
      "load_model: not a pquant packed model (__metadata__ 'pquant.format' must be '", kModelFormat,
      "')");
  require<FormatError>(f.meta("pquant.format_version") == kModelFormatVersion,
                       "load_model: unsupported format version '", f.meta("pquant.format_version"),
                       "', expected ", kModelFormatVersion, " (export the model again)");
  const ModelStructure s = detail::parse_structure(
      detail::parse_strict_json(f.meta("pquant.structure"), "__metadata__ 'pquant.structure'"));
  // Every tensor present with its exact dtype and shape, none other: checked before allocating,
  // so every allocation below is bounded by the bytes the file holds.
  const std::map<std::string, TensorSpec> want = detail::expected_tensors(s);
  for (const io::TensorInfo& t : f.tensors()) {
    const auto it = want.find(t.name);
    require<FormatError>(it != want.end(), "load_model: unknown tensor '", t.name,
                         "' (not part of the structure)");
    require<FormatError>(t.dtype == it->second.dtype && t.shape == it->second.shape,
                         "load_model: tensor '", t.name, "' has dtype ", io::dtype_name(t.dtype),
                         " and shape ", io::detail::shape_string(t.shape), ", the structure needs ",
                         io::dtype_name(it->second.dtype), " ",
                         io::detail::shape_string(it->second.shape));
  }
  for (const auto& [name, spec] : want)
    require<FormatError>(f.find(name) != nullptr, "load_model: missing tensor '", name, "'");

  PackedModel m;
  m.structure = s;
  const std::size_t d = s.d_model, g = s.gate();
  m.embedding = detail::get_matrix(f, "embedding", s.vocab, d);
  m.head = detail::get_matrix(f, "head", s.vocab, d);
  m.final_norm = detail::get_vec(f, "final_norm", d);
  for (std::size_t l = 0; l < s.layers(); ++l)
    m.blocks.push_back(detail::get_block(f, detail::block_prefix(l), s.blocks[l], d, g));
  try {
    validate(m, "load_model");
  } catch (const ShapeError& e) {
    throw FormatError(e.what());
  }
  return m;
}

/// Maps (or reads) the file and loads it; every FormatError names the file.
inline PackedModel load_model(const std::string& path, io::LoadMode mode = io::LoadMode::kMap) {
  const io::SafetensorsFile f = io::SafetensorsFile::load(path, mode);
  try {
    return load_model(f.view());
  } catch (const FormatError& e) {
    throw FormatError(std::string(e.what()) + " (file '" + path + "')");
  }
}

}  // namespace pquant::inference
