// The paper's variants as types, and a fifth variant written here, in "application code":
// ternary attention with a decoupled FFN whose high-precision branch is 4-bit k-means.
#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>

#include <cstring>

#include <cmath>
#include <string>
#include <utility>
#include <vector>
#include <algorithm>

#include "pquant/layers/bit_linear.hpp"
#include "pquant/layers/decoupled_ffn.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"
#include "pquant/training/flip_ratio.hpp"
#include "pquant/training/trainer.hpp"

namespace pquant {
namespace {

// ---- the fifth variant, exactly as docs/variants.md shows it ----
struct TernaryAttnKMeansFfn {
  static constexpr std::string_view kName = "ternary-attn-kmeans4-ffn";
  using KMeans4Linear = BitLinear<KMeansCodebook<4>, Int8AbsMaxPerToken>;
  using Attention = CausalSelfAttention<TernaryBitLinear>;
  using Ffn = DecoupledFfn<KMeans4Linear, SignBitLinear>;

  static Attention::Config attention_config(const ModelConfig& c) {
    return {
        .d_model = c.d_model, .heads = c.heads, .init_std = c.init_std, .out_init_std = c.init_std};
  }
  static Ffn::Config ffn_config(const ModelConfig& c) {
    Ffn::Config f;
    f.d_model = c.d_model;
    f.d_ff = c.d_ff;
    f.r = c.r;              // width of the 4-bit k-means branch
    f.experts = c.experts;  // still a top-1 mixture if asked for
    f.init_std = c.init_std;
    return f;
  }
};
using TernaryKMeansModel = DecoderModel<TernaryAttnKMeansFfn>;
static_assert(ModelVariant<TernaryAttnKMeansFfn>);
static_assert(LanguageModel<TernaryKMeansModel>);

ModelConfig small() {
  ModelConfig c;
  c.d_model = 16;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 48;
  c.context = 16;
  c.r = 16;
  c.experts = 1;
  return c;
}

std::string corpus() {
  std::string s;
  for (int i = 0; i < 200; ++i) s += "one two three four. five six seven. ";
  return s;
}

// Trains `steps` steps; returns (validation loss before, after).
template <class Model>
std::pair<double, double> train(Model& model, std::size_t steps) {
  static const ByteDataset data(corpus());
  TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 16;
  tc.schedule = TwoPhaseSchedule{.peak_lr = 1e-2f, .warmup_steps = 2, .total_steps = steps};
  Trainer trainer(model, data, tc);
  const double before = trainer.evaluate().loss;
  while (!trainer.done()) {
    const StepReport r = trainer.step();
    EXPECT_TRUE(std::isfinite(r.loss));
  }
  return {before, trainer.evaluate().loss};
}

template <class Model>
void expect_learns(std::size_t steps = 30) {
  Model m(small(), 1);
  const auto [before, after] = train(m, steps);
  // Untrained: near-uniform predictions. The default fan-in init gives logits of std ~ 1/sqrt(3)
  // (U(+-1/sqrt(d)) head on a unit-RMS input), so the loss is about log 256 + 0.17, plus the spread
  // of a 16-wide model's hidden state: within 0.6 of log 256.
  EXPECT_NEAR(before, std::log(256.0), 0.6) << Model::variant_name();
  EXPECT_LT(after, before - 1.0) << Model::variant_name();
}

TEST(Variants, EveryPaperVariantLearns) {
  expect_learns<FP>();
  expect_learns<BitNet>();
  expect_learns<BitNet158>();
  expect_learns<PQuant<>>();
  expect_learns<PQuant<4, 16>>();
}

TEST(Variants, TheFifthVariantWrittenInApplicationCodeLearns) {
  expect_learns<TernaryKMeansModel>(20);
}

TEST(Variants, NamesAndTensorLayout) {
  EXPECT_EQ(FP::variant_name(), "fp");
  EXPECT_EQ(BitNet::variant_name(), "bitnet");
  EXPECT_EQ(BitNet158::variant_name(), "bitnet158");
  EXPECT_EQ(PQuant<>::variant_name(), "pquant");
  PQuant<> p(small(), 1);
  bool has_alpha = false, has_int1 = false, has_expert = false;
  for (const ParamInfo& i : p.store().infos()) {
    has_alpha |= i.name == "blocks.1.ffn.alpha" && i.role == ParamRole::kScalar;
    has_int1 |= i.name == "blocks.0.ffn.int1.up.weight";
    has_expert |= i.name == "blocks.0.ffn.experts.0.down.weight";
  }
  EXPECT_TRUE(has_alpha && has_int1 && has_expert);
  const ModelMetrics m = p.metrics();
  ASSERT_EQ(m.alpha.size(), 2u);
  EXPECT_FLOAT_EQ(m.alpha[0], 1.0f);  // docs/method.md section 3: initial values
  EXPECT_FLOAT_EQ(m.beta[1], 1.0f);
  // ModelConfig::alpha_init / beta_init reach every layer's scalars.
  ModelConfig c = small();
  c.alpha_init = 1.5f;
  c.beta_init = 0.7f;
  PQuant<> q(c, 1);
  const ModelMetrics mq = q.metrics();
  for (std::size_t l = 0; l < 2; ++l) {
    EXPECT_FLOAT_EQ(mq.alpha[l], 1.5f);
    EXPECT_FLOAT_EQ(mq.beta[l], 0.7f);
  }
}

// Sample std and largest magnitude of a tensor.
std::pair<double, double> spread(const ParameterStore& s, const std::string& name) {
  for (const ParamInfo& p : s.infos()) {
    if (p.name != name) continue;
    const float* w = s.values().data() + p.offset;
    double ss = 0, mx = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
      ss += double(w[i]) * w[i];
      mx = std::max(mx, std::fabs(double(w[i])));
    }
    return {std::sqrt(ss / double(p.size())), mx};
  }
  ADD_FAILURE() << "no tensor " << name;
  return {0, 0};
}

TEST(Variants, FanInInitDrawsBlockWeightsFromTheChosenDistribution) {
  // init_std 0: block weights ~ U(+-1/sqrt(in)) (std 1/sqrt(3 in)) or N(0, 1/in); the head keeps
  // nn.Linear's uniform default either way. Tensors of 2k-16k draws: sample std within 6%.
  ModelConfig c = small();
  c.d_model = 64;
  c.d_ff = 192;
  c.r = 32;
  c.experts = 2;
  for (const FanInInit f : {FanInInit::kUniform, FanInInit::kNormal}) {
    c.fan_in = f;
    PQuant<> m(c, 3);
    const double k = f == FanInInit::kNormal ? 1.0 : 1.0 / std::sqrt(3.0);
    for (const auto& [name, in] : std::vector<std::pair<std::string, double>>{
             {"blocks.0.attn.q.weight", 64},
             {"blocks.1.attn.o.weight", 64},
             {"blocks.0.ffn.int1.up.weight", 64},
             {"blocks.1.ffn.int1.down.weight", 160},
             {"blocks.0.ffn.experts.1.down.weight", 32}}) {
      const auto [sd, mx] = spread(m.store(), name);
      EXPECT_NEAR(sd, k / std::sqrt(in), 0.06 * k / std::sqrt(in)) << name;
      // Uniform: never beyond the bound; normal: a third of the draws are.
      if (f == FanInInit::kUniform)
        EXPECT_LE(mx, 1.0 / std::sqrt(in)) << name;
      else
        EXPECT_GT(mx, 2.0 / std::sqrt(in)) << name;
    }
    const auto [head_sd, head_max] = spread(m.store(), "head.weight");
    EXPECT_NEAR(head_sd, 1.0 / std::sqrt(3.0 * 64), 0.06 / std::sqrt(3.0 * 64));
    EXPECT_LE(head_max, 1.0 / std::sqrt(64.0));
  }
  // An explicit init_std ignores fan_in.
  c.init_std = 0.05;
  c.fan_in = FanInInit::kNormal;
  EXPECT_NEAR(spread(PQuant<>(c, 3).store(), "blocks.0.attn.q.weight").first, 0.05, 0.003);
  // The fan-in sentinels are the only negative init_std values a layer accepts.
  ParameterStore store;
  const ParamId w = store.add("w", 8, 8, ParamRole::kWeight);
  Rng rng(1);
  EXPECT_THROW(init::linear_weight(store.value(w), rng, -2.0), ValueError);
  EXPECT_NO_THROW(init::linear_weight(store.value(w), rng, kFanInNormalInit));
}

TEST(Variants, PQuantParametersTotalAndActive) {
  // d = 16, d_ff = 48, r = 16, SwiGLU: one expert has 3 * 16 * 16 weights (+ the gate/up/down of
  // a quantized down projection's own norm gain: 16), the 1-bit branch 3 * 16 * 32 (+ 32).
  const std::size_t expert = 3 * 16 * 16 + 16;
  PQuant<1, 16> one(small(), 1);
  PQuant<4, 16> four(small(), 1);
  EXPECT_EQ(one.active_parameter_count(), one.parameter_count());
  EXPECT_EQ(four.config().experts, 4u);
  // Four experts add three experts and a 16 x 4 router per layer; only the router is active.
  EXPECT_EQ(four.parameter_count(), one.parameter_count() + 2 * (3 * expert + 16 * 4));
  EXPECT_EQ(four.active_parameter_count(), one.parameter_count() + 2 * 16 * 4);
  ModelConfig c = small();
  c.experts = 2;
  EXPECT_THROW((PQuant<4, 16>(c, 1)), ValueError);  // the type says 4
  c.experts = 8;
  EXPECT_EQ(PQuant<>(c, 1).config().experts, 8u);
}

TEST(Variants, RouterUsageAndFlipRatioAreReported) {
  ModelConfig c = small();
  c.experts = 4;
  c.r = 8;
  PQuant<> m(c, 3);
  std::vector<std::uint8_t> codes;
  m.one_bit_codes(codes);
  // 1-bit tensors per layer: q, k, v, o (16 x 16 each) and the int1 branch (3 x 16 x 40).
  EXPECT_EQ(codes.size(), 2u * (4 * 256 + 3 * 16 * 40));
  FlipRatio flips;
  EXPECT_FALSE(flips.update(codes).has_value());
  train(m, 10);
  const ModelMetrics metrics = m.metrics();
  ASSERT_EQ(metrics.router_usage.size(), 2u);
  double routed = 0;
  for (double u : metrics.router_usage[0]) routed += u;
  EXPECT_GT(routed, 0.0);
  EXPECT_EQ(m.metrics().router_usage[0][0], 0.0);  // reset by the previous call
  m.one_bit_codes(codes);
  const auto ratio = flips.update(codes);
  ASSERT_TRUE(ratio.has_value());
  EXPECT_GT(*ratio, 0.0);  // ten steps at lr 1e-2 flip some signs ...
  EXPECT_LT(*ratio, 0.5);  // ... but not half of them
  BitNet158 t(small(), 1);
  t.one_bit_codes(codes);
  EXPECT_TRUE(codes.empty());  // ternary: no 1-bit weights
}

}  // namespace
}  // namespace pquant

namespace pquant {
namespace {

// Training results do not depend on the number of worker threads (docs/training.md).
TEST(Variants, TrainingIsBitIdenticalForOneAndTwoThreads) {
  ModelConfig c;
  c.d_model = 64;
  c.layers = 2;
  c.heads = 4;
  c.d_ff = 160;
  c.r = 32;
  c.experts = 2;
  c.context = 32;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "the quick brown fox " + std::to_string(i * 7 % 13) + ". ";
  const ByteDataset data(text);
  std::vector<std::vector<float>> weights;
  for (int threads : {1, 2}) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    PQuant<> m(c, 9);
    TrainerConfig tc;
    tc.batch = 8;
    tc.seq_len = 32;
    tc.schedule = ConstantSchedule{.peak_lr = 3e-3f, .warmup_steps = 0, .total_steps = 3};
    Trainer trainer(m, data, tc);
    while (!trainer.done()) trainer.step();
    weights.emplace_back(m.store().values().begin(), m.store().values().end());
  }
  ASSERT_EQ(weights[0].size(), weights[1].size());
  EXPECT_EQ(std::memcmp(weights[0].data(), weights[1].data(), weights[0].size() * sizeof(float)),
            0);
}

}  // namespace
}  // namespace pquant
