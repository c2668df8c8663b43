// train_lm: trains a byte-level decoder-only LM as one of the paper's variants and reports
// validation perplexity over the whole held-out tail.
//
//   train_lm --variant pquant --experts 4 --r 32 --steps 300 [--data FILE] [--json]
//
// Without --data it trains on the corpus this program generates itself (corpus.hpp). The last
// line of stdout with --json is one JSON object: variant, val_loss, val_ppl, train_tokens_per_s,
// params_total, params_active, steps (and more). See docs/training.md.
#include <oneapi/tbb/global_control.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "corpus.hpp"
#include "pquant/model.hpp"
#include "pquant/training.hpp"

namespace {

struct Options {
  std::string variant = "pquant";
  std::size_t experts = 1, r = 32;
  std::size_t d_model = 128, layers = 4, heads = 4, d_ff = 384, context = 128;
  std::size_t batch = 16, steps = 300, warmup = 30;
  std::optional<float> lr;  // default: 3e-3 (quantized) / 1e-3 (fp)
  std::string schedule = "two-phase";
  float weight_decay = 0.1f;
  double init_std = 0.0;  // fan-in (ModelConfig)
  double embed_std = -1;
  std::string data;
  std::size_t corpus_bytes = 1 << 20;
  std::uint64_t seed = 1;
  std::size_t threads = 0;  // 0: all cores
  std::string save, resume;
  std::size_t stop_at = 0;    // stop (and --save) after this step, to be resumed later
  std::size_t log_every = 0;  // 0: about ten progress lines per run
  bool json = false;
};

[[noreturn]] void usage(const std::string& error) {
  if (!error.empty()) std::cerr << "train_lm: " << error << "\n\n";
  std::cerr <<
      R"(usage: train_lm [options]
  --variant fp|bitnet|bitnet158|pquant   model variant (default pquant)
  --experts N        pQuant INT8 experts (1..8, default 1)
  --r R              width of each INT8 expert (default 32)
  --d-model D --layers L --heads H --d-ff F --context T   model sizes (128, 4, 4, 384, 128)
  --batch B          sequences per step (16)
  --steps S          optimizer steps (300)
  --lr LR            peak learning rate (3e-3; 1e-3 for fp)
  --warmup W         warm-up steps (30)
  --schedule two-phase|cosine|constant   (two-phase)
  --weight-decay WD  phase-1 weight decay (0.1)
  --init-std S       0: fan-in scaled weights, N(0,1) embeddings (default); S > 0:
                     weights and embeddings ~ N(0, S^2), GPT-2 output scaling
  --embed-std S      embedding table ~ N(0, S^2) (overrides --init-std for it)
  --data FILE        train on FILE (last 10% held out); default: the generated corpus
  --corpus-bytes N   size of the generated corpus (1048576)
  --seed S           initialisation and data seed (1)
  --threads N        worker threads (default: all cores)
  --save FILE        write a checkpoint at the end (or at --stop-at)
  --resume FILE      continue from a checkpoint written with the same options
  --stop-at S        stop after step S (with --save: to resume later)
  --log-every N      progress line every N steps
  --json             print a JSON summary as the last line of stdout
)";
  std::exit(error.empty() ? 0 : 2);
}

template <class T>
T parse_number(std::string_view flag, std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    usage("option " + std::string(flag) + " expects a number, got '" + std::string(text) + "'");
  return value;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") usage("");
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) usage("option " + std::string(a) + " needs a value");
    const std::string_view v = argv[++i];
    auto size = [&] { return parse_number<std::size_t>(a, v); };
    if (a == "--variant")
      o.variant = v;
    else if (a == "--experts")
      o.experts = size();
    else if (a == "--r")
      o.r = size();
    else if (a == "--d-model")
      o.d_model = size();
    else if (a == "--layers")
      o.layers = size();
    else if (a == "--heads")
      o.heads = size();
    else if (a == "--d-ff")
      o.d_ff = size();
    else if (a == "--context")
      o.context = size();
    else if (a == "--batch")
      o.batch = size();
    else if (a == "--steps")
      o.steps = size();
    else if (a == "--warmup")
      o.warmup = size();
    else if (a == "--lr")
      o.lr = parse_number<float>(a, v);
    else if (a == "--schedule")
      o.schedule = v;
    else if (a == "--weight-decay")
      o.weight_decay = parse_number<float>(a, v);
    else if (a == "--init-std")
      o.init_std = parse_number<double>(a, v);
    else if (a == "--embed-std")
      o.embed_std = parse_number<double>(a, v);
    else if (a == "--data")
      o.data = v;
    else if (a == "--corpus-bytes")
      o.corpus_bytes = size();
    else if (a == "--seed")
      o.seed = parse_number<std::uint64_t>(a, v);
    else if (a == "--threads")
      o.threads = size();
    else if (a == "--save")
      o.save = v;
    else if (a == "--resume")
      o.resume = v;
    else if (a == "--stop-at")
      o.stop_at = size();
    else if (a == "--log-every")
      o.log_every = size();
    else
      usage("unknown option " + std::string(a));
  }
  if (o.variant != "fp" && o.variant != "bitnet" && o.variant != "bitnet158" &&
      o.variant != "pquant")
    usage("--variant must be fp, bitnet, bitnet158 or pquant, got '" + o.variant + "'");
  if (o.steps == 0) usage("--steps must be > 0");
  if (o.warmup >= o.steps) o.warmup = o.steps / 10;
  if (!o.lr) o.lr = o.variant == "fp" ? 1e-3f : 3e-3f;
  if (o.log_every == 0) o.log_every = std::max<std::size_t>(1, o.steps / 10);
  return o;
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// The options that define the model and the data stream: a checkpoint must match them.
std::string identity(const Options& o) {
  std::ostringstream s;
  s << "{\"variant\":\"" << o.variant << "\",\"experts\":" << o.experts << ",\"r\":" << o.r
    << ",\"d_model\":" << o.d_model << ",\"layers\":" << o.layers << ",\"heads\":" << o.heads
    << ",\"d_ff\":" << o.d_ff << ",\"context\":" << o.context << ",\"batch\":" << o.batch
    << ",\"steps\":" << o.steps << ",\"lr\":" << *o.lr << ",\"warmup\":" << o.warmup
    << ",\"schedule\":\"" << o.schedule << "\",\"init_std\":" << o.init_std
    << ",\"seed\":" << o.seed << ",\"data\":\"" << json_escape(o.data) << "\"}";
  return s.str();
}

std::string format_metrics(const pquant::ModelMetrics& m, std::optional<double> flip) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  if (flip) s << " | flip " << 100.0 * *flip << "%";
  if (!m.alpha.empty()) {
    s << " | alpha/beta";
    for (std::size_t l = 0; l < m.alpha.size(); ++l) s << " " << m.alpha[l] << "/" << m.beta[l];
  }
  if (!m.router_usage.empty() && m.router_usage[0].size() > 1) {
    s.precision(0);
    s << " | experts%";
    for (const auto& layer : m.router_usage) {
      double total = 0;
      for (double c : layer) total += c;
      s << " [";
      for (std::size_t e = 0; e < layer.size(); ++e)
        s << (e ? " " : "") << (total > 0 ? 100.0 * layer[e] / total : 0.0);
      s << "]";
    }
  }
  return s.str();
}

template <class Model>
int run(const Options& o, const pquant::ModelConfig& mc, const pquant::ByteDataset& data) {
  Model model(mc, o.seed);
  pquant::TrainerConfig tc;
  tc.batch = o.batch;
  tc.seq_len = o.context;
  tc.schedule = pquant::make_schedule(o.schedule, *o.lr, o.warmup, o.steps, o.weight_decay);
  tc.data_seed = o.seed ^ 0x9e3779b97f4a7c15ULL;
  pquant::Trainer trainer(model, data, tc);
  const std::string meta = identity(o);
  if (!o.resume.empty()) {
    const std::string saved = trainer.resume(o.resume);
    if (saved != meta) {
      std::cerr << "train_lm: --resume " << o.resume << " was written with other options:\n  "
                << saved << "\nthis run:\n  " << meta << "\n";
      return 2;
    }
    std::cout << "resumed from " << o.resume << " at step " << trainer.step_index() << "\n";
  }
  std::cout << "train_lm: " << Model::variant_name() << " | d_model " << mc.d_model << " | layers "
            << mc.layers << " | heads " << mc.heads << " | d_ff " << mc.d_ff;
  if (o.variant == "pquant") std::cout << " | experts " << mc.experts << " x r " << mc.r;
  std::cout << " | context " << mc.context << " | batch " << o.batch << " | params "
            << model.parameter_count() << " (active " << model.active_parameter_count() << ")"
            << " | threads " << o.threads << "\n"
            << "data: " << (o.data.empty() ? std::string("generated corpus") : o.data) << ", "
            << data.train_size() << " training bytes, " << data.val_size()
            << " held out | schedule " << o.schedule << ", peak lr " << *o.lr << ", warm-up "
            << o.warmup << ", " << o.steps << " steps\n";

  pquant::FlipRatio flips;
  std::vector<std::uint8_t> codes;
  model.one_bit_codes(codes);
  flips.update(codes);
  double window_loss = 0, window_seconds = 0, train_seconds = 0;
  std::size_t window_steps = 0, window_tokens = 0, trained_tokens = 0;
  const std::size_t last = o.stop_at ? std::min(o.stop_at, o.steps) : o.steps;
  while (trainer.step_index() < last) {
    const pquant::StepReport r = trainer.step();
    window_loss += r.loss;
    window_seconds += r.seconds;
    window_tokens += r.tokens;
    ++window_steps;
    train_seconds += r.seconds;
    trained_tokens += r.tokens;
    if ((r.step + 1) % o.log_every == 0 || r.step + 1 == last) {
      model.one_bit_codes(codes);
      const double loss = window_loss / static_cast<double>(window_steps);
      char line[256];
      std::snprintf(line, sizeof line,
                    "step %5zu/%zu | loss %.4f | ppl %7.3f | lr %.2e | wd %.2f | gnorm %.2f | "
                    "%.0f tok/s",
                    r.step + 1, o.steps, loss, std::exp(loss), static_cast<double>(r.lr),
                    static_cast<double>(r.weight_decay), r.grad_norm,
                    static_cast<double>(window_tokens) / window_seconds);
      std::cout << line << format_metrics(model.metrics(), flips.update(codes)) << std::endl;
      window_loss = window_seconds = 0;
      window_steps = window_tokens = 0;
    }
  }
  if (!o.save.empty()) {
    trainer.save(o.save, meta);
    std::cout << "saved checkpoint " << o.save << " at step " << trainer.step_index() << "\n";
  }
  const auto e0 = std::chrono::steady_clock::now();
  const pquant::EvalReport ev = trainer.evaluate();
  const double eval_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
  const double tps = train_seconds > 0 ? static_cast<double>(trained_tokens) / train_seconds : 0;
  char line[256];
  std::snprintf(line, sizeof line,
                "validation: loss %.4f | ppl %.3f over %zu held-out bytes (%.1f s) | training %.0f "
                "tokens/s",
                ev.loss, ev.ppl, ev.tokens, eval_seconds, tps);
  std::cout << line << "\n";
  if (o.json) {
    std::ostringstream j;
    j.precision(6);
    j << "{\"variant\":\"" << o.variant << "\",\"model\":\"" << Model::variant_name()
      << "\",\"val_loss\":" << ev.loss << ",\"val_ppl\":" << ev.ppl
      << ",\"train_tokens_per_s\":" << tps << ",\"params_total\":" << model.parameter_count()
      << ",\"params_active\":" << model.active_parameter_count()
      << ",\"steps\":" << trainer.step_index() << ",\"experts\":" << mc.experts << ",\"r\":" << mc.r
      << ",\"d_model\":" << mc.d_model << ",\"layers\":" << mc.layers << ",\"heads\":" << mc.heads
      << ",\"d_ff\":" << mc.d_ff << ",\"context\":" << mc.context << ",\"batch\":" << o.batch
      << ",\"lr\":" << *o.lr << ",\"threads\":" << o.threads << ",\"val_tokens\":" << ev.tokens
      << ",\"data\":\"" << json_escape(o.data.empty() ? "generated" : o.data) << "\"}";
    std::cout << j.str() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    if (o.threads == 0)
      o.threads = static_cast<std::size_t>(
          tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, o.threads);
    const pquant::ByteDataset data =
        o.data.empty() ? pquant::ByteDataset(train_lm::generate_corpus(o.corpus_bytes))
                       : pquant::ByteDataset::from_file(o.data);
    pquant::ModelConfig mc;
    mc.vocab = pquant::kByteVocabulary;
    mc.d_model = o.d_model;
    mc.layers = o.layers;
    mc.heads = o.heads;
    mc.d_ff = o.d_ff;
    mc.context = o.context;
    mc.experts = o.experts;
    mc.r = o.r;
    mc.init_std = o.init_std;
    mc.embed_std = o.embed_std;
    if (o.variant == "fp") return run<pquant::FP>(o, mc, data);
    if (o.variant == "bitnet") return run<pquant::BitNet>(o, mc, data);
    if (o.variant == "bitnet158") return run<pquant::BitNet158>(o, mc, data);
    return run<pquant::PQuant<>>(o, mc, data);
  } catch (const pquant::Error& e) {
    std::cerr << "train_lm: " << e.what() << "\n";
    return 1;
  }
}
