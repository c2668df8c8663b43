// analyze_sensitivity: the weight sensitivity of a trained model's projections (docs/analysis.md).
//
//   analyze_sensitivity --model CKPT --data FILE [--projections a,b,...] [--calib-tokens N]
//                       [--weights latent|effective] [--out-dir DIR] [--png FILE] [--json]
//   analyze_sensitivity --model CKPT --tokens FILE ...    pre-tokenized calibration ids
//
// Runs the model (a train_lm checkpoint: latent FP32 weights) over calibration tokens taken from
// the start of the file's training part (the first 90%, as train_lm splits it), captures each
// chosen projection's input X through the parameter store's ProductObserver, forms
// H = 2 X^T X / n in double, and scores every weight with s_ij = w_ij^2 / (2 [H^-1]_jj). Per
// projection it writes DIR/<name>.json: the statistics and the map max-pooled to at most
// --map-size x --map-size. --png draws the maps through scripts/plot_results.py. With --json the
// last stdout line is one JSON object: {"projections": [{"name", "top1pct_share", "gini",
// "max_over_median", "heatmap"}...], ...}.
#include <spawn.h>
#include <sys/wait.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/cli.hpp"
#include "../train_lm/run_config.hpp"
#include "../train_lm/token_file.hpp"
#include "pquant/analysis/product_capture.hpp"
#include "pquant/analysis/projection_sensitivity.hpp"
#include "pquant/analysis/sensitivity_stats.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/model/variant_registry.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/byte_dataset.hpp"
#include "pquant/training/checkpoint.hpp"

extern char** environ;

namespace {

using namespace pquant;

struct Options {
  std::string model, data, tokens, projections, weights = "latent", out_dir = "sensitivity", png;
  std::string title;
  std::size_t calib_tokens = 8192, map_size = 128, threads = 0;
  double damp = analysis::kDefaultDamp;
  bool json = false;
};

void declare(CLI::App& app, Options& o) {
  using cli::in_range;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--model", o.model, "train_lm checkpoint (latent weights)")->required();
  CLI::Option* data = app.add_option("--data", o.data, "calibration text (byte-level models)");
  app.add_option("--tokens", o.tokens,
                 "calibration token file (uint16 ids, raw or llm.c header; models trained with "
                 "train_lm --tokens)")
      ->excludes(data);
  app.add_option("--projections", o.projections,
                 "comma-separated projections, e.g. blocks.0.attn.q,blocks.1.ffn.int1.down "
                 "(default: every projection of every block)");
  app.add_option("--calib-tokens", o.calib_tokens,
                 "calibration tokens (at least the widest chosen projection's input width)")
      ->transform(in_range<std::size_t>(1, std::size_t{1} << 24))
      ->capture_default_str();
  app.add_option("--weights", o.weights,
                 "weights s is computed from: latent (the FP32 weights training updates) or "
                 "effective (the quantized weights the forward multiplies)")
      ->check(CLI::IsMember({"latent", "effective"}))
      ->capture_default_str();
  app.add_option("--damp", o.damp, "Hessian dampening, relative to mean(diag H)")
      ->transform(in_range<double>(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--out-dir", o.out_dir, "directory for the per-projection JSON files")
      ->capture_default_str();
  app.add_option("--map-size", o.map_size, "max-pool each map to at most this many rows/columns")
      ->transform(in_range<std::size_t>(1, 4096))
      ->capture_default_str();
  app.add_option("--png", o.png, "draw the maps into this PNG (scripts/plot_results.py)");
  app.add_option("--title", o.title, "figure title for --png (default: the variant)");
  app.add_option("--threads", o.threads, "worker threads (0: all cores)")
      ->transform(in_range<std::size_t>(0, 4096))
      ->capture_default_str();
  app.add_flag("--json", o.json, "print a JSON summary as the last line of stdout");
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

/// The calibration ids: the first `n` of the file's training part.
std::vector<TokenId> calibration(const Options& o, std::size_t vocab) {
  std::vector<TokenId> ids;
  if (!o.tokens.empty()) {
    const train_lm::TokenFile f = train_lm::read_token_file(o.tokens);
    const std::size_t train = f.ids.size() - f.ids.size() / 10;
    for (std::size_t i = 0; i < std::min(train, o.calib_tokens); ++i) {
      require<ValueError>(f.ids[i] < vocab, "--tokens '", o.tokens, "': token ", i, " is ",
                          f.ids[i], ", not below the model's vocabulary ", vocab);
      ids.push_back(f.ids[i]);
    }
  } else {
    require<ValueError>(vocab == kByteVocabulary, "--data: the model's vocabulary is ", vocab,
                        " (trained on a token file): give its calibration ids with --tokens");
    const ByteDataset d = ByteDataset::from_file(o.data);
    const auto bytes = d.train_bytes();
    for (std::size_t i = 0; i < std::min(bytes.size(), o.calib_tokens); ++i)
      ids.push_back(bytes[i]);
  }
  require<ValueError>(!ids.empty(), "the calibration file holds no tokens");
  return ids;
}

/// The interpreter for the plotting script: $PQUANT_PYTHON, else the project's .venv, else
/// /usr/bin/python3 (Debian's, which sees python3-matplotlib), else python3 on PATH.
std::string python() {
  if (const char* p = std::getenv("PQUANT_PYTHON"); p != nullptr && *p != '\0') return p;
  const std::string venv = std::string(PQUANT_SOURCE_DIR) + "/.venv/bin/python";
  if (::access(venv.c_str(), X_OK) == 0) return venv;
  if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
  return "python3";
}

void run_command(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int err = ::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  require<IoError>(err == 0, "--png: cannot run '", args[0], "': ", std::strerror(err),
                   " (set PQUANT_PYTHON to a Python with matplotlib; scripts/install-deps.sh "
                   "installs it)");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  require<IoError>(WIFEXITED(status) && WEXITSTATUS(status) == 0, "--png: the plotting command '",
                   args[0], " ", args[1], " ...' failed (exit status ",
                   WIFEXITED(status) ? WEXITSTATUS(status) : -1, ")");
}

nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nullptr;
}

template <class Model>
int analyze(const Options& o, const CheckpointReader& ckpt, const train_lm::ModelSpec& spec) {
  Model model(spec.config, 0);
  AdamW opt(model.store());
  ckpt.restore(model.store(), opt);
  std::vector<std::string> names = split_list(o.projections);
  if (names.empty())
    for (const std::string& n : analysis::projection_names(model.store()))
      if (n.starts_with("blocks.") && n.find(".router") == std::string::npos) names.push_back(n);
  analysis::ProductCapture capture(model.store(), names);  // ValueError for unknown names

  const std::vector<TokenId> ids = calibration(o, spec.config.vocab);
  const std::size_t seq = std::min(spec.config.context, ids.size());
  const std::size_t windows = ids.size() / seq;  // whole windows only
  const std::size_t per_batch = std::max<std::size_t>(1, 4096 / seq);
  Matrix<float> logits;
  capture.attach();
  for (std::size_t w = 0; w < windows; w += per_batch) {
    const std::size_t b = std::min(per_batch, windows - w);
    if (logits.rows() != b * seq) logits = Matrix<float>(b * seq, spec.config.vocab);
    model.forward(std::span<const TokenId>(ids.data() + w * seq, b * seq), SequenceShape{b, seq},
                  logits.view());
  }
  capture.detach();
  const std::size_t used = windows * seq;

  std::filesystem::create_directories(o.out_dir);
  const auto source = o.weights == "effective" ? analysis::WeightSource::kEffective
                                               : analysis::WeightSource::kLatent;
  nlohmann::json summary = {{"model", o.model},     {"variant", spec.variant},
                            {"weights", o.weights}, {"calib_tokens", used},
                            {"damp", o.damp},       {"projections", nlohmann::json::array()}};
  std::vector<std::string> files;
  std::printf("%-30s %9s %7s %8s %12s %6s\n", "projection", "shape", "tokens", "gini",
              "top1%-share", "max/med");
  for (std::size_t i = 0; i < capture.size(); ++i) {
    const auto& p = capture.projection(i);
    if (p.hessian.tokens() < p.hessian.in_features() && p.products > 0)
      throw ValueError("pquant: the calibration set (" + std::to_string(used) +
                       " tokens used of --calib-tokens " + std::to_string(o.calib_tokens) +
                       ") gives projection '" + p.name + "' " + std::to_string(p.hessian.tokens()) +
                       " input rows, fewer than its input width " +
                       std::to_string(p.hessian.in_features()) + "; raise --calib-tokens");
    const analysis::ProjectionSensitivity r =
        analysis::projection_sensitivity(p, model.store(), source, o.damp);
    const analysis::PooledMap map =
        analysis::max_pool(r.scores, r.rows, r.cols, o.map_size, o.map_size);
    nlohmann::json grid = nlohmann::json::array();
    for (std::size_t row = 0; row < map.rows; ++row)
      grid.push_back(
          std::vector<double>(map.values.begin() + static_cast<long>(row * map.cols),
                              map.values.begin() + static_cast<long>((row + 1) * map.cols)));
    const nlohmann::json stats = {{"top1pct_share", r.stats.top1pct_share},
                                  {"gini", r.stats.gini},
                                  {"max_over_median", finite_or_null(r.stats.max_over_median)},
                                  {"max", r.stats.max},
                                  {"median", r.stats.median},
                                  {"total", r.stats.total}};
    nlohmann::json j = {{"name", r.name},
                        {"variant", spec.variant},
                        {"weights", o.weights},
                        {"rows", r.rows},
                        {"cols", r.cols},
                        {"tokens", r.tokens},
                        {"dead_columns", r.dead_columns},
                        {"pool",
                         {{"rows", map.rows},
                          {"cols", map.cols},
                          {"block_rows", map.block_rows},
                          {"block_cols", map.block_cols},
                          {"reduce", "max"}}},
                        {"heatmap", grid}};
    j.update(stats);
    const std::string file = (std::filesystem::path(o.out_dir) / (r.name + ".json")).string();
    io::AtomicFile out(file);
    out.write(j.dump() + "\n");
    out.commit();
    files.push_back(file);
    nlohmann::json entry = {{"name", r.name},
                            {"heatmap", file},
                            {"rows", r.rows},
                            {"cols", r.cols},
                            {"tokens", r.tokens}};
    entry.update(stats);
    summary["projections"].push_back(entry);
    char shape[32];
    std::snprintf(shape, sizeof shape, "%zux%zu", r.rows, r.cols);
    std::printf("%-30s %9s %7zu %8.4f %12.4f %6.1f\n", r.name.c_str(), shape, r.tokens,
                r.stats.gini, r.stats.top1pct_share, r.stats.max_over_median);
  }
  if (!o.png.empty()) {
    std::vector<std::string> args = {python(),
                                     PQUANT_PLOT_SCRIPT,
                                     "heatmap",
                                     "--out",
                                     o.png,
                                     "--title",
                                     o.title.empty() ? spec.variant : o.title};
    args.insert(args.end(), files.begin(), files.end());
    run_command(args);
    std::cout << "wrote " << o.png << "\n";
    summary["png"] = o.png;
  }
  if (o.json)
    std::cout << summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Weight sensitivity (OBS saliency) of a trained model's projections "
      "(docs/analysis.md).",
      "analyze_sensitivity");
  Options o;
  declare(app, o);
  return cli::run(
      app, argc, argv,
      [&] {
        if (o.data.empty() && o.tokens.empty())
          cli::reject("--data", "give the calibration text (--data FILE) or ids (--tokens FILE)");
      },
      [&] {
        if (o.threads == 0)
          o.threads = static_cast<std::size_t>(
              tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
        tbb::global_control threads(tbb::global_control::max_allowed_parallelism, o.threads);
        const CheckpointReader ckpt = CheckpointReader::open(o.model);
        const train_lm::ModelSpec spec = train_lm::model_from_json(
            nlohmann::json::parse(ckpt.state().meta, nullptr, false), o.model);
        const double needed = train_lm::min_parameters(spec.variant, spec.config);
        require<FormatError>(needed <= static_cast<double>(ckpt.parameter_elements()), "'", o.model,
                             "': its configuration needs at least ", needed,
                             " weights, the file holds ", ckpt.parameter_elements());
        return visit_variant(spec.variant, [&]<class V>(std::type_identity<V>) {
          return analyze<DecoderModel<V>>(o, ckpt, spec);
        });
      });
}
