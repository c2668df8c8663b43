// The ablation variants (model/ablation_variants.hpp): each learns, each is reachable by name, and
// pQuant with fixed branch scales keeps alpha, beta at their init while pQuant's own move.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

#include "pquant/model/ablation_variants.hpp"
#include "pquant/training/trainer.hpp"

namespace pquant {
namespace {

ModelConfig small() {
  ModelConfig c;
  c.d_model = 16;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 48;
  c.context = 16;
  c.r = 16;
  c.experts = 1;
  c.alpha_init = 1.0f;
  c.beta_init = 1.0f;
  return c;
}

// Trains `steps` steps; returns (validation loss before, after).
template <class Model>
std::pair<double, double> train(Model& model, std::size_t steps) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "one two three four. five six seven. ";
  static const ByteDataset data(text);
  TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 16;
  tc.schedule = TwoPhaseSchedule{.peak_lr = 1e-2f, .warmup_steps = 2, .total_steps = steps};
  Trainer trainer(model, data, tc);
  const double before = trainer.evaluate().loss;
  while (!trainer.done()) EXPECT_TRUE(std::isfinite(trainer.step().loss));
  return {before, trainer.evaluate().loss};
}

template <class Model>
void expect_learns() {
  Model m(small(), 1);
  const auto [before, after] = train(m, 30);
  EXPECT_NEAR(before, std::log(256.0), 0.6) << Model::variant_name();
  EXPECT_LT(after, before - 1.0) << Model::variant_name();
}

TEST(AblationVariants, EveryAblationVariantLearns) {
  expect_learns<PQuantFixedScales>();
  expect_learns<BitNetKeep5>();
  expect_learns<BitNetKeep1p3>();
  expect_learns<BitNetRowScales>();
  expect_learns<BitNetGroup64>();
  expect_learns<BitNetKMeans>();
}

TEST(AblationVariants, FixedScalesStayAtTheirInitLearnedOnesMove) {
  PQuantFixedScales fixed(small(), 1);
  PQuant<> learned(small(), 1);
  train(fixed, 10);
  train(learned, 10);
  const ModelMetrics f = fixed.metrics(), l = learned.metrics();
  ASSERT_EQ(f.alpha.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(f.alpha[i], 1.0f);
    EXPECT_EQ(f.beta[i], 1.0f);
    EXPECT_NE(l.alpha[i], 1.0f);
    EXPECT_NE(l.beta[i], 1.0f);
  }
}

TEST(AblationVariants, StudyVariantsNameThePaperFourAndTheAblations) {
  EXPECT_EQ(StudyVariants::size, PaperVariants::size + 6);
  for (std::string_view name : PaperVariants::names()) EXPECT_TRUE(StudyVariants::contains(name));
  const std::string got = visit_variant<StudyVariants>(
      "bitnet-kmeans", []<class V>(std::type_identity<V>) { return std::string(V::kName); });
  EXPECT_EQ(got, "bitnet-kmeans");
  EXPECT_TRUE((std::is_same_v<variants::BitNetKMeans::Attention,
                              CausalSelfAttention<BitLinear<KMeansCodebook<1, PerRow>>>>));
  EXPECT_THROW(visit_variant<StudyVariants>("bitnet-keep6", [](auto) { return 0; }), ValueError);
  EXPECT_FALSE(PaperVariants::contains("bitnet-kmeans"));  // generate serves the paper's four
}

}  // namespace
}  // namespace pquant
