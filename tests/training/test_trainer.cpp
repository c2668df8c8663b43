// Trainer: the gradient hook, loss going down, whole-tail evaluation, bit-identical resume, resume
// refusing another run's checkpoint, and the divergence guard,
// on a small model built from the library's FP layers (the transformer variants are tested in
// tests/model).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/cross_entropy.hpp"
#include "pquant/layers/embedding.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/training/trainer.hpp"

namespace pquant {
namespace {

// Embedding -> BitLinear (1-bit, INT8 activations, own RMSNorm) -> Linear head: a bigram model
// with a quantized hidden layer, enough to exercise every trainer path.
class TinyModel {
 public:
  explicit TinyModel(std::uint64_t seed)
      : embed_(store_, "embed", {256, 16}),
        hidden_(store_, "hidden", {16, 32, true, 0.1}),
        head_(store_, "head", {32, 256, false, 0.02}) {
    Rng rng(seed);
    embed_.init(rng);
    hidden_.init(rng);
    head_.init(rng);
  }
  ParameterStore& store() { return store_; }

  LossReport forward_backward(std::span<const TokenId> in, std::span<const std::int32_t> tgt,
                              SequenceShape) {
    forward(in);
    Matrix<float> dlogits(in.size(), 256), dh(in.size(), 32), de(in.size(), 16);
    const CrossEntropyResult ce = softmax_cross_entropy<float>(logits_.view(), tgt, dlogits.view());
    head_.backward(dlogits.view(), dh.view());
    hidden_.backward(dh.view(), de.view());
    embed_.backward(de.view());
    return {ce.mean(), 0.0};
  }
  CrossEntropyResult evaluate(std::span<const TokenId> in, std::span<const std::int32_t> tgt,
                              SequenceShape shape) {
    eval_calls.push_back(shape);
    forward(in);
    return softmax_cross_entropy<float>(logits_.view(), tgt, MatrixView<float>{});
  }
  std::vector<SequenceShape> eval_calls;

 private:
  void forward(std::span<const TokenId> in) {
    e_ = Matrix<float>(in.size(), 16);
    h_ = Matrix<float>(in.size(), 32);
    logits_ = Matrix<float>(in.size(), 256);
    embed_.forward(in, e_.view());
    hidden_.forward(e_.view(), h_.view());
    head_.forward(h_.view(), logits_.view());
  }
  ParameterStore store_;
  Embedding embed_;
  BitLinear<SignAbsMean<PerTensor>> hidden_;
  Linear head_;
  Matrix<float> e_, h_, logits_;
};
static_assert(LanguageModel<TinyModel>);

std::string corpus() {
  std::string s;
  for (int i = 0; i < 400; ++i) s += "the cat sat on the mat. a dog ran to the log. ";
  return s;
}

TrainerConfig config(std::size_t steps) {
  TrainerConfig c;
  c.batch = 4;
  c.seq_len = 16;
  c.schedule = TwoPhaseSchedule{.peak_lr = 1e-2f, .warmup_steps = 2, .total_steps = steps};
  c.data_seed = 7;
  return c;
}

TEST(Trainer, LossDecreasesAndTheGradientHookSeesTheWholeArenaOncePerStep) {
  const ByteDataset data(corpus());
  TinyModel model(1);
  Trainer trainer(model, data, config(60));
  std::size_t calls = 0;
  trainer.on_gradients_ready = [&](std::span<float> grads) {
    ++calls;
    EXPECT_EQ(grads.data(), model.store().grads().data());
    EXPECT_EQ(grads.size(), model.store().grads().size());
  };
  const double before = trainer.evaluate().loss;
  EXPECT_NEAR(before, std::log(256.0), 0.1);  // an untrained model is near uniform
  double first = 0, last = 0;
  while (!trainer.done()) {
    const StepReport r = trainer.step();
    if (r.step == 0) first = r.loss;
    last = r.loss;
    EXPECT_LE(r.lr, 1e-2f);
  }
  EXPECT_EQ(calls, 60u);
  EXPECT_LT(last, first - 1.0);
  EXPECT_LT(trainer.evaluate().loss, before - 1.0);
}

TEST(Trainer, HookRunsBeforeClippingAndTheUpdate) {
  // A hook that scales gradients by 0 (as a broken all-reduce would) must freeze the model:
  // proves the update uses the gradients after the hook.
  const ByteDataset data(corpus());
  TinyModel model(1);
  TrainerConfig c = config(3);
  c.schedule =
      ConstantSchedule{.peak_lr = 1e-2f, .warmup_steps = 0, .total_steps = 3, .weight_decay = 0.f};
  Trainer trainer(model, data, c);
  trainer.on_gradients_ready = [](std::span<float> g) {
    for (float& v : g) v = 0.f;
  };
  std::vector<float> before(model.store().values().begin(), model.store().values().end());
  trainer.step();
  EXPECT_TRUE(std::equal(before.begin(), before.end(), model.store().values().begin()));
}

TEST(Trainer, EvaluateCoversTheWholeTail) {
  const ByteDataset data(corpus());
  TinyModel model(1);
  TrainerConfig c = config(3);
  c.eval_batch = 5;
  Trainer trainer(model, data, c);
  const EvalReport e = trainer.evaluate();
  EXPECT_EQ(e.tokens, data.val_size() - 1);
  std::size_t tokens = 0;
  for (const SequenceShape& s : model.eval_calls) {
    EXPECT_LE(s.batch, 5u);
    tokens += s.tokens();
  }
  EXPECT_EQ(tokens, data.val_size() - 1);
  EXPECT_EQ(trainer.evaluate().loss, e.loss);  // deterministic
}

TEST(Trainer, ResumeIsBitIdenticalToAnUninterruptedRun) {
  const ByteDataset data(corpus());
  const std::string path =
      (std::filesystem::temp_directory_path() / ("pquant_resume_" + std::to_string(::getpid())))
          .string();
  TinyModel a(3);
  Trainer ta(a, data, config(12));
  std::vector<double> losses_a;
  while (!ta.done()) losses_a.push_back(ta.step().loss);

  TinyModel b(3);
  Trainer tb(b, data, config(12));
  std::vector<double> losses_b;
  for (int i = 0; i < 5; ++i) losses_b.push_back(tb.step().loss);
  tb.save(path, "meta");
  TinyModel c(99);  // different initial weights: everything must come from the checkpoint
  Trainer tc(c, data, config(12));
  EXPECT_EQ(tc.resume(path), "meta");
  EXPECT_EQ(tc.step_index(), 5u);
  while (!tc.done()) losses_b.push_back(tc.step().loss);
  std::filesystem::remove(path);

  EXPECT_EQ(losses_a, losses_b);
  const auto va = a.store().values(), vc = c.store().values();
  ASSERT_EQ(va.size(), vc.size());
  EXPECT_EQ(std::memcmp(va.data(), vc.data(), va.size_bytes()), 0);
  EXPECT_EQ(std::memcmp(ta.optimizer().second_moment().data(),
                        tc.optimizer().second_moment().data(), va.size_bytes()),
            0);
  EXPECT_EQ(ta.data_rng().state(), tc.data_rng().state());
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("pquant_" + name + "_" + std::to_string(::getpid())))
      .string();
}

/// The message of the FormatError `f` throws ("" if none).
template <class F>
std::string format_error(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(Trainer, ResumeRefusesACheckpointOfAnotherRun) {
  const ByteDataset data(corpus());
  const std::string path = temp_path("other_run");
  TinyModel a(3);
  Trainer ta(a, data, config(12));
  for (int i = 0; i < 3; ++i) ta.step();
  ta.save(path, "meta");

  TinyModel b(5);
  const std::vector<float> before(b.store().values().begin(), b.store().values().end());
  auto resume_with = [&](TrainerConfig c) {
    Trainer tb(b, data, c);
    return format_error([&] { tb.resume(path); });
  };
  TrainerConfig wd = config(12);
  wd.schedule = TwoPhaseSchedule{
      .peak_lr = 1e-2f, .warmup_steps = 2, .total_steps = 12, .weight_decay = 0.05f};
  EXPECT_NE(resume_with(wd).find("/schedule/weight_decay is 0.1"), std::string::npos)
      << resume_with(wd);
  TrainerConfig lr = config(12);
  lr.schedule = CosineSchedule{.peak_lr = 1e-2f, .warmup_steps = 2, .total_steps = 12};
  EXPECT_NE(resume_with(lr).find("was written with other settings: /schedule/"),
            std::string::npos);
  TrainerConfig batch = config(12);
  batch.batch = 5;
  EXPECT_NE(resume_with(batch).find("/batch is 4 there, 5 in this run"), std::string::npos);
  TrainerConfig adam = config(12);
  adam.adam.beta2 = 0.99f;
  EXPECT_NE(resume_with(adam).find("/adamw/beta2"), std::string::npos);
  // A run shorter than the checkpoint's position: the step is outside [0, steps].
  TrainerConfig shorter = config(2);
  shorter.schedule = TwoPhaseSchedule{.peak_lr = 1e-2f, .warmup_steps = 1, .total_steps = 2};
  EXPECT_NE(resume_with(shorter).find("is at step 3, beyond this run's 2 steps"),
            std::string::npos);
  // Nothing was restored by the refused resumes; the matching one works.
  EXPECT_TRUE(std::equal(before.begin(), before.end(), b.store().values().begin()));
  EXPECT_EQ(resume_with(config(12)), "");
  std::filesystem::remove(path);
}

TEST(Trainer, ADivergedStepIsNeverAppliedAndStopsTheRunNamingTheStep) {
  const ByteDataset data(corpus());
  TinyModel m(3);
  TrainerConfig c = config(12);
  Trainer t(m, data, c);
  t.step();
  t.step();
  // A limit below the current loss makes the next step "diverge" (the loss is ~5 nats).
  TrainerConfig strict = c;
  strict.guard.max_loss = 1.0;
  TinyModel m2(3);
  Trainer t2(m2, data, strict);
  const std::vector<float> fresh(m2.store().values().begin(), m2.store().values().end());
  try {
    t2.step();
    FAIL() << "no DivergenceError";
  } catch (const DivergenceError& e) {
    EXPECT_EQ(e.step(), 0u);
    EXPECT_NE(std::string(e.what()).find("step 1 diverged (loss"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("limit 1;"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t2.step_index(), 0u);
  EXPECT_EQ(t2.optimizer().steps(), 0u);
  EXPECT_TRUE(std::equal(fresh.begin(), fresh.end(), m2.store().values().begin()));
  // The gradient-norm limit likewise.
  TrainerConfig grad = c;
  grad.guard.max_grad_norm = 1e-6;
  TinyModel m3(3);
  Trainer t3(m3, data, grad);
  EXPECT_THROW(t3.step(), DivergenceError);
  EXPECT_EQ(t3.optimizer().steps(), 0u);
  // A NaN weight makes the logits NaN: the layer's ValueError becomes a DivergenceError naming
  // the step (before, it reached the caller without one).
  t.step();
  m.store().values()[m.store().infos().back().offset] = std::numeric_limits<float>::quiet_NaN();
  try {
    t.step();
    FAIL() << "no DivergenceError";
  } catch (const DivergenceError& e) {
    EXPECT_EQ(e.step(), 3u);
    EXPECT_NE(std::string(e.what()).find("step 4 failed: "), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.step_index(), 3u);
}

TEST(Trainer, SkippedStepsMoveTheScheduleButNotTheWeights) {
  const ByteDataset data(corpus());
  TrainerConfig c = config(12);
  c.guard.max_loss = 1.0;  // every step diverges
  c.guard.action = OnDivergence::kSkip;
  c.guard.max_consecutive_skips = 3;
  TinyModel m(3);
  Trainer t(m, data, c);
  const std::vector<float> fresh(m.store().values().begin(), m.store().values().end());
  for (std::size_t i = 0; i < 3; ++i) {
    const StepReport r = t.step();
    EXPECT_TRUE(r.skipped);
    EXPECT_EQ(r.step, i);
  }
  EXPECT_EQ(t.step_index(), 3u);
  EXPECT_EQ(t.optimizer().steps(), 0u);
  EXPECT_TRUE(std::equal(fresh.begin(), fresh.end(), m.store().values().begin()));
  try {
    t.step();
    FAIL() << "no DivergenceError after too many skipped steps";
  } catch (const DivergenceError& e) {
    EXPECT_EQ(e.step(), 3u);
    EXPECT_NE(std::string(e.what()).find("after 3 skipped steps in a row"), std::string::npos)
        << e.what();
  }
  // A healthy run under kSkip skips nothing and matches a kStop run exactly.
  TrainerConfig skip = config(12);
  skip.guard.action = OnDivergence::kSkip;
  TinyModel a(3), b(3);
  Trainer ta(a, data, config(12)), tb(b, data, skip);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ta.step().loss, tb.step().loss);
  }
  EXPECT_EQ(std::memcmp(a.store().values().data(), b.store().values().data(),
                        a.store().values().size_bytes()),
            0);
}

}  // namespace
}  // namespace pquant
