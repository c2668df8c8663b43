// Import of a latent checkpoint in the Hugging Face naming (docs/model-format.md, "HF naming"): a
// directory with config.json and model.safetensors (F32, BF16 or F16 tensors) becomes a
// DecoderModel<V> holding those weights as its latent weights, which trains further like any
// model, or is packed by export_model and served.
//
//   visit_hf_checkpoint(dir, [&]<class V>(DecoderModel<V>& model, const HfConfig&) { ... });
//   PackedModel packed = import_hf_packed(dir);
//
// Everything is checked before the model is allocated: config.json (hf_config.hpp), then every
// tensor the variant's layers need present with its exact shape and a readable dtype, and no
// other tensor. Every failure is a FormatError naming the file and the tensor or field.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/hf_config.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/io/safetensors.hpp"
#include "pquant/model/decoder_model.hpp"
#include "pquant/quantizers/packed_form.hpp"
#include "pquant/quantizers/ternary_absmean.hpp"
#include "pquant/storage/code_format.hpp"
#include "pquant/storage/packed_matrix.hpp"
#include "pquant/storage/scale_granularity.hpp"

namespace pquant::inference {

/// IEEE binary16 -> float (exact, subnormals, infinities and NaN included).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  float mag;
  if (exp == 0) {
    mag = std::ldexp(static_cast<float>(man), -24);  // zero or subnormal
  } else if (exp == 31) {
    mag = man == 0 ? INFINITY : NAN;
  } else {
    mag = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  }
  std::uint32_t bits;
  std::memcpy(&bits, &mag, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

/// bfloat16 -> float (exact: the upper half of the float's bits).
inline float bfloat16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

namespace detail {

/// Tensor `t` of `f` as floats (F32, BF16 or F16; any other dtype is a FormatError).
inline std::vector<float> hf_floats(const io::SafetensorsView& f, const io::TensorInfo& t,
                                    const std::string& where) {
  const std::span<const std::uint8_t> b = f.bytes(t);
  std::vector<float> out(static_cast<std::size_t>(t.elements()));
  if (t.dtype == io::DType::kF32) {
    if (!out.empty()) std::memcpy(out.data(), b.data(), b.size());
  } else if (t.dtype == io::DType::kBF16 || t.dtype == io::DType::kF16) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto h = static_cast<std::uint16_t>(b[2 * i] | (b[2 * i + 1] << 8));  // little-endian
      out[i] = t.dtype == io::DType::kBF16 ? bfloat16_to_float(h) : half_to_float(h);
    }
  } else {
    hf_error(where, "tensor '", t.name, "' has dtype ", io::dtype_name(t.dtype),
             "; latent weights are read from F32, BF16 or F16");
  }
  for (float v : out)
    if (!std::isfinite(v)) hf_error(where, "tensor '", t.name, "' holds a non-finite value");
  return out;
}

inline std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// A scalar may be stored as [] (a PyTorch 0-d parameter) or [1].
inline bool hf_shape_matches(const std::vector<std::uint64_t>& got,
                             const std::vector<std::uint64_t>& want) {
  if (want.empty()) return got.empty() || got == std::vector<std::uint64_t>{1};
  return got == want;
}

/// Tensor elements a checkpoint of `c` holds at least (embedding and attention; packed: four
/// codes per byte): compared with what the file holds before the model is allocated, so a
/// crafted config cannot allocate more than the file's size justifies.
inline double hf_min_elements(const HfConfig& c) {
  const double d = static_cast<double>(c.model.d_model);
  const double attention = c.packed_ternary ? d * d : 4.0 * d * d;
  return static_cast<double>(c.model.vocab) * d + static_cast<double>(c.model.layers) * attention;
}

}  // namespace detail

/// A checkpoint directory's config.json and model.safetensors, read and its config checked.
class HfCheckpoint {
 public:
  static HfCheckpoint open(const std::string& dir) {
    namespace fs = std::filesystem;
    const std::string config_path = (fs::path(dir) / "config.json").string();
    const std::string weights_path = (fs::path(dir) / "model.safetensors").string();
    if (!fs::exists(weights_path) && fs::exists(fs::path(dir) / "model.safetensors.index.json"))
      detail::hf_error(dir, "sharded checkpoints (model.safetensors.index.json) are not read; "
                            "merge the shards into one model.safetensors");
    if (!fs::is_regular_file(config_path)) detail::hf_error(dir, "has no config.json");
    if (!fs::is_regular_file(weights_path)) detail::hf_error(dir, "has no model.safetensors");
    const AlignedBuffer<std::uint8_t> text = io::read_file(config_path);
    HfCheckpoint c;
    c.config_ = parse_hf_config(std::string(reinterpret_cast<const char*>(text.data()), text.size()),
                                config_path);
    c.weights_path_ = weights_path;
    try {
      c.file_ = io::SafetensorsFile::load(weights_path, io::LoadMode::kMap);
    } catch (const FormatError& e) {
      detail::hf_error(weights_path, e.what());
    }
    std::uint64_t elements = 0;
    for (const io::TensorInfo& t : c.file_->tensors()) elements += t.elements();
    const double needed = detail::hf_min_elements(c.config_);
    if (needed > static_cast<double>(elements))
      detail::hf_error(config_path, "declares a model of at least ", needed,
                       " weights, model.safetensors holds ", elements);
    return c;
  }

  const HfConfig& config() const { return config_; }
  const io::SafetensorsView& tensors() const { return file_.view(); }
  const std::string& weights_path() const { return weights_path_; }

 private:
  HfConfig config_;
  std::string weights_path_;
  io::SafetensorsFile file_;
};

/// How a packed checkpoint's weight_scale relates to the ternary codes: transformers' BitLinear
/// divides (y = (codes . q) / (input_scale * weight_scale), so weight_scale = 1 / absmean), the
/// default; kMultiply reads weight = code * weight_scale (docs/model-format.md).
enum class HfWeightScale { kReciprocal, kMultiply };

/// A WeightQuantizer that reads back weights that are already ternary: every value is -s, 0 or
/// +s for one s per tensor (a packed checkpoint's code * scale); codes and s are kept exactly.
struct ExactTernary {
  using format_type = TernaryCode;
  using scales_type = PerTensor;
  using packed_type = PackedMatrix<TernaryCode, PerTensor>;
  static constexpr std::string_view kName = "exact_ternary";
  static packed_type quantize(MatrixView<const float> w) {
    float s = 0;
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) s = std::max(s, std::abs(w(r, c)));
    packed_type p(w.rows, w.cols);
    p.params()[0] = s;
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        p.set_code(r, c, TernaryCode::encode(w(r, c) > 0 ? 1 : (w(r, c) < 0 ? -1 : 0)));
    return p;
  }
  static void fake_quantize(MatrixView<const float> w, MatrixView<float> out) {
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) out(r, c) = w(r, c);
  }
};

namespace detail {

enum class HfKind { kFloat, kCodes, kScale };

struct HfExpect {
  std::string name;
  std::vector<std::uint64_t> shape;
  HfKind kind = HfKind::kFloat;
  std::size_t param = 0;
};

inline bool hf_float_dtype(io::DType t) {
  return t == io::DType::kF32 || t == io::DType::kBF16 || t == io::DType::kF16;
}

/// The tensors a checkpoint of `cfg` holds for the parameters of `store`.
inline std::vector<HfExpect> hf_expected(const ParameterStore& store, const HfConfig& cfg) {
  std::vector<HfExpect> out;
  for (std::size_t i = 0; i < store.infos().size(); ++i) {
    const ParamInfo& p = store.infos()[i];
    const HfTensor t = hf_tensor(p);
    if (cfg.tied_embeddings && t.name == "lm_head.weight") continue;
    if (cfg.packed_ternary && p.role == ParamRole::kWeight && p.name.starts_with("blocks.")) {
      // transformers' pack_weights: [ceil(rows / 4), cols] bytes, row r in bits 2(r / R4) of
      // byte row r % R4 (R4 = ceil(rows / 4)), code = value + 1.
      out.push_back({t.name, {(p.rows + 3) / 4, p.cols}, HfKind::kCodes, i});
      std::string scale = t.name;
      scale.replace(scale.size() - 6, 6, "weight_scale");
      out.push_back({scale, {}, HfKind::kScale, i});
    } else {
      out.push_back({t.name, t.shape, HfKind::kFloat, i});
    }
  }
  return out;
}

/// code * s of a packed projection into `dst` [rows x cols].
inline void hf_unpack_ternary(std::span<const std::uint8_t> bytes, float s, MatrixView<float> dst,
                              const std::string& name, const std::string& where) {
  const std::size_t r4 = (dst.rows + 3) / 4;
  for (std::size_t j = 0; j < r4; ++j)
    for (std::size_t c = 0; c < dst.cols; ++c) {
      const std::uint8_t b = bytes[j * dst.cols + c];
      for (std::size_t i = 0; i < 4; ++i) {
        const int code = (b >> (2 * i)) & 3;
        const std::size_t r = i * r4 + j;
        if (r >= dst.rows) {
          if (code != 0)
            hf_error(where, "tensor '", name, "' has a non-zero padding code at byte row ", j,
                     ", column ", c);
          continue;
        }
        if (code == 3)
          hf_error(where, "tensor '", name, "' holds the invalid ternary code 3 (row ", r,
                   ", column ", c, ")");
        dst(r, c) = static_cast<float>(code - 1) * s;
      }
    }
}

}  // namespace detail

/// Copies the checkpoint's tensors into `model` (whose layers and sizes must be those of the
/// checkpoint's config). Checks the whole tensor set first: a tensor the model needs is missing,
/// a tensor it does not have is present, a shape or dtype differs -> FormatError naming it.
/// A packed checkpoint's projections become code * s (s from weight_scale by `scale`).
template <ModelVariant V>
void load_hf_weights(const io::SafetensorsView& f, const HfConfig& cfg, DecoderModel<V>& model,
                     const std::string& where,
                     HfWeightScale scale = HfWeightScale::kReciprocal) {
  ParameterStore& store = model.store();
  const std::vector<detail::HfExpect> want = detail::hf_expected(store, cfg);
  std::set<std::string> names;
  for (const detail::HfExpect& e : want) {
    names.insert(e.name);
    if (f.find(e.name) == nullptr)
      detail::hf_error(where, "missing tensor '", e.name, "' (shape ", detail::shape_text(e.shape),
                       ") that the ", cfg.variant, " layers need");
  }
  for (const io::TensorInfo& t : f.tensors()) {
    if (cfg.tied_embeddings && t.name == "lm_head.weight") continue;  // checked equal below
    if (!names.contains(t.name))
      detail::hf_error(where, "unexpected tensor '", t.name, "': the ", cfg.variant,
                       " layers of config.json have no such parameter");
  }
  for (const detail::HfExpect& e : want) {
    const io::TensorInfo& t = *f.find(e.name);
    if (!detail::hf_shape_matches(t.shape, e.shape))
      detail::hf_error(where, "tensor '", e.name, "' has shape ", detail::shape_text(t.shape),
                       ", expected ", detail::shape_text(e.shape));
    if (e.kind == detail::HfKind::kCodes ? t.dtype != io::DType::kU8
                                         : !detail::hf_float_dtype(t.dtype))
      detail::hf_error(where, "tensor '", e.name, "' has dtype ", io::dtype_name(t.dtype),
                       e.kind == detail::HfKind::kCodes
                           ? "; packed ternary weights are read from U8"
                           : "; latent weights are read from F32, BF16 or F16");
  }
  for (const detail::HfExpect& e : want) {
    MatrixView<float> dst = store.value(ParamId{e.param});
    if (e.kind == detail::HfKind::kFloat) {
      const std::vector<float> v = detail::hf_floats(f, *f.find(e.name), where);
      std::memcpy(dst.data, v.data(), v.size() * sizeof(float));
    } else if (e.kind == detail::HfKind::kCodes) {
      std::string scale_name = e.name;
      scale_name.replace(scale_name.size() - 6, 6, "weight_scale");
      const float ws = detail::hf_floats(f, f.at(scale_name), where)[0];
      const float s = scale == HfWeightScale::kReciprocal ? 1.0f / ws : ws;
      if (!(std::isfinite(s) && s > 0))
        detail::hf_error(where, "tensor '", scale_name, "' is ", ws,
                         ": a weight scale must give a finite scale > 0");
      detail::hf_unpack_ternary(f.bytes(f.at(e.name)), s, dst, e.name, where);
    }
  }
  if (cfg.tied_embeddings) {
    const std::vector<float> embed = detail::hf_floats(f, f.at("model.embed_tokens.weight"), where);
    if (const io::TensorInfo* head = f.find("lm_head.weight")) {
      if (head->shape != f.at("model.embed_tokens.weight").shape ||
          !detail::hf_float_dtype(head->dtype) || detail::hf_floats(f, *head, where) != embed)
        detail::hf_error(where, "'tie_word_embeddings' is true but lm_head.weight differs from "
                                "model.embed_tokens.weight");
    }
    for (std::size_t i = 0; i < store.infos().size(); ++i)
      if (store.infos()[i].name == "head.weight") {
        MatrixView<float> dst = store.value(ParamId{i});
        std::memcpy(dst.data, embed.data(), embed.size() * sizeof(float));
      }
  }
}

/// Opens the checkpoint in `dir`, builds the DecoderModel<V> of its variant with its weights and
/// calls f(model) (f is instantiated for every variant of HfVariants; all must return one type).
/// A packed checkpoint's projections arrive as code * s: its forward re-quantizes them (the
/// absmean of ternary values is not s), so serve packed checkpoints with import_hf_packed.
template <class F>
decltype(auto) visit_hf_checkpoint(const std::string& dir, F&& f,
                                   HfWeightScale scale = HfWeightScale::kReciprocal) {
  const HfCheckpoint ckpt = HfCheckpoint::open(dir);
  return visit_variant<HfVariants>(ckpt.config().variant, [&]<class V>(std::type_identity<V>) {
    DecoderModel<V> model(ckpt.config().model, /*seed=*/0);
    load_hf_weights(ckpt.tensors(), ckpt.config(), model, ckpt.weights_path(), scale);
    return f(model, ckpt.config());
  });
}

namespace detail {

/// Replaces the projections of `m` (exported from `model`, whose projection weights are code * s)
/// by their exact ternary packing: the checkpoint's codes and scales, not an absmean re-fit.
template <ModelVariant V>
void repack_exact_ternary(const DecoderModel<V>& model, PackedModel& m) {
  using P = packed_form_t<TernaryAbsMean<PerTensor>>;
  register_form<P>();
  const ParameterStore& s = model.store();
  auto pack = [&](std::vector<ParamId> ids) {
    std::vector<MatrixView<const float>> parts;
    for (ParamId id : ids) parts.push_back(s.value(id));
    return PackedLinear::of(P::template pack<ExactTernary>(parts));
  };
  for (std::size_t l = 0; l < m.blocks.size(); ++l) {
    const auto& att = model.block(l).attention();
    const auto& br = model.block(l).ffn().branch();
    m.blocks[l].qkv = pack({att.q().weight_id(), att.k().weight_id(), att.v().weight_id()});
    m.blocks[l].o = pack({att.o().weight_id()});
    std::vector<ParamId> up;
    if (br.gate()) up.push_back(br.gate()->weight_id());
    up.push_back(br.up().weight_id());
    m.blocks[l].branch.up = pack(up);
    m.blocks[l].branch.down = pack({br.down().weight_id()});
  }
  validate(m, "import_hf_packed");
}

}  // namespace detail

/// The checkpoint in `dir`, imported and packed for serving (export_model of the imported model;
/// a packed BitNet checkpoint keeps its own codes and scales).
inline PackedModel import_hf_packed(const std::string& dir,
                                    HfWeightScale scale = HfWeightScale::kReciprocal) {
  return visit_hf_checkpoint(
      dir,
      []<class V>(DecoderModel<V>& model, const HfConfig& cfg) {
        PackedModel m = export_model(model);
        if constexpr (std::is_same_v<V, variants::BitNet158>)
          if (cfg.packed_ternary) detail::repack_exact_ternary(model, m);
        return m;
      },
      scale);
}

}  // namespace pquant::inference
