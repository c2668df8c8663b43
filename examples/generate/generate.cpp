// generate: run a packed pquant model (safetensors) on a prompt, or export a train_lm checkpoint.
//
//   generate --model FILE --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--top-p P]
//            [--seed S] [--threads N] [--mmap|--read] [--json]
//   generate --export CKPT --model FILE [--prompt TEXT ...]   export a train_lm checkpoint first
//
// Tokens are bytes (byte-level vocabulary, as train_lm). The prompt goes through the batched
// prefill path, then tokens are decoded one at a time with the KV cache. Generation stops at
// --tokens or when the context is full (a note on stderr says so: the KV cache holds at most the
// model's context). With --json the last stdout line is a JSON object.
#include <tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/sampler.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/checkpoint.hpp"

namespace {

using namespace pquant;
using namespace pquant::inference;

struct Options {
  std::string model, prompt = "The ", export_from;
  std::size_t tokens = 64, threads = 1;
  SamplerConfig sampler;
  bool json = false, mmap = true;
};

[[noreturn]] void usage(const std::string& error) {
  std::cerr
      << "generate: " << error << "\n"
      << "usage: generate --model FILE [--prompt TEXT] [--tokens N] [--temperature T]\n"
         "                [--top-k K] [--top-p P] [--seed S] [--threads N] [--read] [--json]\n"
         "       generate --export CHECKPOINT --model OUT.safetensors [...]\n"
         "Generation stops at --tokens or when the model's context is full (said on stderr).\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("option " + a + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& v) {
      try {
        std::size_t pos = 0;
        const double d = std::stod(v, &pos);
        if (pos != v.size()) throw std::invalid_argument(v);
        return d;
      } catch (const std::exception&) {
        usage("option " + a + " needs a number, got '" + v + "'");
      }
    };
    auto count = [&](const std::string& v) {
      const double d = number(v);
      if (d < 0 || d != static_cast<double>(static_cast<std::size_t>(d)))
        usage("option " + a + " needs a non-negative integer, got '" + v + "'");
      return static_cast<std::size_t>(d);
    };
    if (a == "--model")
      o.model = value();
    else if (a == "--prompt")
      o.prompt = value();
    else if (a == "--export")
      o.export_from = value();
    else if (a == "--tokens")
      o.tokens = count(value());
    else if (a == "--temperature")
      o.sampler.temperature = static_cast<float>(number(value()));
    else if (a == "--top-k")
      o.sampler.top_k = count(value());
    else if (a == "--top-p")
      o.sampler.top_p = static_cast<float>(number(value()));
    else if (a == "--seed")
      o.sampler.seed = count(value());
    else if (a == "--threads")
      o.threads = count(value());
    else if (a == "--json")
      o.json = true;
    else if (a == "--read")
      o.mmap = false;
    else if (a == "--mmap")
      o.mmap = true;
    else if (a == "--help" || a == "-h")
      usage("help");
    else
      usage("unknown option '" + a + "'");
  }
  if (o.model.empty()) usage("--model is required");
  if (o.threads == 0) usage("--threads must be >= 1");
  return o;
}

/// The JSON meta string of a train_lm checkpoint (layout in pquant/training/checkpoint.hpp:
/// "PQCKPT01", u32 version, u64 length, meta bytes).
nlohmann::json checkpoint_meta(const AlignedBuffer<std::uint8_t>& bytes, const std::string& path) {
  require<FormatError>(bytes.size() >= 20 && std::memcmp(bytes.data(), "PQCKPT01", 8) == 0,
                       "generate: '", path, "' is not a pquant checkpoint");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data() + 12, 8);
  require<FormatError>(n <= bytes.size() - 20, "generate: '", path,
                       "' has a truncated meta string");
  const std::string meta(reinterpret_cast<const char*>(bytes.data()) + 20, n);
  nlohmann::json j = nlohmann::json::parse(meta, nullptr, false);
  require<FormatError>(j.is_object() && j.contains("variant"), "generate: checkpoint '", path,
                       "' has no train_lm configuration in its meta data");
  return j;
}

template <class Model>
std::uint64_t export_checkpoint(const ModelConfig& mc, const std::string& ckpt,
                                const std::string& out) {
  Model model(mc, 0);
  AdamW opt(model.store());
  (void)load_checkpoint(ckpt, model.store(), opt);
  const PackedModel packed = export_model(model);
  const std::uint64_t bytes = save_model(packed, out);
  std::cout << "exported " << ckpt << " -> " << out << "\n";
  print_accounting(std::cout, packed, bytes);
  return bytes;
}

void export_from(const Options& o) {
  const AlignedBuffer<std::uint8_t> bytes = io::read_file(o.export_from);
  const nlohmann::json j = checkpoint_meta(bytes, o.export_from);
  ModelConfig mc;
  try {
    mc.d_model = j.at("d_model").get<std::size_t>();
    mc.layers = j.at("layers").get<std::size_t>();
    mc.heads = j.at("heads").get<std::size_t>();
    mc.d_ff = j.at("d_ff").get<std::size_t>();
    mc.context = j.at("context").get<std::size_t>();
    mc.experts = j.at("experts").get<std::size_t>();
    mc.r = j.at("r").get<std::size_t>();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(std::string("pquant: generate: bad checkpoint configuration: ") + e.what());
  }
  const std::string v = j.at("variant").get<std::string>();
  if (v == "fp")
    export_checkpoint<FP>(mc, o.export_from, o.model);
  else if (v == "bitnet")
    export_checkpoint<BitNet>(mc, o.export_from, o.model);
  else if (v == "bitnet158")
    export_checkpoint<BitNet158>(mc, o.export_from, o.model);
  else if (v == "pquant")
    export_checkpoint<PQuant<>>(mc, o.export_from, o.model);
  else
    throw FormatError("pquant: generate: unknown variant '" + v + "' in the checkpoint");
}

int run(const Options& o) {
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, o.threads);
  if (!o.export_from.empty()) export_from(o);
  const std::uint64_t file_bytes = std::filesystem::file_size(o.model);
  const PackedModel model = load_model(o.model, o.mmap ? io::LoadMode::kMap : io::LoadMode::kRead);
  const ModelStructure& c = model.structure;
  const ModelAccounting acc = model.accounting();
  std::vector<int> prompt;
  for (unsigned char ch : o.prompt) {
    require<ValueError>(ch < c.vocab, "generate: prompt byte ", int(ch),
                        " is outside the model's vocabulary of ", c.vocab);
    prompt.push_back(ch);
  }
  require<ValueError>(!prompt.empty(), "generate: --prompt must be non-empty");
  require<ValueError>(prompt.size() < c.context, "generate: the prompt has ", prompt.size(),
                      " tokens, the model's context is ", c.context);
  Engine engine(model);
  Sampler sampler(o.sampler);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::span<const float> logits = engine.prefill(prompt);
  const auto t1 = clock::now();
  std::string text;
  std::size_t generated = 0, steps = 0;
  while (generated < o.tokens) {
    const int next = sampler.sample(logits);
    text.push_back(static_cast<char>(next));
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
                              {"text", text}};
    // Generated bytes need not be UTF-8: invalid sequences become U+FFFD in the JSON.
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const pquant::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "generate: " << e.what() << "\n";
    return 1;
  }
}
