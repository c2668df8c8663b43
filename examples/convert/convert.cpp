// convert: models between the Hugging Face naming (config.json + model.safetensors) and pquant.
//
//   convert --import-hf DIR --model OUT.safetensors    HF checkpoint -> packed pquant model
//           [--hf-weight-scale divide|multiply]         (latent, or transformers' packed BitNet)
//   convert --export-hf CKPT --out DIR                 train_lm checkpoint -> latent HF checkpoint
//
// The naming, its pQuant extension and every conversion are in docs/model-format.md ("HF naming");
// the flags in docs/tools.md. A packed model runs with `generate --model OUT.safetensors`; an
// exported directory loads in PyTorch with safetensors.torch.load_file, and
// tools/hf_to_gguf.py writes it as GGUF.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "../common/cli.hpp"
#include "../train_lm/run_config.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/hf_export.hpp"
#include "pquant/inference/hf_import.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/checkpoint.hpp"

namespace {

using namespace pquant;
using namespace pquant::inference;

struct Options {
  std::string import_hf, model, export_hf, out, weight_scale = "divide";
};

void declare(CLI::App& app, Options& o) {
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI::Option* imp = app.add_option(
      "--import-hf", o.import_hf,
      "directory with config.json and model.safetensors in the Hugging Face naming");
  CLI::Option* model =
      app.add_option("--model", o.model, "with --import-hf: the packed pquant model to write");
  CLI::Option* exp =
      app.add_option("--export-hf", o.export_hf, "train_lm checkpoint to export (latent weights)");
  CLI::Option* out = app.add_option("--out", o.out,
                                    "with --export-hf: the directory to write config.json and "
                                    "model.safetensors to");
  app.add_option("--hf-weight-scale", o.weight_scale,
                 "packed BitNet checkpoints: weight = code / weight_scale (transformers) or "
                 "code * weight_scale")
      ->check(CLI::IsMember({"divide", "multiply"}))
      ->capture_default_str();
  imp->excludes(exp)->needs(model);
  exp->needs(out);
  model->needs(imp);
  out->needs(exp);
}

int run(const Options& o) {
  if (!o.import_hf.empty()) {
    const PackedModel packed = import_hf_packed(
        o.import_hf, o.weight_scale == "divide" ? HfWeightScale::kReciprocal
                                                : HfWeightScale::kMultiply);
    const std::uint64_t bytes = save_model(packed, o.model);
    std::cout << "imported " << o.import_hf << " -> " << o.model << "\n";
    print_accounting(std::cout, packed, bytes);
    return 0;
  }
  const CheckpointReader ckpt = CheckpointReader::open(o.export_hf);
  const train_lm::ModelSpec spec = train_lm::model_from_json(
      nlohmann::json::parse(ckpt.state().meta, nullptr, false), o.export_hf);
  const double needed = train_lm::min_parameters(spec.variant, spec.config);
  require<FormatError>(needed <= static_cast<double>(ckpt.parameter_elements()), "'",
                       o.export_hf, "': its configuration needs at least ", needed,
                       " weights, the file holds ", ckpt.parameter_elements());
  visit_variant(spec.variant, [&]<class V>(std::type_identity<V>) {
    DecoderModel<V> model(spec.config, 0);
    AdamW opt(model.store());
    ckpt.restore(model.store(), opt);
    save_hf(model, o.out);
    std::cout << "exported " << o.export_hf << " (" << V::kName << ") -> " << o.out
              << "/config.json, " << o.out << "/model.safetensors\n";
  });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Converts models between the Hugging Face naming and pquant (docs/tools.md).",
               "convert");
  Options o;
  declare(app, o);
  return cli::run(
      app, argc, argv,
      [&] {
        if (o.import_hf.empty() && o.export_hf.empty())
          cli::reject("--import-hf", "give --import-hf DIR --model OUT or --export-hf CKPT --out DIR");
      },
      [&] { return run(o); });
}
