// Trainer: the QAT training loop over any LanguageModel, its data, optimizer and schedule.
//
// One step:  sample B windows (data Rng) -> zero gradients -> forward + backward (model)
//            -> on_gradients_ready(grads)      <- the one point where gradients are complete
//            -> global-norm clipping -> schedule(step) -> AdamW update.
// on_gradients_ready is where a data-parallel run all-reduces the gradient arena (e.g.
// MPI_Allreduce(MPI_IN_PLACE, grads.data(), grads.size(), MPI_FLOAT, MPI_SUM, comm) then divides
// by the world size): the arena is one contiguous buffer, nothing else holds gradients, and
// clipping and the update come after, so every rank then takes the identical step.
// State that defines the run (latent weights, AdamW moments and step count, schedule position,
// data Rng) is exactly what save()/resume() store, so a resumed run is bit-identical to an
// uninterrupted one (as long as the thread count does not change results: see docs/training.md).
// The checkpoint also records the trainer's settings (schedule, batch, sequence length, clipping,
// AdamW); resume() refuses a checkpoint written with other settings or at a step
// beyond the run's length.
//
// Divergence guard: before clipping and the update, a step whose loss or gradient norm is not
// finite, or above DivergenceGuard's limits (defaults: loss 20 nats per token, i.e. worse than
// uniform guessing over 4.8e8 tokens; pre-clipping gradient norm 1e4), is never applied. With
// OnDivergence::kStop (default) step() throws DivergenceError naming the step; with kSkip the
// step is counted (schedule and data stream move on) but changes no weight, and a run of more
// than max_consecutive_skips such steps throws DivergenceError.
#pragma once

#include <charconv>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/layers/cross_entropy.hpp"
#include "pquant/layers/embedding.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/loss_report.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/byte_dataset.hpp"
#include "pquant/training/checkpoint.hpp"
#include "pquant/training/grad_clip.hpp"
#include "pquant/training/schedule.hpp"

namespace pquant {

/// What the Trainer needs from a model: its parameter arena, a training pass that accumulates
/// gradients into it, and an evaluation pass (no gradients).
template <class M>
concept LanguageModel = requires(M& m, std::span<const TokenId> inputs,
                                 std::span<const std::int32_t> targets, SequenceShape shape) {
  { m.store() } -> std::same_as<ParameterStore&>;
  { m.forward_backward(inputs, targets, shape) } -> std::same_as<LossReport>;
  { m.evaluate(inputs, targets, shape) } -> std::same_as<CrossEntropyResult>;
};

enum class OnDivergence { kStop, kSkip };

/// When a step counts as diverged (see the header comment) and what the trainer does then.
struct DivergenceGuard {
  double max_loss = 20.0;       // nats per token (cross-entropy plus auxiliary losses)
  double max_grad_norm = 1e4;   // global gradient norm before clipping
  OnDivergence action = OnDivergence::kStop;
  std::size_t max_consecutive_skips = 10;  // kSkip: more diverged steps in a row stop the run
};

/// Thrown by Trainer::step for a diverged step under OnDivergence::kStop (or too many skipped
/// steps under kSkip). The step was not applied: the weights are those before it.
class DivergenceError : public ValueError {
 public:
  DivergenceError(const std::string& what, std::size_t step) : ValueError(what), step_(step) {}
  std::size_t step() const { return step_; }  // 0-based index of the diverged step

 private:
  std::size_t step_;
};

struct TrainerConfig {
  std::size_t batch = 16;
  std::size_t seq_len = 128;
  AnySchedule schedule = TwoPhaseSchedule{};  // its total_steps is the run's length
  AdamWConfig adam{};
  float clip_norm = 1.0f;       // global gradient norm limit; <= 0 disables clipping
  std::uint64_t data_seed = 1;  // seeds the window sampler
  std::size_t eval_batch = 16;  // validation windows per forward pass
  DivergenceGuard guard{};
};

namespace detail {
/// A float as the double of its shortest decimal form, so JSON shows 0.1, not 0.100000001.
inline double json_float(float v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  double d = v;
  if (ec == std::errc()) std::from_chars(buf, end, d);
  return d;
}
}  // namespace detail

/// A schedule's parameters as JSON (recorded in checkpoints and compared on resume).
inline nlohmann::json schedule_json(const AnySchedule& schedule) {
  return schedule.visit([&](const auto& s) {
    using S = std::decay_t<decltype(s)>;
    nlohmann::json j = {{"name", schedule.name()},
                        {"peak_lr", detail::json_float(s.peak_lr)},
                        {"warmup_steps", s.warmup_steps},
                        {"total_steps", s.total_steps},
                        {"weight_decay", detail::json_float(s.weight_decay)}};
    if constexpr (std::is_same_v<S, TwoPhaseSchedule>) {
      j["phase1_end"] = detail::json_float(s.phase1_end);
      j["phase2_start"] = detail::json_float(s.phase2_start);
      j["phase2_end"] = detail::json_float(s.phase2_end);
    } else if constexpr (std::is_same_v<S, CosineSchedule>) {
      j["min_lr"] = detail::json_float(s.min_lr);
    }
    return j;
  });
}

struct StepReport {
  std::size_t step = 0;  // index of the step just taken (0-based)
  double loss = 0;
  double aux_loss = 0;
  double grad_norm = 0;  // before clipping
  float lr = 0;
  float weight_decay = 0;
  std::size_t tokens = 0;
  double seconds = 0;    // wall time of the step
  bool skipped = false;  // diverged and not applied (OnDivergence::kSkip)
};

struct EvalReport {
  double loss = 0;  // mean nats per predicted byte over the whole held-out tail
  double ppl = 0;   // exp(loss)
  std::size_t tokens = 0;
};

template <LanguageModel M>
class Trainer {
 public:
  Trainer(M& model, const ByteDataset& data, TrainerConfig cfg)
      : model_(&model),
        data_(&data),
        cfg_(std::move(cfg)),
        opt_(model.store(), cfg_.adam),
        rng_(cfg_.data_seed) {
    require<ValueError>(cfg_.batch > 0 && cfg_.seq_len > 0 && cfg_.eval_batch > 0,
                        "Trainer: 'batch', 'seq_len' and 'eval_batch' must be > 0");
    require<ValueError>(std::isfinite(cfg_.clip_norm), "Trainer: 'clip_norm' must be finite");
    require<ValueError>(cfg_.guard.max_loss > 0 && cfg_.guard.max_grad_norm > 0,
                        "Trainer: the divergence guard's limits must be > 0");
  }

  /// Called with the complete gradient arena once per step, before clipping and the update:
  /// the hook for a data-parallel all-reduce (see the header comment). Empty by default.
  std::function<void(std::span<float> grads)> on_gradients_ready;

  std::size_t step_index() const { return step_; }
  std::size_t total_steps() const { return cfg_.schedule.total_steps(); }
  bool done() const { return step_ >= total_steps(); }
  const TrainerConfig& config() const { return cfg_; }
  AdamW& optimizer() { return opt_; }
  const Rng& data_rng() const { return rng_; }

  /// One optimizer step on a fresh random batch (see the header comment for diverged steps).
  StepReport step() {
    const auto t0 = std::chrono::steady_clock::now();
    data_->sample_train(rng_, cfg_.batch, cfg_.seq_len, batch_);
    ParameterStore& store = model_->store();
    store.zero_grads();
    LossReport loss;
    try {
      loss = model_->forward_backward(batch_.inputs, batch_.targets,
                                      SequenceShape{cfg_.batch, cfg_.seq_len});
    } catch (const ValueError& e) {
      // A layer met a non-finite value (e.g. NaN logits): the run had diverged. Say when.
      throw DivergenceError(detail::concat("pquant: Trainer::step: step ", step_ + 1,
                                           " failed: ", e.what(), "; it was not applied"),
                            step_);
    }
    if (on_gradients_ready) on_gradients_ready(store.grads());
    StepReport r;
    r.step = step_;
    r.loss = loss.loss;
    r.aux_loss = loss.aux_loss;
    r.grad_norm = std::sqrt(grad_sum_of_squares(store.grads()));
    const ScheduleValue sv = cfg_.schedule.at(step_);
    r.lr = sv.lr;
    r.weight_decay = sv.weight_decay;
    r.tokens = cfg_.batch * cfg_.seq_len;
    const double objective = loss.loss + loss.aux_loss;
    const bool diverged = !std::isfinite(objective) || !std::isfinite(r.grad_norm) ||
                          objective > cfg_.guard.max_loss ||
                          r.grad_norm > cfg_.guard.max_grad_norm;
    if (diverged) {
      ++consecutive_skips_;
      if (cfg_.guard.action == OnDivergence::kStop ||
          consecutive_skips_ > cfg_.guard.max_consecutive_skips)
        throw DivergenceError(
            detail::concat("pquant: Trainer::step: step ", step_ + 1, " diverged (loss ",
                           objective, ", limit ", cfg_.guard.max_loss,
                           "; gradient norm before clipping ", r.grad_norm, ", limit ",
                           cfg_.guard.max_grad_norm, ")",
                           consecutive_skips_ > 1
                               ? detail::concat(" after ", consecutive_skips_ - 1,
                                                " skipped steps in a row")
                               : std::string(),
                           "; it was not applied (lower the learning rate, now ", sv.lr,
                           ", or lengthen the warm-up)"),
            step_);
      r.skipped = true;
    } else {
      consecutive_skips_ = 0;
      if (cfg_.clip_norm > 0) clip_grad_norm(store.grads(), cfg_.clip_norm);
      opt_.step(store, sv.lr, sv.weight_decay);
    }
    ++step_;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  /// Validation over the whole held-out tail in consecutive windows of seq_len (the last one
  /// shorter), eval_batch full windows per forward pass. Deterministic; no gradients.
  EvalReport evaluate() {
    const std::size_t windows = data_->val_windows(cfg_.seq_len);
    CrossEntropyResult total;
    TokenBatch w;
    std::vector<TokenId> in;
    std::vector<std::int32_t> tgt;
    std::size_t k = 0;
    while (k < windows) {
      in.clear();
      tgt.clear();
      std::size_t rows = 0, len = 0;
      for (; k < windows && rows < cfg_.eval_batch; ++k) {
        data_->val_window(k, cfg_.seq_len, w);
        if (rows > 0 && w.seq_len != len) break;  // the short last window goes alone
        len = w.seq_len;
        in.insert(in.end(), w.inputs.begin(), w.inputs.end());
        tgt.insert(tgt.end(), w.targets.begin(), w.targets.end());
        ++rows;
      }
      const CrossEntropyResult r = model_->evaluate(in, tgt, SequenceShape{rows, len});
      total.sum += r.sum;
      total.tokens += r.tokens;
    }
    EvalReport e;
    e.tokens = total.tokens;
    e.loss = total.mean();
    e.ppl = std::exp(e.loss);
    return e;
  }

  /// The settings that shape the run besides the model (recorded in checkpoints). The data seed
  /// is not among them: the checkpoint carries the data Rng's state itself, and data-parallel
  /// ranks differ in it.
  nlohmann::json settings() const {
    const AdamWConfig& a = cfg_.adam;
    return {{"batch", cfg_.batch},
            {"seq_len", cfg_.seq_len},
            {"clip_norm", detail::json_float(cfg_.clip_norm)},
            {"schedule", schedule_json(cfg_.schedule)},
            {"adamw",
             {{"beta1", detail::json_float(a.beta1)},
              {"beta2", detail::json_float(a.beta2)},
              {"eps", detail::json_float(a.eps)},
              {"decay_weights", a.decay_weights},
              {"decay_embeddings", a.decay_embeddings},
              {"decay_norm_gains", a.decay_norm_gains},
              {"decay_scalars", a.decay_scalars},
              {"decay_biases", a.decay_biases}}}};
  }

  /// Writes latent weights, optimizer state, schedule position, data Rng and the trainer's
  /// settings atomically (pquant/training/checkpoint.hpp).
  void save(const std::string& path, const std::string& meta = {}) const {
    save_checkpoint(path, model_->store(), opt_,
                    TrainingState{step_, rng_.state(), meta, settings().dump()});
  }

  /// Restores a checkpoint written by save() for the same model layout and trainer settings;
  /// returns its meta text. FormatError (and nothing changed) for a checkpoint of another run.
  std::string resume(const std::string& path) {
    const CheckpointReader r = CheckpointReader::open(path);
    const TrainingState& s = r.state();
    require<FormatError>(s.step <= total_steps(), "Trainer::resume: '", path, "' is at step ",
                         s.step, ", beyond this run's ", total_steps(), " steps");
    const nlohmann::json saved = nlohmann::json::parse(s.trainer, nullptr, false);
    require<FormatError>(saved.is_object(), "Trainer::resume: '", path,
                         "' does not record the trainer settings it was written with");
    const nlohmann::json diff = nlohmann::json::diff(saved, settings());
    if (!diff.empty()) {
      const std::string where = diff[0].value("path", std::string());
      const nlohmann::json::json_pointer ptr(where);
      throw FormatError(detail::concat(
          "pquant: Trainer::resume: '", path, "' was written with other settings: ", where,
          " is ", saved.contains(ptr) ? saved.at(ptr).dump() : std::string("absent"),
          " there, ", settings().contains(ptr) ? settings().at(ptr).dump() : std::string("absent"),
          " in this run"));
    }
    r.restore(model_->store(), opt_);
    step_ = static_cast<std::size_t>(s.step);
    rng_.set_state(s.rng);
    consecutive_skips_ = 0;
    return s.meta;
  }

 private:
  M* model_;
  const ByteDataset* data_;
  TrainerConfig cfg_;
  AdamW opt_;
  Rng rng_;
  std::size_t step_ = 0;
  std::size_t consecutive_skips_ = 0;
  TokenBatch batch_;
};

}  // namespace pquant
