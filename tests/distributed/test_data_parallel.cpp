// pquant/distributed under mpirun (any rank count): the ring all-reduce against a scalar
// reference of its documented summation order, and data-parallel training against the one-process
// Trainer on the same global batch, computed independently on every rank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "pquant/distributed.hpp"
#include "pquant/model.hpp"
#include "pquant/quantizers/sign_absmean.hpp"
#include "pquant/training.hpp"

namespace pquant::distributed {
namespace {

const Communicator& world() {
  static const Communicator comm;
  return comm;
}

// Rank k's input: values spanning six decades with both signs, so the order of additions shows.
template <class T>
std::vector<T> rank_values(std::size_t k, std::size_t n) {
  Rng rng(1000 + 17 * k + n);
  std::vector<T> v(n);
  for (T& x : v) {
    const double u = rng.uniform() * 2 - 1;
    x = static_cast<T>(u * std::pow(10.0, std::floor(rng.uniform() * 6) - 3));
  }
  return v;
}

template <class T>
void expect_documented_sum(Reduction op) {
  const Communicator& comm = world();
  const std::size_t N = comm.size();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, N - 1, N + 1, std::size_t{7},
                        std::size_t{1000}, std::size_t{65537}}) {
    std::vector<std::vector<T>> all;
    for (std::size_t k = 0; k < N; ++k) all.push_back(rank_values<T>(k, n));
    std::vector<T> data = all[comm.rank()];
    ring_allreduce(std::span<T>(data), comm, op);
    for (std::size_t c = 0; c < N; ++c) {
      for (std::size_t i = chunk_begin(n, N, c); i < chunk_begin(n, N, c + 1); ++i) {
        // Chunk c: g_c + g_c+1 + ... + g_c-1, left to right, in T; then / N for the mean.
        T expect = all[c][i];
        double exact = all[c][i], magnitude = std::abs(exact);
        for (std::size_t s = 1; s < N; ++s) {
          expect = expect + all[(c + s) % N][i];
          exact += all[(c + s) % N][i];
          magnitude += std::abs(static_cast<double>(all[(c + s) % N][i]));
        }
        if (op == Reduction::kMean) {
          expect = expect / static_cast<T>(N);
          exact /= static_cast<double>(N);
          magnitude /= static_cast<double>(N);
        }
        ASSERT_EQ(data[i], expect) << "n " << n << " element " << i << " chunk " << c;
        ASSERT_NEAR(data[i], exact, 1e-6 * magnitude);  // and it is the sum
      }
    }
  }
}

TEST(RingAllreduce, SumsEveryChunkInTheDocumentedOrder) {
  expect_documented_sum<float>(Reduction::kSum);
  expect_documented_sum<double>(Reduction::kSum);
}

TEST(RingAllreduce, MeanDividesTheSumByTheRankCount) {
  expect_documented_sum<float>(Reduction::kMean);
}

TEST(RingAllreduce, ChunksCoverTheBufferInOrder) {
  for (std::size_t n : {0u, 1u, 5u, 6u, 7u}) {
    EXPECT_EQ(chunk_begin(n, 3, 0), 0u);
    EXPECT_EQ(chunk_begin(n, 3, 3), n);
    for (std::size_t c = 0; c < 3; ++c) {
      const std::size_t len = chunk_begin(n, 3, c + 1) - chunk_begin(n, 3, c);
      EXPECT_TRUE(len == n / 3 || len == n / 3 + 1);
    }
  }
  EXPECT_EQ(chunk_begin(7, 3, 1), 3u);  // 3 + 2 + 2
  EXPECT_EQ(chunk_begin(7, 3, 2), 5u);
}

// ---------------------------------------------------------------------------------------------

std::string corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "one two three four. five six seven eight. nine ten. ";
  return s;
}
const ByteDataset& data() {
  static const ByteDataset d(corpus());
  return d;
}

ModelConfig small(std::size_t experts = 1) {
  ModelConfig c;
  c.d_model = 32;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 64;
  c.context = 16;
  c.r = 16;
  c.experts = experts;
  return c;
}

constexpr std::size_t kGlobalBatch = 12;  // divisible by 1, 2, 3, 4 and 6 ranks
constexpr std::size_t kSteps = 8;

TrainerConfig trainer_config(DataShard shard) {
  TrainerConfig tc;
  tc.batch = kGlobalBatch;
  tc.seq_len = 16;
  tc.schedule = TwoPhaseSchedule{.peak_lr = 1e-2f, .warmup_steps = 2, .total_steps = kSteps};
  tc.data_seed = 7;
  tc.shard = shard;
  return tc;
}

struct TrainedRun {
  std::vector<double> loss, grad_norm;
  std::vector<float> weights;
  double val_loss = 0;
};

template <class Model>
TrainedRun finish(Model& model, Trainer<Model>& trainer, TrainedRun run) {
  run.weights.assign(model.store().values().begin(), model.store().values().end());
  run.val_loss = trainer.evaluate().loss;
  return run;
}

// One process, the whole global batch: the reference.
template <class Model>
TrainedRun train_alone(const ModelConfig& mc, std::size_t steps = kSteps) {
  Model model(mc, 3);
  Trainer trainer(model, data(), trainer_config({}));
  TrainedRun run;
  while (trainer.step_index() < steps) {
    const StepReport r = trainer.step();
    run.loss.push_back(r.loss);
    run.grad_norm.push_back(r.grad_norm);
  }
  return finish(model, trainer, std::move(run));
}

template <class Model>
TrainedRun train_parallel(const ModelConfig& mc) {
  Model model(mc, 3);
  Trainer trainer(model, data(), trainer_config(data_shard(world())));
  DataParallel dp(model, trainer, world());
  TrainedRun run;
  while (!trainer.done()) {
    const StepReport r = dp.step();
    EXPECT_EQ(r.tokens, kGlobalBatch * 16);
    run.loss.push_back(r.loss);
    run.grad_norm.push_back(r.grad_norm);
  }
  EXPECT_TRUE(dp.replicas_identical());
  return finish(model, trainer, std::move(run));
}

double max_abs_diff(std::span<const double> a, std::span<const double> b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Prints the measured gap once (rank 0) so docs/distributed.md can state it.
void report(const char* what, const TrainedRun& dp, const TrainedRun& one) {
  double w = 0;
  for (std::size_t i = 0; i < dp.weights.size(); ++i)
    w = std::max(w, static_cast<double>(std::abs(dp.weights[i] - one.weights[i])));
  if (world().is_root())
    std::printf("[ measured ] %s, %zu ranks vs 1 process, %zu steps: max |loss diff| %.3g, "
                "max |grad-norm diff| %.3g, max |weight diff| %.3g, |val loss diff| %.3g\n",
                what, world().size(), dp.loss.size(), max_abs_diff(dp.loss, one.loss),
                max_abs_diff(dp.grad_norm, one.grad_norm), w, std::abs(dp.val_loss - one.val_loss));
}

// Loss gap (nats) allowed against one process: docs/distributed.md's bound for runs of up to 30
// steps. The shards' partial sums are added in another order than one process adds them (gaps
// ~1e-8); AdamW's per-parameter normalisation and discontinuous choices (a 1-bit code at its
// threshold, a top-1 router tie) enlarge such differences now and then (up to 2.3e-4 here).
constexpr double kLossBound = 1e-3;

TEST(DataParallel, MatchesOneProcessOnTheSameGlobalBatch) {
  const TrainedRun one = train_alone<BitNet>(small());
  const TrainedRun dp = train_parallel<BitNet>(small());
  report("bitnet", dp, one);
  ASSERT_EQ(dp.loss.size(), kSteps);
  for (std::size_t s = 0; s < kSteps; ++s) EXPECT_NEAR(dp.loss[s], one.loss[s], kLossBound) << s;
  EXPECT_NEAR(dp.val_loss, one.val_loss, kLossBound);
  EXPECT_LT(dp.val_loss, one.loss[0] - 0.5);  // it trained
  if (world().size() == 1) {
    EXPECT_EQ(dp.weights, one.weights);  // no split, no reordering
  }
}

TEST(DataParallel, PQuantWithExpertsDiffersOnlyByEachShardsLoadBalancingLoss) {
  // Cross-entropy averages exactly; the router's load-balancing term uses each shard's own expert
  // usage, so with several experts the run is a slightly different one (measured: up to 1.5e-2
  // nats after 8 steps). Without that term it is within kLossBound again.
  ModelConfig no_aux = small(2);
  no_aux.aux_loss_coef = 0;
  const TrainedRun one = train_alone<PQuant<>>(no_aux);
  const TrainedRun dp = train_parallel<PQuant<>>(no_aux);
  report("pquant, 2 experts, no load-balancing loss", dp, one);
  for (std::size_t s = 0; s < kSteps; ++s) EXPECT_NEAR(dp.loss[s], one.loss[s], kLossBound) << s;
  EXPECT_NEAR(dp.val_loss, one.val_loss, kLossBound);

  const TrainedRun one_aux = train_alone<PQuant<>>(small(2));
  const TrainedRun dp_aux = train_parallel<PQuant<>>(small(2));
  report("pquant, 2 experts, load-balancing loss 0.01", dp_aux, one_aux);
  EXPECT_NEAR(dp_aux.val_loss, one_aux.val_loss, 0.1);
}

TEST(DataParallel, GivesTheSameBitsOnEveryRun) {
  const TrainedRun a = train_parallel<BitNet>(small());
  const TrainedRun b = train_parallel<BitNet>(small());
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.val_loss, b.val_loss);
}

TEST(DataParallel, QuantizerScalesAndCodesAgreeOnEveryRankWithoutCommunication) {
  BitNet model(small(), 3);
  Trainer trainer(model, data(), trainer_config(data_shard(world())));
  DataParallel dp(model, trainer, world());
  while (!trainer.done()) dp.step();
  // Every rank quantizes its own latent weights; gather the scales, means and codes and compare.
  std::vector<double> stats;
  std::vector<std::uint8_t> codes;
  std::size_t tensors = 0;
  for (const ParamInfo& p : model.store().infos()) {
    if (p.role != ParamRole::kWeight || !variants::BitNet::one_bit(p.name)) continue;
    const auto s = SignAbsMean<PerTensor>::statistics(
        MatrixView<const float>(model.store().values().data() + p.offset, p.rows, p.cols));
    stats.push_back(s.lambda[0]);
    stats.push_back(s.mu[0]);
    ++tensors;
  }
  model.one_bit_codes(codes);
  ASSERT_GT(tensors, 0u);
  const std::uint64_t code_hash = fnv1a(std::as_bytes(std::span<const std::uint8_t>(codes)));
  const std::vector<double> all = world().allgather(std::span<const double>(stats));
  const std::vector<std::uint64_t> hashes = world().allgather(std::span<const std::uint64_t>(&code_hash, 1));
  for (std::size_t k = 1; k < world().size(); ++k) {
    EXPECT_EQ(hashes[k], hashes[0]) << "rank " << k << "'s 1-bit codes";
    for (std::size_t i = 0; i < stats.size(); ++i)
      EXPECT_EQ(all[k * stats.size() + i], all[i]) << "rank " << k << " statistic " << i;
  }
  // The check can fail: one rank's changed weight is seen by every rank.
  EXPECT_TRUE(dp.replicas_identical());
  if (world().size() > 1) {
    if (world().rank() == 1) model.store().values()[0] += 1e-3f;
    EXPECT_FALSE(dp.replicas_identical());
  }
}

TEST(DataParallel, TheDivergenceGuardSeesTheGlobalBatchsLossOnEveryRank) {
  // A loss limit between the global batch's loss and the worst shard's: a rank that guarded its
  // own shard's loss would stop alone (and leave the others waiting); with the global loss no
  // rank stops, and every rank reports the same loss, the one-process step's.
  const Communicator& comm = world();
  std::vector<double> shard_loss;
  for (std::size_t k = 0; k < comm.size(); ++k) {
    BitNet model(small(), 3);
    Trainer trainer(model, data(), trainer_config({k, comm.size()}));
    shard_loss.push_back(trainer.step().loss);
  }
  BitNet alone(small(), 3);
  const double global = Trainer(alone, data(), trainer_config({})).step().loss;
  const double worst = *std::max_element(shard_loss.begin(), shard_loss.end());
  if (comm.size() > 1) {
    ASSERT_GT(worst, global + 1e-3);
  }
  TrainerConfig tc = trainer_config(data_shard(comm));
  tc.guard.max_loss = (global + worst) / 2;
  BitNet model(small(), 3);
  Trainer trainer(model, data(), tc);
  DataParallel dp(model, trainer, comm);
  StepReport r;
  ASSERT_NO_THROW(r = dp.step());
  EXPECT_FALSE(r.skipped);
  EXPECT_NEAR(r.loss, global, 1e-6);
  const std::vector<double> all = comm.allgather(std::span<const double>(&r.loss, 1));
  for (double l : all) EXPECT_EQ(l, all[0]);
}

TEST(DataParallel, RejectsAShardThatIsNotTheRanksAndDifferentReplicas) {
  const Communicator& comm = world();
  {
    BitNet model(small(), 3);
    Trainer trainer(model, data(), trainer_config({}));  // the whole batch on every rank
    if (comm.size() > 1) {
      EXPECT_THROW({ DataParallel dp(model, trainer, comm); }, ValueError);
    }
  }
  {
    BitNet model(small(), 3 + comm.rank());  // rank-dependent seed
    Trainer trainer(model, data(), trainer_config(data_shard(comm)));
    if (comm.size() > 1) {
      EXPECT_THROW({ DataParallel dp(model, trainer, comm); }, ValueError);
    }
  }
  BitNet model(small(), 3);
  EXPECT_THROW(
      { Trainer t(model, data(), trainer_config({.index = 0, .count = 5})); },  // 5 does not divide 12
      ValueError);
  EXPECT_THROW({ Trainer t(model, data(), trainer_config({.index = 2, .count = 2})); }, ValueError);
}

TEST(DataParallel, ResumesACheckpointWithAnotherRankCount) {
  const Communicator& comm = world();
  const std::uint64_t pid = static_cast<std::uint64_t>(::getpid());
  const std::uint64_t root_pid = comm.allgather(std::span<const std::uint64_t>(&pid, 1))[0];
  const auto dir = std::filesystem::temp_directory_path();
  const std::string from_dp = (dir / ("pquant_dp_" + std::to_string(root_pid) + ".ckpt")).string();
  const std::string from_one = (dir / ("pquant_one_" + std::to_string(root_pid) + ".ckpt")).string();
  constexpr std::size_t kHalf = kSteps / 2;
  const TrainedRun uninterrupted = train_alone<BitNet>(small());

  // N ranks to kHalf, saved by rank 0; then one process continues from it.
  {
    BitNet model(small(), 3);
    Trainer trainer(model, data(), trainer_config(data_shard(comm)));
    DataParallel dp(model, trainer, comm);
    while (trainer.step_index() < kHalf) dp.step();
    dp.save(from_dp, "meta");
  }
  {
    BitNet model(small(), 3);
    Trainer trainer(model, data(), trainer_config({}));
    ASSERT_EQ(trainer.resume(from_dp), "meta");
    ASSERT_EQ(trainer.step_index(), kHalf);
    while (!trainer.done()) trainer.step();
    EXPECT_NEAR(trainer.evaluate().loss, uninterrupted.val_loss, kLossBound);
  }
  // One process to kHalf (rank 0 writes); N ranks continue from it.
  if (comm.is_root()) {
    BitNet model(small(), 3);
    Trainer trainer(model, data(), trainer_config({}));
    while (trainer.step_index() < kHalf) trainer.step();
    trainer.save(from_one);
  }
  comm.barrier();
  {
    BitNet model(small(), 3);
    Trainer trainer(model, data(), trainer_config(data_shard(comm)));
    DataParallel dp(model, trainer, comm);
    dp.resume(from_one);
    while (!trainer.done()) dp.step();
    EXPECT_TRUE(dp.replicas_identical());
    EXPECT_NEAR(trainer.evaluate().loss, uninterrupted.val_loss, kLossBound);
  }
  comm.barrier();
  if (comm.is_root()) {
    std::filesystem::remove(from_dp);
    std::filesystem::remove(from_one);
  }
}

}  // namespace
}  // namespace pquant::distributed

// MPI around GoogleTest: every rank runs every test; a failure on any rank fails the job.
int main(int argc, char** argv) {
  pquant::distributed::MpiSession mpi(&argc, &argv);
  if (pquant::distributed::world().rank() != 0) GTEST_FLAG_SET(brief, true);
  ::testing::InitGoogleTest(&argc, argv);
  const int failed = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
