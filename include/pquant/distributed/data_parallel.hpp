// DataParallel: a Trainer as one rank of a data-parallel run over MPI (docs/distributed.md).
//
// Every rank holds the whole model and optimizer and draws the same global batch; its Trainer
// (TrainerConfig::shard = data_shard(comm)) trains on its own block of rows. At on_gradients_ready
// the gradient arena is averaged over the ranks by ring_allreduce (fixed order), and at
// on_loss_ready the shards' losses (added in rank order), so the divergence guard, clipping and
// AdamW see identical values on every rank: every rank takes the identical step and the latent
// weights stay bit-identical without ever being sent. Quantizer scales and codes are functions of
// those weights alone (recomputed each step on every rank), so they need no communication either.
// Averaging is exact for the mean cross-entropy because every shard has the same number of tokens;
// a loss that is not a mean over tokens (the router's load-balancing term) is the shard's own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/distributed/mpi_session.hpp"
#include "pquant/distributed/ring_allreduce.hpp"
#include "pquant/training/trainer.hpp"

namespace pquant::distributed {

/// The block of every global batch this rank trains on (for TrainerConfig::shard).
inline DataShard data_shard(const Communicator& comm) { return {comm.rank(), comm.size()}; }

/// 64-bit FNV-1a over the bytes of `values`, continuing from `h`.
inline std::uint64_t fnv1a(std::span<const std::byte> bytes,
                           std::uint64_t h = 0xcbf29ce484222325ULL) {
  for (std::byte b : bytes) h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ULL;
  return h;
}

template <LanguageModel M>
class DataParallel {
 public:
  /// Installs the all-reduces in `trainer` (kept until destruction). Collective. ValueError if
  /// the trainer's shard is not (rank, size) of `comm` or the ranks' states differ.
  DataParallel(M& model, Trainer<M>& trainer, const Communicator& comm)
      : model_(&model), trainer_(&trainer), comm_(&comm) {
    const DataShard s = trainer.config().shard;
    require<ValueError>(s.index == comm.rank() && s.count == comm.size(),
                        "DataParallel: the trainer's shard is ", s.index, " of ", s.count,
                        ", expected data_shard(comm) = ", comm.rank(), " of ", comm.size());
    require_identical_replicas("DataParallel");
    trainer.on_gradients_ready = [this](std::span<float> grads) {
      const auto t0 = std::chrono::steady_clock::now();
      ring_allreduce(grads, *comm_, Reduction::kMean);
      allreduce_seconds_ =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    trainer.on_loss_ready = [this](LossReport& loss) {
      // The shards' means, added in rank order: the same bits on every rank.
      const double local[2] = {loss.loss, loss.aux_loss};
      const std::vector<double> all = comm_->allgather(std::span<const double>(local));
      double sum = 0, aux = 0;
      for (std::size_t k = 0; k < comm_->size(); ++k) {
        sum += all[2 * k];
        aux += all[2 * k + 1];
      }
      loss.loss = sum / static_cast<double>(comm_->size());
      loss.aux_loss = aux / static_cast<double>(comm_->size());
    };
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() {
    trainer_->on_gradients_ready = nullptr;
    trainer_->on_loss_ready = nullptr;
  }

  const Communicator& comm() const { return *comm_; }

  /// One step of the global batch on every rank (collective): Trainer::step, whose loss and
  /// aux_loss are then the global batch's (the same on every rank, so the divergence guard
  /// decides alike everywhere).
  StepReport step() { return trainer_->step(); }

  /// Wall time of the last step's gradient all-reduce on this rank (including any wait for a
  /// slower rank to reach it).
  double allreduce_seconds() const { return allreduce_seconds_; }

  /// Fingerprint of everything that defines the run on this rank: latent weights, AdamW moments,
  /// step count and data Rng.
  std::uint64_t state_fingerprint() const {
    const ParameterStore& store = model_->store();
    std::uint64_t h = fnv1a(std::as_bytes(store.values()));
    h = fnv1a(std::as_bytes(std::span<const float>(trainer_->optimizer().first_moment())), h);
    h = fnv1a(std::as_bytes(std::span<const float>(trainer_->optimizer().second_moment())), h);
    const std::uint64_t tail[2] = {trainer_->step_index(), trainer_->data_rng().state()};
    return fnv1a(std::as_bytes(std::span<const std::uint64_t>(tail)), h);
  }

  /// True on every rank iff all ranks hold bit-identical state (collective).
  bool replicas_identical() const {
    const std::uint64_t mine = state_fingerprint();
    const std::vector<std::uint64_t> all =
        comm_->allgather(std::span<const std::uint64_t>(&mine, 1));
    for (std::uint64_t h : all)
      if (h != all[0]) return false;
    return true;
  }

  /// Rank 0 writes the checkpoint (atomically, Trainer::save); every rank returns once it is on
  /// disk. Collective. A checkpoint holds no rank count: resume with any count dividing the batch.
  void save(const std::string& path, const std::string& meta = {}) const {
    if (comm_->is_root()) trainer_->save(path, meta);
    comm_->barrier();
  }

  /// Every rank reads `path` (a file system all ranks see); returns its meta text. Collective.
  std::string resume(const std::string& path) {
    std::string meta = trainer_->resume(path);
    require_identical_replicas("DataParallel::resume");
    return meta;
  }

 private:
  void require_identical_replicas(const char* where) const {
    require<ValueError>(replicas_identical(), where,
                        ": the ranks hold different weights or optimizer state (build every "
                        "rank's model with the same seed and resume all from the same file)");
  }

  M* model_;
  Trainer<M>* trainer_;
  const Communicator* comm_;
  double allreduce_seconds_ = 0;
};

}  // namespace pquant::distributed
