// Export of a DecoderModel's latent weights in the Hugging Face naming (docs/model-format.md, "HF
// naming"): <dir>/model.safetensors (F32, shapes as config.json declares them) and
// <dir>/config.json, so PyTorch code reads it with safetensors.torch.load_file and continues
// training; hf_import.hpp reads it back bit for bit. tools/hf_to_gguf.py turns it into GGUF.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/inference/hf_config.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/io/safetensors.hpp"
#include "pquant/model/decoder_model.hpp"

namespace pquant::inference {

/// The model's parameters as an HF-named safetensors image (F32, metadata {"format": "pt"}).
template <ModelVariant V>
io::SafetensorsWriter hf_writer(const DecoderModel<V>& model) {
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");  // what transformers' save_pretrained writes
  const ParameterStore& s = model.store();
  for (std::size_t i = 0; i < s.infos().size(); ++i) {
    const HfTensor t = hf_tensor(s.infos()[i]);
    const MatrixView<const float> v = s.value(ParamId{i});
    w.add<float>(t.name, t.shape, std::span<const float>(v.data, v.rows * v.cols));
  }
  return w;
}

/// Writes <dir>/model.safetensors and <dir>/config.json (each atomically; `dir` is created if
/// missing). ValueError for a variant without an HF architecture (not one of HfVariants).
template <ModelVariant V>
void save_hf(const DecoderModel<V>& model, const std::string& dir) {
  require<ValueError>(HfVariants::contains(V::kName), "save_hf: variant '", V::kName,
                      "' has no Hugging Face architecture (supported: ", HfVariants::names_text(),
                      ")");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  require<IoError>(!ec, "save_hf: cannot create directory '", dir, "': ", ec.message());
  hf_writer(model).save((std::filesystem::path(dir) / "model.safetensors").string());
  const std::string text = hf_config_json(V::kName, model.config()).dump(2) + "\n";
  io::write_file_atomic((std::filesystem::path(dir) / "config.json").string(),
                        {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
}

}  // namespace pquant::inference
