// custom_variant: a transformer variant written entirely in application code, trained, exported,
// reloaded and served by the library's generic export / model file / engine.
//
// The variant: ternary attention (BitNet b1.58's projections); pQuant's decoupled FFN whose N = 2
// INT8 experts are replaced by 4-bit k-means codebooks fit per output row ("1-Bit Wonder") and
// whose 1-bit branch has one absmean scale per row instead of per tensor.
//
//   custom_variant [--data FILE] [--steps 50] [--tokens 32] [--out custom_variant.safetensors]
// Trains on the generated corpus of train_lm (or FILE), exports, reloads through load_model,
// compares the engine's logits with DecoderModel::forward on the same tokens, generates greedily,
// and prints one JSON line last: parity_max_abs_err, generated_tokens, model_bytes, model, ...
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "../train_lm/corpus.hpp"
#include "pquant/inference.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"
#include "pquant/model.hpp"
#include "pquant/training.hpp"

namespace {

using namespace pquant;

// The variant. Everything below is public library API; nothing is registered anywhere.
using TernaryProj = BitLinear<TernaryAbsMean<PerTensor>>;
using KMeansExpertProj = BitLinear<KMeansCodebook<4, PerRow>>;
using SignPerRowProj = BitLinear<SignAbsMean<PerRow>>;

struct TernaryKMeansPQuant : variants::Decoupled<TernaryProj, KMeansExpertProj, SignPerRowProj> {
  static constexpr std::string_view kName = "ternary-kmeans-pquant";
};
// Checked before any training: every projection has a packed form.
static_assert(inference::exportable<TernaryKMeansPQuant>);

struct Options {
  std::string data, out = "custom_variant.safetensors";
  std::size_t steps = 50, tokens = 32;
  std::uint64_t seed = 1;
};

int run(const Options& o) {
  ModelConfig mc;
  mc.vocab = 256;
  mc.d_model = 64;
  mc.layers = 2;
  mc.heads = 4;
  mc.d_ff = 192;
  mc.r = 32;
  mc.experts = 2;
  mc.context = 64;
  const ByteDataset data = o.data.empty()
                               ? ByteDataset(train_lm::generate_corpus(std::size_t{1} << 18))
                               : ByteDataset::from_file(o.data);
  DecoderModel<TernaryKMeansPQuant> model(mc, o.seed);
  TrainerConfig tc;
  tc.batch = 8;
  tc.seq_len = mc.context;
  tc.schedule = make_schedule("two-phase", 3e-3f, std::min<std::size_t>(10, o.steps), o.steps);
  tc.data_seed = o.seed;
  Trainer trainer(model, data, tc);
  double loss = 0;
  while (trainer.step_index() < o.steps) {
    const StepReport r = trainer.step();
    loss = r.loss;
    if ((r.step + 1) % 10 == 0 || r.step + 1 == o.steps)
      std::cout << "step " << r.step + 1 << " loss " << r.loss << "\n";
  }

  // Export, save, reload through the same loader `generate --model` uses.
  const inference::PackedModel exported = inference::export_model(model);
  const std::uint64_t bytes = inference::save_model(exported, o.out);
  inference::print_accounting(std::cout, exported, bytes);
  const inference::PackedModel served = inference::load_model(o.out);

  // Parity: engine logits vs the training model's forward on the same tokens.
  const std::string text = o.data.empty() ? train_lm::generate_corpus(4096, 7) : std::string();
  std::vector<TokenId> tokens(mc.context);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<TokenId>(
        text.empty() ? (i * 31 + 7) % 256 : static_cast<unsigned char>(text[i]));
  Matrix<float> want(tokens.size(), mc.vocab);
  model.forward(tokens, SequenceShape{1, tokens.size()}, want.view());
  inference::Engine engine(served);
  const std::vector<int> ids(tokens.begin(), tokens.end());
  const Matrix<float>& got = engine.forward_all(ids);
  double err = 0, scale = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t)
    for (std::size_t i = 0; i < mc.vocab; ++i) {
      err = std::max(err, static_cast<double>(std::fabs(got(t, i) - want(t, i))));
      scale = std::max(scale, static_cast<double>(std::fabs(want(t, i))));
    }

  // Greedy generation from a short prompt, stopping at the context (the engine's limit).
  const std::string prompt = "The ";
  engine.reset();
  std::vector<int> p(prompt.begin(), prompt.end());
  std::span<const float> logits = engine.prefill(p);
  std::string generated;
  const std::size_t budget = std::min(o.tokens, mc.context - p.size());
  for (std::size_t i = 0; i < budget; ++i) {
    const int next = static_cast<int>(inference::Sampler::argmax(logits));
    generated.push_back(static_cast<char>(next));
    if (i + 1 < budget) logits = engine.step(next);
  }
  std::cout << "generated: " << nlohmann::json(generated).dump(-1, ' ', true,
                                                                   nlohmann::json::error_handler_t::replace)
            << "\n";
  const nlohmann::json report = {{"variant", TernaryKMeansPQuant::kName},
                                 {"steps", o.steps},
                                 {"final_loss", loss},
                                 {"parity_max_abs_err", err},
                                 {"parity_max_abs_logit", scale},
                                 {"generated_tokens", generated.size()},
                                 {"model_bytes", bytes},
                                 {"model", o.out}};
  std::cout << report.dump() << std::endl;
  // Train = serve: the k-means and per-row paths reproduce the training forward.
  return err <= 1e-5 * std::max(1.0, scale) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"custom_variant: train, export, reload and serve a variant defined in this file"};
  Options o;
  app.add_option("--data", o.data, "train on this file instead of the generated corpus")
      ->check(CLI::ExistingFile);
  app.add_option("--steps", o.steps, "training steps")->check(CLI::Range(1, 100000));
  app.add_option("--tokens", o.tokens, "tokens to generate (at most the context)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--out", o.out, "exported model file");
  app.add_option("--seed", o.seed, "model and data seed");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "custom_variant: " << e.what() << "\n";
    return 1;
  }
}
