// DecoderModel / TransformerBlock composition: gradients against finite differences, a variant
// written here in test code (as a user would), deterministic init, loss going down, and resume.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "pquant/layers/activations.hpp"
#include "pquant/layers/attention.hpp"
#include "pquant/layers/linear.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/model/decoder_model.hpp"
#include "pquant/training/trainer.hpp"

namespace pquant {
namespace {

// A user-written FFN: y = Down(relu2(Up(RMSNorm(x)))), full precision.
class Relu2Ffn {
 public:
  struct Config {
    std::size_t d_model = 0, hidden = 0;
  };
  Relu2Ffn(ParameterStore& store, const std::string& name, Config cfg)
      : cfg_(cfg),
        norm_(store, name + ".norm", RMSNorm::Config{cfg.d_model}),
        up_(store, name + ".up", Linear::Config{cfg.d_model, cfg.hidden, false, 0.2}),
        down_(store, name + ".down", Linear::Config{cfg.hidden, cfg.d_model, false, 0.2}) {}
  void init(Rng& rng) {
    norm_.init(rng);
    up_.init(rng);
    down_.init(rng);
  }
  void forward(MatrixView<const float> x, MatrixView<float> y) {
    a_ = Matrix<float>(x.rows, cfg_.d_model);
    u_ = Matrix<float>(x.rows, cfg_.hidden);
    h_ = Matrix<float>(x.rows, cfg_.hidden);
    norm_.forward(x, a_.view());
    up_.forward(a_.view(), u_.view());
    relu2_forward<float>(u_.view(), h_.view());
    down_.forward(h_.view(), y);
  }
  void backward(MatrixView<const float> dy, MatrixView<float> dx) {
    Matrix<float> dh(dy.rows, cfg_.hidden), du(dy.rows, cfg_.hidden), da(dy.rows, cfg_.d_model);
    down_.backward(dy, dh.view());
    relu2_backward<float>(dh.view(), u_.view(), du.view());
    up_.backward(du.view(), da.view());
    norm_.backward(da.view(), dx);
  }
  std::size_t in_features() const { return cfg_.d_model; }
  std::size_t out_features() const { return cfg_.d_model; }

 private:
  Config cfg_;
  RMSNorm norm_;
  Linear up_, down_;
  Matrix<float> a_, u_, h_;
};

struct TestVariant {
  static constexpr std::string_view kName = "test-fp";
  using Attention = CausalSelfAttention<Linear>;
  using Ffn = Relu2Ffn;
  static Attention::Config attention_config(const ModelConfig& c) {
    return {.d_model = c.d_model, .heads = c.heads, .init_std = 0.2, .out_init_std = 0.2};
  }
  static Ffn::Config ffn_config(const ModelConfig& c) { return {c.d_model, c.d_ff}; }
};
static_assert(ModelVariant<TestVariant>);
using TestModel = DecoderModel<TestVariant>;
static_assert(LanguageModel<TestModel>);

ModelConfig tiny() {
  ModelConfig c;
  c.vocab = 11;
  c.d_model = 8;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 12;
  c.context = 6;
  c.init_std = 0.3;
  return c;
}

TEST(DecoderModel, RegistersEveryTensorUnderItsName) {
  TestModel m(tiny(), 1);
  std::vector<std::string> names;
  for (const ParamInfo& p : m.store().infos()) names.push_back(p.name);
  EXPECT_EQ(names.front(), "embed.table");
  EXPECT_EQ(names.back(), "head.weight");
  EXPECT_NE(std::find(names.begin(), names.end(), "blocks.1.attn.q.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "blocks.0.ffn.up.weight"), names.end());
  EXPECT_EQ(m.parameter_count(), m.active_parameter_count());
  // 11*8 + 2 * (8 + 4*64 + 8 + 8*12 + 12*8) + 8 + 8*11
  EXPECT_EQ(m.parameter_count(), 88u + 2u * (8 + 256 + 8 + 96 + 96) + 8u + 88u);
  ModelConfig bad = tiny();
  bad.heads = 3;
  EXPECT_THROW(TestModel(bad, 1), ValueError);
}

TEST(DecoderModel, SameSeedSameModelAndOutputs) {
  TestModel a(tiny(), 5), b(tiny(), 5), c(tiny(), 6);
  const auto va = a.store().values(), vb = b.store().values(), vc = c.store().values();
  EXPECT_EQ(std::memcmp(va.data(), vb.data(), va.size_bytes()), 0);
  EXPECT_NE(std::memcmp(va.data(), vc.data(), va.size_bytes()), 0);
}

// The loss as a function of the parameters, for finite differences.
double loss_of(TestModel& m, const std::vector<TokenId>& in, const std::vector<std::int32_t>& tgt,
               SequenceShape shape) {
  return m.evaluate(in, tgt, shape).mean();
}

// randomise_gains: norm gains drawn from U(0.5, 1.5) instead of 1.
void check_model_gradients(const ModelConfig& cfg, bool randomise_gains = false) {
  TestModel m(cfg, 3);
  if (randomise_gains) {
    Rng rng(5);
    for (const ParamInfo& p : m.store().infos())
      if (p.role == ParamRole::kNormGain)
        for (std::size_t i = 0; i < p.size(); ++i)
          m.store().values()[p.offset + i] = static_cast<float>(rng.uniform(0.5, 1.5));
  }
  const SequenceShape shape{2, 5};
  std::vector<TokenId> in = {1, 4, 2, 9, 0, 3, 3, 7, 10, 5};
  std::vector<std::int32_t> tgt = {4, 2, 9, 0, 6, 3, 7, 10, 5, 1};
  m.store().zero_grads();
  const LossReport r = m.forward_backward(in, tgt, shape);
  EXPECT_NEAR(r.loss, loss_of(m, in, tgt, shape), 1e-6);
  std::vector<float> analytic(m.store().grads().begin(), m.store().grads().end());
  std::size_t checked = 0;
  double worst = 0;
  for (const ParamInfo& p : m.store().infos()) {
    for (std::size_t i = 0; i < p.size(); i += std::max<std::size_t>(1, p.size() / 7)) {
      float& w = m.store().values()[p.offset + i];
      const float saved = w;
      const float h = 1e-2f;
      w = saved + h;
      const double lp = loss_of(m, in, tgt, shape);
      w = saved - h;
      const double lm = loss_of(m, in, tgt, shape);
      w = saved;
      const double numeric = (lp - lm) / (2.0 * h);
      const double err =
          std::abs(numeric - analytic[p.offset + i]) / std::max(1e-2, std::abs(numeric));
      worst = std::max(worst, err);
      EXPECT_LT(err, 2e-2) << p.name << "[" << i << "] analytic " << analytic[p.offset + i]
                           << " numeric " << numeric;
      ++checked;
    }
  }
  EXPECT_GT(checked, 50u);
}

TEST(DecoderModel, GradientsMatchFiniteDifferences) {
  // The block's residual wiring and the model's chaining are what is checked here (each layer's
  // own backward is checked in double in tests/layers); central differences in float with
  // h = 1e-2 on a smooth FP model: agreement to ~1e-3 relative.
  check_model_gradients(tiny());
}

TEST(DecoderModel, BlockNormGradientsMatchFiniteDifferences) {
  // The block pre-norms in series with the sublayers' own, with non-uniform gains (with gains 1
  // the two norms in series collapse into one).
  ModelConfig cfg = tiny();
  cfg.block_norm = true;
  const TestModel m(cfg, 3);
  std::size_t norms = 0;
  for (const ParamInfo& p : m.store().infos())
    if (p.name.ends_with(".pre_attn.gain") || p.name.ends_with(".pre_ffn.gain")) ++norms;
  EXPECT_EQ(norms, 2 * cfg.layers);
  check_model_gradients(cfg, /*randomise_gains=*/true);
}

std::string corpus() {
  std::string s;
  for (int i = 0; i < 300; ++i) s += "abcabd abcabe. ";
  return s;
}

TrainerConfig train_config(std::size_t steps) {
  TrainerConfig c;
  c.batch = 4;
  c.seq_len = 6;
  c.schedule = TwoPhaseSchedule{.peak_lr = 1e-2f, .warmup_steps = 3, .total_steps = steps};
  c.data_seed = 11;
  return c;
}

ModelConfig byte_tiny() {
  ModelConfig c = tiny();
  c.vocab = 256;
  c.init_std = 0.05;
  return c;
}

TEST(DecoderModel, TrainsAndResumesBitIdentically) {
  const ByteDataset data(corpus());
  TestModel a(byte_tiny(), 2);
  Trainer ta(a, data, train_config(40));
  const double before = ta.evaluate().loss;
  std::vector<double> la;
  while (!ta.done()) la.push_back(ta.step().loss);
  EXPECT_LT(ta.evaluate().loss, before - 1.5);

  const std::string path =
      (std::filesystem::temp_directory_path() / ("pquant_model_" + std::to_string(::getpid())))
          .string();
  TestModel b(byte_tiny(), 2);
  Trainer tb(b, data, train_config(40));
  std::vector<double> lb;
  for (int i = 0; i < 17; ++i) lb.push_back(tb.step().loss);
  tb.save(path);
  TestModel c(byte_tiny(), 77);
  Trainer tc(c, data, train_config(40));
  tc.resume(path);
  while (!tc.done()) lb.push_back(tc.step().loss);
  std::filesystem::remove(path);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(std::memcmp(a.store().values().data(), c.store().values().data(),
                        a.store().values().size_bytes()),
            0);
}

}  // namespace
}  // namespace pquant
