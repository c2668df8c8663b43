// Trainer: the QAT training loop over any LanguageModel, its data, optimizer and schedule.
//
// One step:  sample B windows (data Rng) -> zero gradients -> forward + backward (model)
//            -> on_gradients_ready(grads)      <- the one point where gradients are complete
//            -> global-norm clipping -> schedule(step) -> AdamW update.
// on_gradients_ready is where a data-parallel run averages the gradient arena over the ranks:
// the arena is one contiguous buffer, nothing else holds gradients, and clipping and the update
// come after, so every rank then takes the identical step.
// TrainerConfig::shard makes the trainer a data-parallel rank: it draws the same global batch as
// every other rank and trains on its own contiguous block of rows (pquant/distributed/ installs
// the all-reduce; docs/distributed.md).
// State that defines the run (latent weights, AdamW moments and step count, schedule position,
// data Rng) is exactly what save()/resume() store, so a resumed run is bit-identical to an
// uninterrupted one (as long as the thread count does not change results: see docs/training.md).
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/layers/cross_entropy.hpp"
#include "pquant/layers/embedding.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/layer.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/byte_dataset.hpp"
#include "pquant/training/checkpoint.hpp"
#include "pquant/training/grad_clip.hpp"
#include "pquant/training/schedule.hpp"

namespace pquant {

/// What one forward + backward of a language model reports.
struct LossReport {
  double loss = 0;      // mean cross-entropy over the batch's tokens (nats)
  double aux_loss = 0;  // auxiliary losses added to the objective (router load balancing), if any
};

/// What the Trainer needs from a model: its parameter arena, a training pass that accumulates
/// gradients into it, and an evaluation pass (no gradients).
template <class M>
concept LanguageModel = requires(M& m, std::span<const TokenId> inputs,
                                 std::span<const std::int32_t> targets, SequenceShape shape) {
  { m.store() } -> std::same_as<ParameterStore&>;
  { m.forward_backward(inputs, targets, shape) } -> std::same_as<LossReport>;
  { m.evaluate(inputs, targets, shape) } -> std::same_as<CrossEntropyResult>;
};

/// Which block of each global batch this process trains on (data parallel): rows
/// [index * batch / count, (index + 1) * batch / count). {0, 1} is the whole batch.
struct DataShard {
  std::size_t index = 0;
  std::size_t count = 1;
};

struct TrainerConfig {
  std::size_t batch = 16;  // the global batch: windows per step over all shards
  std::size_t seq_len = 128;
  AnySchedule schedule = TwoPhaseSchedule{};  // its total_steps is the run's length
  AdamWConfig adam{};
  float clip_norm = 1.0f;       // global gradient norm limit; <= 0 disables clipping
  std::uint64_t data_seed = 1;  // seeds the window sampler
  std::size_t eval_batch = 16;  // validation windows per forward pass
  DataShard shard{};            // count must divide batch
};

struct StepReport {
  std::size_t step = 0;  // index of the step just taken (0-based)
  double loss = 0;
  double aux_loss = 0;
  double grad_norm = 0;  // before clipping
  float lr = 0;
  float weight_decay = 0;
  std::size_t tokens = 0;  // of the global batch
  double seconds = 0;      // wall time of the step
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
    require<ValueError>(cfg_.shard.count > 0 && cfg_.shard.index < cfg_.shard.count &&
                            cfg_.batch % cfg_.shard.count == 0,
                        "Trainer: 'shard' must have index < count and count dividing 'batch' (",
                        cfg_.batch, "), got index ", cfg_.shard.index, " of ", cfg_.shard.count);
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

  /// One optimizer step on a fresh random batch (this shard's rows of it; loss and aux_loss are
  /// the shard's).
  StepReport step() {
    const auto t0 = std::chrono::steady_clock::now();
    data_->sample_train(rng_, cfg_.batch, cfg_.seq_len, batch_);
    ParameterStore& store = model_->store();
    store.zero_grads();
    const std::size_t rows = cfg_.batch / cfg_.shard.count;
    const std::size_t first = cfg_.shard.index * rows * cfg_.seq_len, n = rows * cfg_.seq_len;
    const LossReport loss = model_->forward_backward(
        std::span<const TokenId>(batch_.inputs).subspan(first, n),
        std::span<const std::int32_t>(batch_.targets).subspan(first, n),
        SequenceShape{rows, cfg_.seq_len});
    if (on_gradients_ready) on_gradients_ready(store.grads());
    StepReport r;
    r.step = step_;
    r.loss = loss.loss;
    r.aux_loss = loss.aux_loss;
    r.grad_norm = cfg_.clip_norm > 0 ? clip_grad_norm(store.grads(), cfg_.clip_norm)
                                     : global_grad_norm(store.grads());
    const ScheduleValue sv = cfg_.schedule.at(step_);
    r.lr = sv.lr;
    r.weight_decay = sv.weight_decay;
    opt_.step(store, sv.lr, sv.weight_decay);
    ++step_;
    r.tokens = cfg_.batch * cfg_.seq_len;
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

  /// Writes latent weights, optimizer state, schedule position and data Rng atomically.
  void save(const std::string& path, const std::string& meta = {}) const {
    save_checkpoint(path, model_->store(), opt_, TrainingState{step_, rng_.state(), meta});
  }

  /// Restores a checkpoint written by save() for the same model layout; returns its meta text.
  std::string resume(const std::string& path) {
    TrainingState s = load_checkpoint(path, model_->store(), opt_);
    step_ = static_cast<std::size_t>(s.step);
    rng_.set_state(s.rng);
    return std::move(s.meta);
  }

 private:
  M* model_;
  const ByteDataset* data_;
  TrainerConfig cfg_;
  AdamW opt_;
  Rng rng_;
  std::size_t step_ = 0;
  TokenBatch batch_;
};

}  // namespace pquant
