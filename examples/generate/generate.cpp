// generate: run a packed pquant model (safetensors) on a prompt, or export a train_lm checkpoint.
//
//   generate --model FILE --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--top-p P]
//            [--seed S] [--threads N] [--mmap|--read] [--json]
//   generate --export CKPT --model FILE [--prompt TEXT ...]   export a train_lm checkpoint first
//
// Every flag, its range and the JSON fields are listed in docs/tools.md.
//
// Tokens are bytes (byte-level vocabulary, as train_lm), or the pieces of a SentencePiece model
// with --tokenizer (a model trained on train_lm --tokens; tokenizer.hpp). The prompt goes through the batched
// prefill path, then tokens are decoded one at a time with the KV cache. Generation stops at
// --tokens or when the model's context is full (the KV cache holds at most the context; a note on
// stderr says so). Any packed model file runs, whatever variant produced it: the file describes
// its structure. With --json the last stdout line is a JSON object.
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/cli.hpp"
#include "../train_lm/run_config.hpp"
#include "tokenizer.hpp"
#include "pquant/inference/engine.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/sampler.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/checkpoint.hpp"

namespace {

using namespace pquant;
using namespace pquant::inference;

struct Options {
  std::string model, prompt = "The ", export_from;
  std::string tokenizer;  // SentencePiece model; empty: bytes are tokens
  std::size_t tokens = 64, threads = 1;
  SamplerConfig sampler;
  bool json = false, read = false, map = false;  // map: the default unless --read
};

/// Declares every flag once: name, type, default, range, help (docs/tools.md lists them).
void declare(CLI::App& app, Options& o) {
  using cli::in_range;
  // A repeated flag overrides the earlier one (scripts append to a base command line).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--model", o.model, "packed model file (safetensors); with --export: the output")
      ->required();
  app.add_option("--prompt", o.prompt, "prompt text (bytes are tokens unless --tokenizer)")
      ->capture_default_str();
  app.add_option("--tokenizer", o.tokenizer,
                 "SentencePiece model of a --tokens model (tokenize_bpe.py's tokenizer.model): "
                 "encodes the prompt, decodes the output");
  app.add_option("--export", o.export_from,
                 "export this train_lm checkpoint to --model first, then generate");
  app.add_option("--tokens", o.tokens, "tokens to generate (stops at the model's context, said on stderr)")
      ->transform(in_range<std::size_t>(0, std::size_t{1} << 24))
      ->capture_default_str();
  app.add_option("--temperature", o.sampler.temperature, "sampling temperature (0: greedy)")
      ->transform(in_range<float>(0.0f, 100.0f))
      ->capture_default_str();
  app.add_option("--top-k", o.sampler.top_k, "sample among the k most likely tokens (0: all)")
      ->transform(in_range<std::size_t>(0, std::size_t{1} << 24))
      ->capture_default_str();
  app.add_option("--top-p", o.sampler.top_p, "nucleus sampling mass")
      ->check(cli::above<float>(0.0f, 1.0f))
      ->capture_default_str();
  app.add_option("--seed", o.sampler.seed, "sampling seed")
      ->transform(in_range<std::uint64_t>(0, std::numeric_limits<std::uint64_t>::max()))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "worker threads")
      ->transform(in_range<std::size_t>(1, 4096))
      ->capture_default_str();
  CLI::Option* read = app.add_flag("--read", o.read, "read the model file into memory");
  app.add_flag("--mmap", o.map, "memory-map the model file (the default)")->excludes(read);
  app.add_flag("--json", o.json, "print a JSON summary as the last line of stdout");
}

/// Exports a train_lm checkpoint: the model's shape comes from the checkpoint's meta (checked
/// field by field before anything is allocated), the weights through the checkpoint reader.
void export_from(const Options& o) {
  const CheckpointReader ckpt = CheckpointReader::open(o.export_from);
  const train_lm::ModelSpec spec = train_lm::model_from_json(
      nlohmann::json::parse(ckpt.state().meta, nullptr, false), o.export_from);
  // The configuration must not ask for more weights than the file holds (checked before the model
  // is allocated: a crafted configuration cannot make it allocate more than the file's size).
  const double needed = train_lm::min_parameters(spec.variant, spec.config);
  require<FormatError>(needed <= static_cast<double>(ckpt.parameter_elements()), "'",
                       o.export_from, "': its configuration needs at least ", needed,
                       " weights, the file holds ", ckpt.parameter_elements());
  visit_variant(spec.variant, [&]<class V>(std::type_identity<V>) {
    DecoderModel<V> model(spec.config, 0);
    AdamW opt(model.store());
    ckpt.restore(model.store(), opt);
    const PackedModel packed = export_model(model);
    const std::uint64_t bytes = save_model(packed, o.model);
    std::cout << "exported " << o.export_from << " -> " << o.model << "\n";
    print_accounting(std::cout, packed, bytes);
  });
}

/// load_model, with a message that says what to do when the file is a training checkpoint.
PackedModel load_packed_model(const std::string& path, io::LoadMode mode) {
  try {
    return load_model(path, mode);
  } catch (const FormatError&) {
    bool checkpoint = false;
    try {
      (void)CheckpointReader::open(path);
      checkpoint = true;
    } catch (const Error&) {
    }
    if (!checkpoint) throw;
    throw FormatError("pquant: '" + path +
                      "' is a training checkpoint, not a packed model; export it first: "
                      "generate --export " + path + " --model MODEL.safetensors");
  }
}

int run(const Options& o) {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, o.threads);
  if (!o.export_from.empty()) export_from(o);
  const PackedModel model =
      load_packed_model(o.model, o.read ? io::LoadMode::kRead : io::LoadMode::kMap);
  const std::uint64_t file_bytes = std::filesystem::file_size(o.model);
  const ModelStructure& c = model.structure;
  const ModelAccounting acc = model.accounting();
  const generate::Tokenizer tokenizer =
      o.tokenizer.empty() ? generate::Tokenizer() : generate::Tokenizer(o.tokenizer, c.vocab);
  const std::vector<int> prompt = tokenizer.encode(o.prompt);
  for (int id : prompt)
    require<ValueError>(static_cast<std::size_t>(id) < c.vocab, "generate: prompt ",
                        tokenizer.bytes() ? "byte " : "token ", id,
                        " is outside the model's vocabulary of ", c.vocab);
  require<ValueError>(!prompt.empty(), "generate: --prompt must be non-empty");
  require<ValueError>(prompt.size() < c.context, "generate: the prompt has ", prompt.size(),
                      " tokens, the model's context is ", c.context);
  Engine engine(model);
  Sampler sampler(o.sampler);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::span<const float> logits = engine.prefill(prompt);
  const auto t1 = clock::now();
  std::vector<int> ids;
  std::size_t generated = 0, steps = 0;
  while (generated < o.tokens) {
    const int next = sampler.sample(logits);
    ids.push_back(next);
    ++generated;
    if (generated == o.tokens) break;
    if (engine.position() == c.context) {  // the policy: stop at the context, and say so
      std::fprintf(stderr,
                   "generate: stopped after %zu of %zu tokens: the model's context of %zu "
                   "positions is full\n",
                   generated, o.tokens, c.context);
      break;
    }
    logits = engine.step(next);
    ++steps;
  }
  const auto t2 = clock::now();
  const std::string text = tokenizer.decode(ids);
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  const double prefill_tps = static_cast<double>(prompt.size()) / prefill_s;
  const double decode_tps = steps == 0 ? 0.0 : static_cast<double>(steps) / decode_s;
  std::cout << o.prompt << text << "\n";
  std::fprintf(stdout,
               "[%s, %zu layers, d %zu] prompt %zu tokens (%.1f tok/s prefill), %zu generated "
               "(%.1f tok/s decode); file %llu bytes (FP32: %zu), %.3f bits/weight (%.3f in linear "
               "layers), %zu weight bytes/token\n",
               c.label.c_str(), c.layers(), c.d_model, prompt.size(),
               prefill_tps, generated, decode_tps, static_cast<unsigned long long>(file_bytes),
               acc.fp32_bytes, acc.bits_per_weight(), acc.linear_bits_per_weight(),
               acc.active_bytes_per_token);
  if (o.json) {
    const nlohmann::json j = {{"variant", c.label},
                              {"prompt_tokens", prompt.size()},
                              {"generated_tokens", generated},
                              {"prefill_tokens_per_s", prefill_tps},
                              {"decode_tokens_per_s", decode_tps},
                              {"model_bytes", file_bytes},
                              {"fp32_bytes", acc.fp32_bytes},
                              {"bits_per_weight", acc.bits_per_weight()},
                              {"linear_bits_per_weight", acc.linear_bits_per_weight()},
                              {"weight_bytes_per_token", acc.active_bytes_per_token},
                              {"threads", o.threads},
                              {"text", text},
                              {"token_ids", ids}};
    // Generated bytes need not be UTF-8: invalid sequences become U+FFFD in the JSON.
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Runs a packed pquant model (safetensors) on a prompt, or exports a train_lm "
               "checkpoint first (docs/tools.md).",
               "generate");
  Options o;
  declare(app, o);
  return cli::run(app, argc, argv, [] {}, [&] { return run(o); });
}
