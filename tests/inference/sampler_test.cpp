// Sampler: greedy ties, determinism by seed, top-k / top-p support, empirical frequencies.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "pquant/inference/sampler.hpp"

using namespace pquant;
using namespace pquant::inference;

TEST(Sampler, GreedyTakesTheLowestIndexOnTies) {
  Sampler s;
  EXPECT_EQ(s.sample(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(Sampler::argmax(std::vector<float>{-1, -1}), 0);
  EXPECT_THROW((void)s.sample(std::vector<float>{1, NAN}), ValueError);
  EXPECT_THROW((void)s.sample(std::vector<float>{}), ShapeError);
  EXPECT_THROW(Sampler({1.0f, 0, 0.0f, 1}), ValueError);
  EXPECT_THROW(Sampler({NAN, 0, 1.0f, 1}), ValueError);
}

TEST(Sampler, SameSeedSameTokens) {
  const std::vector<float> logits = {0.1f, 0.5f, 0.2f, 0.9f, -0.3f};
  Sampler a({1.0f, 0, 1.0f, 42}), b({1.0f, 0, 1.0f, 42}), c({1.0f, 0, 1.0f, 43});
  std::vector<int> ta, tb, tc;
  for (int i = 0; i < 50; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
    tc.push_back(c.sample(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampler, TopKAndTopPRestrictTheSupport) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  Sampler k2({1.0f, 2, 1.0f, 1});
  Sampler p70({1.0f, 0, 0.7f, 2});  // 0.5 < 0.7 <= 0.8: tokens 0 and 1
  Sampler p50({1.0f, 0, 0.5f, 3});  // 0.5 reaches 0.5: token 0 only
  for (int i = 0; i < 300; ++i) {
    EXPECT_LT(k2.sample(logits), 2);
    EXPECT_LT(p70.sample(logits), 2);
    EXPECT_EQ(p50.sample(logits), 0);
  }
}

TEST(Sampler, FrequenciesFollowTheTemperedDistribution) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  const float temperature = 2.0f;
  Sampler s({temperature, 0, 1.0f, 9});
  std::map<int, int> counts;
  const int n = 60000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits)];
  double z = 0;
  for (float l : logits) z += std::exp(l / temperature);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(logits[static_cast<std::size_t>(i)] / temperature) / z;
    EXPECT_NEAR(counts[i] / static_cast<double>(n), p, 0.01) << i;  // ~5 sigma
  }
}
