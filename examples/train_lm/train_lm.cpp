// train_lm: trains a byte-level decoder-only LM as one of the paper's variants and reports
// validation perplexity over the whole held-out tail.
//
//   train_lm --variant pquant --experts 4 --r 32 --steps 300 [--data FILE] [--json]
//   train_lm ... --tokens train.bin --vocab 4096     pre-tokenized uint16 ids (token_file.hpp)
//
// Without --data or --tokens it trains on the corpus this program generates itself (corpus.hpp).
// The last line of stdout with --json is one JSON object: variant, val_loss, val_ppl,
// train_tokens_per_s, params_total, params_active, steps (and more). Every flag, its range and the
// JSON fields are listed in docs/tools.md; `train_lm --help` prints the same.
//
//   mpirun -np 2 train_lm --distributed ...   data parallel over MPI (docs/distributed.md): --batch
//                                             is the global batch; rank 0 prints and saves.
#include <oneapi/tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "../common/cli.hpp"
#include "corpus.hpp"
#include "run_config.hpp"
#include "token_file.hpp"
#include "pquant/model.hpp"
#include "pquant/model/ablation_variants.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/training.hpp"

#ifdef PQUANT_TRAIN_LM_MPI
#include "pquant/distributed.hpp"
#endif

namespace {

struct Options {
  std::string variant = "pquant";
  std::size_t experts = 1, r = 32;
  std::size_t d_model = 128, layers = 4, heads = 4, d_ff = 384, context = 128;
  std::size_t batch = 16, steps = 300, warmup = 30;
  float lr = 0;  // 0 until parsed: 3e-3 (quantized) / 1e-3 (fp) unless --lr is given
  std::string schedule = "two-phase";
  float weight_decay = 0.1f;
  float phase2_end = 0.0f;  // two-phase: the rate phase 2 decays to (at --steps), share of --lr
  bool fused_qkv = false;   // Q, K, V as one projection with one 1-bit scale
  bool block_norm = false;  // a block pre-norm in series with the sublayers' own
  double init_std = 0.0;  // fan-in (ModelConfig)
  double embed_std = -1;  // < 0: follow --init-std
  std::string fan_in = "uniform";  // distribution of fan-in scaled block weights
  float alpha_init = 1.0f, beta_init = 1.0f;  // pquant branch scales at step 0
  std::string data;
  std::string tokens;     // pre-tokenized uint16 ids instead of --data's bytes
  std::size_t vocab = 0;  // with --tokens: every id is below it
  std::size_t corpus_bytes = 1 << 20;
  std::uint64_t seed = 1;
  std::size_t threads = 0;  // 0: all cores
  std::string save, resume;
  std::string save_init;      // checkpoint of the initial state (step 0), before training
  std::size_t stop_at = 0;    // stop (and --save) after this step, to be resumed later
  std::size_t log_every = 0;  // 0: about ten progress lines per run
  std::size_t save_every = 0;  // 0: only at the end (or --stop-at)
  std::string on_divergence = "stop";
  double max_loss = pquant::DivergenceGuard{}.max_loss;
  double max_grad_norm = pquant::DivergenceGuard{}.max_grad_norm;
  bool json = false;
  bool distributed = false;
};

using train_lm::kMaxExperts;
using train_lm::kMaxLayers;
using train_lm::kMaxSteps;
using train_lm::kMaxWidth;

CLI::Validator one_of(const std::vector<std::string_view>& names, const std::string& text) {
  return CLI::Validator(
      [names, text](std::string& v) -> std::string {
        for (std::string_view n : names)
          if (v == n) return {};
        return "must be " + text + ", got '" + v + "'";
      },
      text);
}

/// Declares every flag once: name, type, default, range, help. New flags go here.
void declare(CLI::App& app, Options& o) {
  using cli::in_range;
  // A repeated flag overrides the earlier one (scripts append to a base command line).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  const std::string variants = pquant::StudyVariants::names_text();
  app.add_option("--variant", o.variant, "model variant: " + variants)
      ->check(one_of(pquant::StudyVariants::names(), variants))
      ->capture_default_str();
  app.add_option("--experts", o.experts, "pQuant INT8 experts")
      ->transform(in_range<std::size_t>(1, kMaxExperts))
      ->capture_default_str();
  app.add_option("--r", o.r, "width of each INT8 expert (pquant; below --d-ff)")
      ->transform(in_range<std::size_t>(1, kMaxWidth))
      ->capture_default_str();
  app.add_option("--d-model", o.d_model, "model width")
      ->transform(in_range<std::size_t>(2, kMaxWidth))
      ->capture_default_str();
  app.add_option("--layers", o.layers, "transformer blocks")
      ->transform(in_range<std::size_t>(1, kMaxLayers))
      ->capture_default_str();
  app.add_option("--heads", o.heads, "attention heads (must divide --d-model into even widths)")
      ->transform(in_range<std::size_t>(1, kMaxWidth / 2))
      ->capture_default_str();
  app.add_option("--d-ff", o.d_ff, "FFN hidden width")
      ->transform(in_range<std::size_t>(1, kMaxWidth))
      ->capture_default_str();
  app.add_option("--context", o.context, "training sequence length (and the model's context)")
      ->transform(in_range<std::size_t>(1, kMaxWidth))
      ->capture_default_str();
  app.add_option("--batch", o.batch, "sequences per step")
      ->transform(in_range<std::size_t>(1, kMaxWidth))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "optimizer steps")
      ->transform(in_range<std::size_t>(1, kMaxSteps))
      ->capture_default_str();
  app.add_option("--lr", o.lr, "peak learning rate (default 3e-3; 1e-3 for fp)")
      ->check(cli::above<float>(0.0f, 100.0f));
  app.add_option("--warmup", o.warmup, "warm-up steps, below --steps (default 30; steps/10 when --steps <= 30)")
      ->transform(in_range<std::size_t>(0, kMaxSteps));
  app.add_option("--schedule", o.schedule, "learning-rate schedule: two-phase, cosine or constant")
      ->check(one_of({"two-phase", "cosine", "constant"}, "two-phase, cosine or constant"))
      ->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "phase-1 (peak) weight decay")
      ->transform(in_range<float>(0.0f, 1.0f))
      ->capture_default_str();
  app.add_option("--phase2-end", o.phase2_end,
                 "two-phase: where phase 2 ends (at --steps), as a share of --lr (phase 2 "
                 "decays from 0.4 to it)")
      ->transform(in_range<float>(0.0f, 0.4f))
      ->capture_default_str();
  app.add_flag("--fused-qkv", o.fused_qkv,
               "Q, K and V as one [3d x d] projection: one quantization scale for the three");
  app.add_flag("--block-norm", o.block_norm,
               "a LLaMA block pre-norm before each sublayer, in series with its own (training "
               "only: such models cannot be exported)");
  app.add_option("--init-std", o.init_std,
                 "0: fan-in scaled weights, N(0,1) embeddings; S > 0: weights and embeddings "
                 "~ N(0, S^2), GPT-2 output scaling")
      ->transform(in_range<double>(0.0, 10.0))
      ->capture_default_str();
  app.add_option("--embed-std", o.embed_std,
                 "embedding table ~ N(0, S^2) (overrides --init-std for it)")
      ->transform(in_range<double>(0.0, 10.0));
  app.add_option("--fan-in", o.fan_in,
                 "with --init-std 0: block weights ~ U(+-1/sqrt(fan_in)) (uniform) or "
                 "N(0, 1/fan_in) (normal)")
      ->check(one_of({"uniform", "normal"}, "uniform or normal"))
      ->capture_default_str();
  app.add_option("--alpha-init", o.alpha_init, "pquant: initial scale of the INT8 branch")
      ->transform(in_range<float>(0.0f, 100.0f))
      ->capture_default_str();
  app.add_option("--beta-init", o.beta_init, "pquant: initial scale of the 1-bit branch")
      ->transform(in_range<float>(0.0f, 100.0f))
      ->capture_default_str();
  CLI::Option* data = app.add_option(
      "--data", o.data, "train on FILE (last 10% held out); default: generated corpus");
  app.add_option("--tokens", o.tokens,
                 "train on pre-tokenized FILE: little-endian uint16 ids, raw (nanoGPT) or with "
                 "llm.c's 1024-byte header; needs --vocab (last 10% held out)")
      ->excludes(data);
  app.add_option("--vocab", o.vocab, "with --tokens: the vocabulary size (every id is below it)")
      ->transform(in_range<std::size_t>(2, 65536));
  app.add_option("--corpus-bytes", o.corpus_bytes, "size of the generated corpus")
      ->transform(in_range<std::size_t>(64, std::size_t{1} << 32))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "initialisation and data seed")
      ->transform(in_range<std::uint64_t>(0, std::numeric_limits<std::uint64_t>::max()))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "worker threads (0: all cores)")
      ->transform(in_range<std::size_t>(0, 4096))
      ->capture_default_str();
  app.add_option("--save", o.save, "write a checkpoint at the end (or at --stop-at)");
  app.add_option("--save-init", o.save_init,
                 "write a checkpoint of the initial state (step 0, before the first step; with "
                 "--resume: of the resumed state)");
  app.add_option("--resume", o.resume, "continue from a checkpoint written with the same options");
  app.add_option("--stop-at", o.stop_at, "stop after step S (with --save: to resume later)")
      ->transform(in_range<std::size_t>(0, kMaxSteps));
  app.add_option("--log-every", o.log_every, "progress line every N steps (0: ten per run)")
      ->transform(in_range<std::size_t>(0, kMaxSteps));
  app.add_option("--save-every", o.save_every,
                 "also write the --save checkpoint every N steps (0: only at the end)")
      ->transform(in_range<std::size_t>(0, kMaxSteps));
  app.add_option("--on-divergence", o.on_divergence,
                 "a step whose loss or gradient norm is non-finite or above the limits: stop the "
                 "run, or skip the step (at most 10 in a row)")
      ->check(one_of({"stop", "skip"}, "stop or skip"))
      ->capture_default_str();
  app.add_option("--max-loss", o.max_loss, "divergence limit on a step's loss (nats per byte)")
      ->check(cli::above<double>(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--max-grad-norm", o.max_grad_norm,
                 "divergence limit on a step's gradient norm before clipping")
      ->check(cli::above<double>(0.0, 1e12))
      ->capture_default_str();
  app.add_flag("--json", o.json, "print a JSON summary as the last line of stdout");
  app.add_flag("--distributed", o.distributed,
               "data parallel over MPI: run under mpirun; --batch is the global batch, split "
               "evenly over the ranks; rank 0 prints and writes checkpoints");
}

/// Refuses sizes whose least memory (16 bytes per parameter: weight, gradient, two AdamW moments;
/// 8 bytes per token and vocabulary entry: logits and their gradient) exceeds the machine's
/// physical memory, before anything is allocated.
void check_memory(const Options& o) {
  pquant::ModelConfig c;
  c.d_model = o.d_model;
  c.layers = o.layers;
  c.d_ff = o.d_ff;
  c.experts = o.experts;
  c.r = o.r;
  if (o.vocab != 0) c.vocab = o.vocab;
  const double params = train_lm::min_parameters(o.variant, c);
  const double bytes = 16 * params + 8 * static_cast<double>(o.batch) *
                                         static_cast<double>(o.context) *
                                         static_cast<double>(c.vocab);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return;  // unknown: let the allocation decide
  const double memory = static_cast<double>(pages) * static_cast<double>(page);
  if (bytes <= memory) return;
  char text[256];
  std::snprintf(text, sizeof text,
                "the run needs at least %.1f GiB (%.3g parameters x 16 bytes for weights, "
                "gradients and AdamW moments, plus the logits), more than this machine's %.1f GiB",
                bytes / 1073741824.0, params, memory / 1073741824.0);
  cli::reject("--d-model/--d-ff/--layers/--batch/--context", text);
}

/// Cross-flag checks and defaults that depend on other flags.
void finish(const CLI::App& app, Options& o) {
  if (o.d_model % 2 != 0)
    cli::reject("--d-model", "must be even (RoPE rotates pairs of each head's dimensions), got " +
                                 std::to_string(o.d_model));
  if (o.d_model % o.heads != 0 || (o.d_model / o.heads) % 2 != 0) {
    std::string allowed;
    for (std::size_t h = 1; h <= o.d_model / 2; ++h)
      if (o.d_model % h == 0 && (o.d_model / h) % 2 == 0)
        allowed += (allowed.empty() ? "" : ", ") + std::to_string(h);
    cli::reject("--heads", "must divide --d-model (" + std::to_string(o.d_model) +
                               ") into even head widths; allowed: " + allowed + ", got " +
                               std::to_string(o.heads));
  }
  if (o.variant.starts_with("pquant") && o.r >= o.d_ff)
    cli::reject("--r", "must be in [1, " + std::to_string(o.d_ff - 1) + "] (below --d-ff " +
                           std::to_string(o.d_ff) + "), got " + std::to_string(o.r));
  if (app.count("--warmup") == 0 && o.warmup >= o.steps)
    o.warmup = o.steps / 10;
  else if (o.warmup >= o.steps)
    cli::reject("--warmup", "must be in [0, " + std::to_string(o.steps - 1) +
                                "] (below --steps), got " + std::to_string(o.warmup));
  if (app.count("--phase2-end") != 0 && o.schedule != "two-phase")
    cli::reject("--phase2-end", "applies to --schedule two-phase only, got --schedule " + o.schedule);
  if (o.stop_at > o.steps)
    cli::reject("--stop-at", "must be in [0, " + std::to_string(o.steps) + "] (--steps), got " +
                                 std::to_string(o.stop_at));
  if (o.data.empty() && o.tokens.empty() && o.corpus_bytes - o.corpus_bytes / 10 <= o.context + 1)
    cli::reject("--corpus-bytes", "must give more than --context + 1 (" +
                                      std::to_string(o.context + 1) +
                                      ") training bytes after the 10% held out, got " +
                                      std::to_string(o.corpus_bytes));
#ifndef PQUANT_TRAIN_LM_MPI
  if (o.distributed)
    cli::reject("--distributed", "this train_lm was built without MPI (configure with "
                                 "-DPQUANT_WITH_MPI=ON and install libopenmpi-dev openmpi-bin)");
#endif
  if (!o.tokens.empty() && o.vocab == 0)
    cli::reject("--tokens", "needs --vocab (the tokenizer's vocabulary size)");
  if (o.tokens.empty() && o.vocab != 0)
    cli::reject("--vocab", "is the vocabulary of a --tokens file; byte-level data has 256");
  if (o.save_every > 0 && o.save.empty())
    cli::reject("--save-every", "needs --save (the checkpoint file to write)");
  for (const auto& [flag, path] :
       {std::pair{"--save", &o.save}, std::pair{"--save-init", &o.save_init}})
    if (!path->empty()) {
      try {
        pquant::check_checkpoint_target(*path);  // refuse a bad target before training
      } catch (const pquant::IoError& e) {
        cli::reject(flag, e.what());
      }
    }
  check_memory(o);
  if (app.count("--lr") == 0) o.lr = o.variant == "fp" ? 1e-3f : 3e-3f;
  if (o.log_every == 0) o.log_every = std::max<std::size_t>(1, o.steps / 10);
}

// The options that shape the run (model, initialisation, data, schedule): a checkpoint resumed
// must have been written with the same. Keys are the flags' names with '_' for '-'.
nlohmann::json identity(const Options& o, const pquant::ByteDataset& data) {
  nlohmann::json j = {
      {"variant", o.variant},
      {"experts", o.experts},
      {"r", o.r},
      {"d_model", o.d_model},
      {"layers", o.layers},
      {"heads", o.heads},
      {"d_ff", o.d_ff},
      {"context", o.context},
      {"batch", o.batch},
      {"steps", o.steps},
      {"lr", pquant::detail::json_float(o.lr)},
      {"warmup", o.warmup},
      {"schedule", o.schedule},
      {"weight_decay", pquant::detail::json_float(o.weight_decay)},
      {"init_std", o.init_std},
      {"fan_in", o.fan_in},
      {"alpha_init", pquant::detail::json_float(o.alpha_init)},
      {"beta_init", pquant::detail::json_float(o.beta_init)},
      {"embed_std", o.embed_std < 0 ? nlohmann::json() : nlohmann::json(o.embed_std)},
      {"seed", o.seed},
      {"data", o.data},
      {"corpus_bytes", o.data.empty() ? o.corpus_bytes : 0},
      {"data_bytes", data.size()}};
  // Only when set: checkpoints written before these options existed keep their identity.
  if (o.phase2_end != 0.0f) j["phase2_end"] = pquant::detail::json_float(o.phase2_end);
  if (o.fused_qkv) j["fused_qkv"] = true;
  if (o.block_norm) j["block_norm"] = true;
  if (!o.tokens.empty()) {  // only then: byte-level checkpoints keep their identity
    j["tokens"] = o.tokens;
    j["vocab"] = o.vocab;
  }
  return j;
}

/// Throws FormatError naming the first option in which a checkpoint's run differs from this one.
void check_same_run(const std::string& path, const std::string& saved_text,
                    const nlohmann::json& now) {
  const nlohmann::json saved = nlohmann::json::parse(saved_text, nullptr, false);
  pquant::require<pquant::FormatError>(saved.is_object(), "--resume '", path,
                                       "' records no train_lm options (not written by train_lm)");
  for (const auto& [key, value] : now.items()) {
    const auto it = saved.find(key);
    if (it != saved.end() && *it == value) continue;
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    if (key == "data_bytes") flag = "the size of the training data";
    auto text = [](const nlohmann::json& v) { return v.is_null() ? "unset" : v.dump(); };
    throw pquant::FormatError("pquant: --resume '" + path + "' was written with " + flag + " " +
                              (it == saved.end() ? std::string("absent") : text(*it)) +
                              ", this run has " + text(value) +
                              " (resume with the options of the run that wrote it)");
  }
}

std::string data_name(const Options& o) {
  if (!o.tokens.empty()) return o.tokens;
  return o.data.empty() ? std::string("generated corpus") : o.data;
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

#ifdef PQUANT_TRAIN_LM_MPI
using Communicator = pquant::distributed::Communicator;
template <class Model>
using Parallel = pquant::distributed::DataParallel<Model>;
#else
// Without MPI, --distributed is refused while parsing: comm is always nullptr and no Parallel is
// ever constructed. These declarations only let run() compile.
struct Communicator {
  std::size_t rank() const { return 0; }
  std::size_t size() const { return 1; }
};
template <class Model>
struct Parallel {
  Parallel(Model&, pquant::Trainer<Model>&, const Communicator&) {}
  pquant::StepReport step() { return {}; }
  double allreduce_seconds() const { return 0; }
  void save(const std::string&, const std::string&) const {}
  std::string resume(const std::string&) { return {}; }
};
#endif

// comm: the ranks of a --distributed run (nullptr: one process). Every rank trains; rank 0 alone
// prints, writes the checkpoint and evaluates.
template <class Model>
int run(const Options& o, const pquant::ModelConfig& mc, const pquant::ByteDataset& data,
        const Communicator* comm) {
  Model model(mc, o.seed);
  pquant::TrainerConfig tc;
  tc.batch = o.batch;
  tc.seq_len = o.context;
  tc.schedule =
      pquant::make_schedule(o.schedule, o.lr, o.warmup, o.steps, o.weight_decay, o.phase2_end);
  tc.data_seed = o.seed ^ 0x9e3779b97f4a7c15ULL;
  tc.guard.max_loss = o.max_loss;
  tc.guard.max_grad_norm = o.max_grad_norm;
  tc.guard.action = o.on_divergence == "skip" ? pquant::OnDivergence::kSkip
                                              : pquant::OnDivergence::kStop;
  if (comm) tc.shard = {comm->rank(), comm->size()};
  pquant::Trainer trainer(model, data, tc);
  std::optional<Parallel<Model>> parallel;
  if (comm) parallel.emplace(model, trainer, *comm);
  const bool root = !comm || comm->rank() == 0;
  const nlohmann::json meta = identity(o, data);  // no rank count: resume with any
  if (!o.resume.empty()) {
    check_same_run(o.resume, pquant::CheckpointReader::open(o.resume).state().meta, meta);
    if (parallel)
      parallel->resume(o.resume);  // every rank reads it
    else
      trainer.resume(o.resume);
    std::cout << "resumed from " << o.resume << " at step " << trainer.step_index() << "\n";
  }
  std::cout << "train_lm: " << Model::variant_name() << " | d_model " << mc.d_model << " | layers "
            << mc.layers << " | heads " << mc.heads << " | d_ff " << mc.d_ff;
  if (o.variant.starts_with("pquant"))
    std::cout << " | experts " << mc.experts << " x r " << mc.r;
  std::cout << " | context " << mc.context << " | batch " << o.batch << " | params "
            << model.parameter_count() << " (active " << model.active_parameter_count() << ")"
            << " | threads " << o.threads;
  if (comm) std::cout << " | ranks " << comm->size() << " x batch " << o.batch / comm->size();
  std::cout << "\n"
            << "data: " << data_name(o) << ", " << data.train_size()
            << (data.pre_tokenized() ? " training tokens (vocab " + std::to_string(mc.vocab) + "), "
                                     : std::string(" training bytes, "))
            << data.val_size() << " held out | schedule " << o.schedule << ", peak lr " << o.lr
            << ", warm-up " << o.warmup << ", " << o.steps << " steps\n";

  if (!o.save_init.empty()) {
    if (parallel)
      parallel->save(o.save_init, meta.dump());
    else
      trainer.save(o.save_init, meta.dump());
    std::cout << "saved checkpoint " << o.save_init << " at step " << trainer.step_index() << "\n";
  }
  pquant::FlipRatio flips;
  std::vector<std::uint8_t> codes;
  model.one_bit_codes(codes);
  flips.update(codes);
  double window_loss = 0, window_seconds = 0, train_seconds = 0, allreduce_seconds = 0;
  std::size_t window_steps = 0, window_tokens = 0, trained_tokens = 0, steps_run = 0;
  const std::size_t last = o.stop_at ? std::min(o.stop_at, o.steps) : o.steps;
  std::size_t skipped = 0, saved_step = 0;
  bool saved = false;
  auto save = [&] {
    if (parallel)
      parallel->save(o.save, meta.dump());  // rank 0 writes; every rank waits for it
    else
      trainer.save(o.save, meta.dump());
    saved = true;
    saved_step = trainer.step_index();
  };
  while (trainer.step_index() < last) {
    pquant::StepReport r;
    try {
      r = parallel ? parallel->step() : trainer.step();
    } catch (const pquant::DivergenceError& e) {
      const std::string advice =
          "; see --lr, --warmup, --on-divergence, --max-loss; " +
          (saved ? "the last checkpoint, " + o.save + ", is of step " +
                       std::to_string(saved_step) + ", before the divergence"
                 : std::string("no checkpoint was written"));
      // Under --distributed a rank may meet it alone (non-finite values in its shard): main ends
      // the whole job.
      if (comm) throw pquant::DivergenceError(e.what() + advice, e.step());
      std::cerr << "train_lm: " << e.what() << advice << "\n";
      return cli::kRunError;
    }
    if (parallel) allreduce_seconds += parallel->allreduce_seconds();
    ++steps_run;
    skipped += r.skipped ? 1 : 0;
    window_loss += r.loss;
    window_seconds += r.seconds;
    window_tokens += r.tokens;
    ++window_steps;
    train_seconds += r.seconds;
    trained_tokens += r.tokens;
    if (root && ((r.step + 1) % o.log_every == 0 || r.step + 1 == last)) {
      model.one_bit_codes(codes);
      const double loss = window_loss / static_cast<double>(window_steps);
      char ppl[32], line[256];
      // A diverging loss would print a 100-digit perplexity in fixed notation.
      std::snprintf(ppl, sizeof ppl, loss < 13 ? "%7.3f" : "%.3e", std::exp(loss));
      std::snprintf(line, sizeof line,
                    "step %5zu/%zu | loss %.4f | ppl %s | lr %.2e | wd %.2f | gnorm %.2f | "
                    "%.0f tok/s",
                    r.step + 1, o.steps, loss, ppl, static_cast<double>(r.lr),
                    static_cast<double>(r.weight_decay), r.grad_norm,
                    static_cast<double>(window_tokens) / window_seconds);
      std::cout << line << format_metrics(model.metrics(), flips.update(codes));
      if (skipped > 0) std::cout << " | skipped " << skipped;
      std::cout << std::endl;
      window_loss = window_seconds = 0;
      window_steps = window_tokens = 0;
    }
    if (o.save_every > 0 && (r.step + 1) % o.save_every == 0 && r.step + 1 < last) {
      save();
      std::cout << "saved checkpoint " << o.save << " at step " << saved_step << "\n";
    }
  }
  if (!o.save.empty()) {
    save();
    std::cout << "saved checkpoint " << o.save << " at step " << saved_step << "\n";
  }
  if (!root) return 0;  // the other ranks' work ends with training
  const auto e0 = std::chrono::steady_clock::now();
  const pquant::EvalReport ev = trainer.evaluate();
  const double eval_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
  const double tps = train_seconds > 0 ? static_cast<double>(trained_tokens) / train_seconds : 0;
  char line[256];
  std::snprintf(line, sizeof line,
                "validation: loss %.4f | ppl %.3f over %zu held-out %s (%.1f s) | training %.0f "
                "tokens/s",
                ev.loss, ev.ppl, ev.tokens, data.pre_tokenized() ? "tokens" : "bytes", eval_seconds,
                tps);
  std::cout << line << "\n";
  const double allreduce_ms =
      steps_run ? 1e3 * allreduce_seconds / static_cast<double>(steps_run) : 0.0;
  if (comm) {
    std::snprintf(line, sizeof line, "distributed: %zu ranks | all-reduce %.2f ms per step (rank 0)",
                  comm->size(), allreduce_ms);
    std::cout << line << "\n";
  }
  if (o.json) {
    const nlohmann::json j = {
        {"variant", o.variant},
        {"model", Model::variant_name()},
        {"val_loss", ev.loss},
        {"val_ppl", ev.ppl},
        {"train_tokens_per_s", tps},
        {"params_total", model.parameter_count()},
        {"params_active", model.active_parameter_count()},
        {"steps", trainer.step_index()},
        {"experts", mc.experts},
        {"r", mc.r},
        {"d_model", mc.d_model},
        {"layers", mc.layers},
        {"heads", mc.heads},
        {"d_ff", mc.d_ff},
        {"context", mc.context},
        {"batch", o.batch},
        {"lr", o.lr},
        {"fan_in", o.fan_in},
        {"alpha_init", o.alpha_init},
        {"beta_init", o.beta_init},
        {"phase2_end", pquant::detail::json_float(o.phase2_end)},
        {"fused_qkv", o.fused_qkv},
        {"block_norm", o.block_norm},
        {"threads", o.threads},
        {"val_tokens", ev.tokens},
        {"ranks", comm ? comm->size() : 1},
        {"allreduce_ms_per_step", allreduce_ms},
        {"skipped_steps", skipped},
        {"vocab", mc.vocab},
        {"data", o.data.empty() && o.tokens.empty() ? std::string("generated") : data_name(o)}};
    // A --data path need not be UTF-8: invalid bytes become U+FFFD.
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Trains a byte-level decoder-only LM as one of the paper's variants and reports "
               "validation perplexity over the held-out tail (docs/tools.md).",
               "train_lm");
  Options o;
  declare(app, o);
  return cli::run(
      app, argc, argv, [&] { finish(app, o); },
      [&] {
        if (o.threads == 0)
          o.threads = static_cast<std::size_t>(
              tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
        tbb::global_control threads(tbb::global_control::max_allowed_parallelism, o.threads);
        const pquant::ByteDataset data = [&] {
          if (!o.tokens.empty()) {
            try {
              return pquant::ByteDataset::from_tokens(train_lm::read_token_file(o.tokens).ids,
                                                      o.vocab);
            } catch (const pquant::ValueError& e) {
              throw pquant::ValueError("--tokens '" + o.tokens + "' with --vocab " +
                                       std::to_string(o.vocab) + ": " + e.what());
            }
          }
          return o.data.empty() ? pquant::ByteDataset(train_lm::generate_corpus(o.corpus_bytes))
                                : pquant::ByteDataset::from_file(o.data);
        }();
        pquant::ModelConfig mc;
        mc.vocab = data.vocab();
        mc.d_model = o.d_model;
        mc.layers = o.layers;
        mc.heads = o.heads;
        mc.d_ff = o.d_ff;
        mc.context = o.context;
        mc.experts = o.experts;
        mc.r = o.r;
        mc.init_std = o.init_std;
        mc.embed_std = o.embed_std;
        mc.alpha_init = o.alpha_init;
        mc.beta_init = o.beta_init;
        mc.fused_qkv = o.fused_qkv;
        mc.block_norm = o.block_norm;
        mc.fan_in =
            o.fan_in == "normal" ? pquant::FanInInit::kNormal : pquant::FanInInit::kUniform;
        const auto train = [&](const Communicator* comm) {
          return pquant::visit_variant<pquant::StudyVariants>(
              o.variant, [&]<class V>(std::type_identity<V>) {
                return run<pquant::DecoderModel<V>>(o, mc, data, comm);
              });
        };
#ifdef PQUANT_TRAIN_LM_MPI
        if (o.distributed) {
          pquant::distributed::MpiSession mpi(&argc, &argv);
          const Communicator comm;
          if (o.batch % comm.size() != 0) {  // the same answer on every rank: all exit
            if (comm.rank() == 0)
              std::cerr << "train_lm: --batch (" << o.batch << ") must be divisible by the "
                        << comm.size() << " ranks of --distributed\n";
            return cli::kUsageError;
          }
          if (comm.rank() != 0) std::cout.rdbuf(nullptr);  // rank 0 alone prints
          try {
            return train(&comm);
          } catch (const std::exception& e) {
            // An error one rank sees alone (say, writing the checkpoint) would leave the others
            // waiting in a collective: end the whole job.
            std::cerr << "train_lm: rank " << comm.rank() << ": " << e.what() << "\n";
            if (comm.size() > 1) pquant::distributed::MpiSession::abort(cli::kRunError);
            throw;
          }
        }
#endif
        return train(nullptr);
      });
}
