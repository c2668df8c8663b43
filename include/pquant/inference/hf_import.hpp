// Import of a latent checkpoint in the Hugging Face naming (docs/model-format.md, "HF naming"): a
// directory with config.json and model.safetensors (F32, BF16 or F16 tensors) becomes a
// DecoderModel<V> holding those weights as its latent weights, which trains further like any
// model, or is packed by export_model and served.
//
//   visit_hf_checkpoint(dir, [&]<class V>(DecoderModel<V>& model) { ... });
//   PackedModel packed = import_hf_packed(dir);
//
// Everything is checked before the model is allocated: config.json (hf_config.hpp), then every
// tensor the variant's layers need present with its exact shape and a readable dtype, and no
// other tensor. Every failure is a FormatError naming the file and the tensor or field.
#pragma once

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

/// Weights a model of config `m` needs at least (embedding and attention): compared with what
/// the file holds before the model is allocated, so a crafted config cannot allocate more than
/// the file's size justifies.
inline double hf_min_elements(const ModelConfig& m) {
  const double d = static_cast<double>(m.d_model);
  return static_cast<double>(m.vocab) * d + static_cast<double>(m.layers) * 4.0 * d * d;
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
    c.file_ = io::SafetensorsFile::load(weights_path, io::LoadMode::kMap);
    std::uint64_t elements = 0;
    for (const io::TensorInfo& t : c.file_->tensors()) elements += t.elements();
    const double needed = detail::hf_min_elements(c.config_.model);
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

/// Copies the checkpoint's tensors into `model` (whose layers and sizes must be those of the
/// checkpoint's config). Checks the whole tensor set first: a tensor the model needs is missing,
/// a tensor it does not have is present, a shape or dtype differs -> FormatError naming it.
template <ModelVariant V>
void load_hf_weights(const io::SafetensorsView& f, const HfConfig& cfg, DecoderModel<V>& model,
                     const std::string& where) {
  ParameterStore& store = model.store();
  std::map<std::string, std::size_t> wanted;  // HF name -> parameter index
  std::vector<HfTensor> names;
  for (std::size_t i = 0; i < store.infos().size(); ++i) {
    names.push_back(hf_tensor(store.infos()[i]));
    if (cfg.tied_embeddings && names.back().name == "lm_head.weight") continue;
    wanted.emplace(names.back().name, i);
  }
  for (const auto& [name, index] : wanted)
    if (f.find(name) == nullptr)
      detail::hf_error(where, "missing tensor '", name, "' (shape ",
                       detail::shape_text(names[index].shape), ") that the ", cfg.variant,
                       " layers need");
  for (const io::TensorInfo& t : f.tensors()) {
    if (cfg.tied_embeddings && t.name == "lm_head.weight") continue;  // checked equal below
    if (!wanted.contains(t.name))
      detail::hf_error(where, "unexpected tensor '", t.name, "': the ", cfg.variant,
                       " layers of config.json have no such parameter");
  }
  for (const auto& [name, index] : wanted) {
    const io::TensorInfo& t = *f.find(name);
    if (!detail::hf_shape_matches(t.shape, names[index].shape))
      detail::hf_error(where, "tensor '", name, "' has shape ", detail::shape_text(t.shape),
                       ", expected ", detail::shape_text(names[index].shape));
    if (t.dtype != io::DType::kF32 && t.dtype != io::DType::kBF16 && t.dtype != io::DType::kF16)
      detail::hf_error(where, "tensor '", name, "' has dtype ", io::dtype_name(t.dtype),
                       "; latent weights are read from F32, BF16 or F16");
  }
  for (const auto& [name, index] : wanted) {
    const std::vector<float> v = detail::hf_floats(f, *f.find(name), where);
    MatrixView<float> dst = store.value(ParamId{index});
    std::memcpy(dst.data, v.data(), v.size() * sizeof(float));
  }
  if (cfg.tied_embeddings) {
    const std::vector<float> embed = detail::hf_floats(f, f.at("model.embed_tokens.weight"), where);
    if (const io::TensorInfo* head = f.find("lm_head.weight")) {
      if (head->shape != f.at("model.embed_tokens.weight").shape ||
          detail::hf_floats(f, *head, where) != embed)
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
template <class F>
decltype(auto) visit_hf_checkpoint(const std::string& dir, F&& f) {
  const HfCheckpoint ckpt = HfCheckpoint::open(dir);
  return visit_variant<HfVariants>(ckpt.config().variant, [&]<class V>(std::type_identity<V>) {
    DecoderModel<V> model(ckpt.config().model, /*seed=*/0);
    load_hf_weights(ckpt.tensors(), ckpt.config(), model, ckpt.weights_path());
    return f(model);
  });
}

/// The checkpoint in `dir`, imported and packed for serving (export_model of the imported model).
inline PackedModel import_hf_packed(const std::string& dir) {
  return visit_hf_checkpoint(dir, []<class V>(DecoderModel<V>& model) { return export_model(model); });
}

}  // namespace pquant::inference
