// Schedule values at their boundaries, computed by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "pquant/training/schedule.hpp"

namespace pquant {
namespace {

TEST(TwoPhaseSchedule, WarmupPhaseOnePhaseTwoBoundaries) {
  const TwoPhaseSchedule s{
      .peak_lr = 1.0f, .warmup_steps = 10, .total_steps = 100, .weight_decay = 0.1f};
  EXPECT_FLOAT_EQ(s.at(0).lr, 0.1f);  // (0 + 1) / 10
  EXPECT_FLOAT_EQ(s.at(4).lr, 0.5f);
  EXPECT_FLOAT_EQ(s.at(9).lr, 1.0f);    // warm-up ends at the peak
  EXPECT_FLOAT_EQ(s.at(10).lr, 1.0f);   // phase 1 starts at the peak
  EXPECT_FLOAT_EQ(s.at(30).lr, 0.75f);  // halfway from 1.0 to 0.5 over steps 10..50
  EXPECT_FLOAT_EQ(s.at(49).lr, 1.0f - 0.5f * 39.f / 40.f);
  EXPECT_FLOAT_EQ(s.at(49).weight_decay, 0.1f);
  EXPECT_EQ(s.midpoint(), 50u);
  EXPECT_FLOAT_EQ(s.at(50).lr, 0.4f);     // phase 2 restarts lower ...
  EXPECT_EQ(s.at(50).weight_decay, 0.f);  // ... without weight decay
  EXPECT_FLOAT_EQ(s.at(75).lr, 0.2f);
  EXPECT_NEAR(s.at(99).lr, 0.4 * (1.0 - 49.0 / 50.0), 1e-7);
  EXPECT_FLOAT_EQ(s.at(5).weight_decay, 0.1f);
  EXPECT_FLOAT_EQ(s.at(1000).lr, 0.f);  // past the end: the final value
}

TEST(TwoPhaseSchedule, NoWarmupAndWarmupPastMidpoint) {
  const TwoPhaseSchedule a{.peak_lr = 2.0f, .warmup_steps = 0, .total_steps = 4};
  EXPECT_FLOAT_EQ(a.at(0).lr, 2.0f);
  EXPECT_FLOAT_EQ(a.at(1).lr, 1.5f);
  EXPECT_FLOAT_EQ(a.at(2).lr, 0.8f);
  const TwoPhaseSchedule b{.peak_lr = 1.0f, .warmup_steps = 8, .total_steps = 10};
  EXPECT_FLOAT_EQ(b.at(4).lr, 0.625f);  // still warming up: 5 / 8
  EXPECT_FLOAT_EQ(b.at(5).lr, 0.4f);    // the midpoint wins: phase 2
}

TEST(CosineSchedule, Boundaries) {
  const CosineSchedule s{.peak_lr = 1.0f,
                         .warmup_steps = 10,
                         .total_steps = 110,
                         .min_lr = 0.1f,
                         .weight_decay = 0.05f};
  EXPECT_FLOAT_EQ(s.at(0).lr, 0.1f);
  EXPECT_FLOAT_EQ(s.at(10).lr, 1.0f);
  EXPECT_FLOAT_EQ(s.at(60).lr, 0.55f);  // halfway: (peak + min) / 2
  EXPECT_NEAR(s.at(109).lr, 0.1 + 0.45 * (1 + std::cos(std::numbers::pi * 99 / 100)), 1e-6);
  EXPECT_FLOAT_EQ(s.at(110).lr, 0.1f);
  EXPECT_FLOAT_EQ(s.at(60).weight_decay, 0.05f);
}

TEST(ConstantSchedule, Boundaries) {
  const ConstantSchedule s{
      .peak_lr = 0.5f, .warmup_steps = 2, .total_steps = 10, .weight_decay = 0.f};
  EXPECT_FLOAT_EQ(s.at(0).lr, 0.25f);
  EXPECT_FLOAT_EQ(s.at(1).lr, 0.5f);
  EXPECT_FLOAT_EQ(s.at(9).lr, 0.5f);
}

TEST(AnySchedule, ByNameAndBadConfigs) {
  EXPECT_FLOAT_EQ(make_schedule("two-phase", 1.f, 0, 4).at(2).lr, 0.4f);
  EXPECT_EQ(make_schedule("cosine", 1.f, 0, 4).name(), "cosine");
  EXPECT_FLOAT_EQ(make_schedule("constant", 1.f, 0, 4).at(3).lr, 1.f);
  EXPECT_THROW(make_schedule("linear", 1.f, 0, 4), ValueError);
  // phase2_end: where the two-phase schedule's phase 2 ends (share of the peak, reached at
  // total_steps; step 3 of 4 is halfway from 0.4), no other schedule's.
  EXPECT_FLOAT_EQ(make_schedule("two-phase", 1.f, 0, 4, 0.1f, 0.04f).at(3).lr, 0.22f);
  EXPECT_FLOAT_EQ(make_schedule("two-phase", 1.f, 0, 4, 0.1f, 0.04f).at(4).lr, 0.04f);
  EXPECT_FLOAT_EQ(make_schedule("two-phase", 1.f, 0, 4, 0.1f).at(3).lr, 0.2f);
  EXPECT_THROW(make_schedule("cosine", 1.f, 0, 4, 0.1f, 0.04f), ValueError);
  EXPECT_THROW(make_schedule("cosine", 1.f, 4, 4).at(0), ValueError);  // warm-up >= total
  EXPECT_THROW(make_schedule("cosine", -1.f, 0, 4).at(0), ValueError);
  EXPECT_THROW(make_schedule("constant", 1.f, 0, 0).at(0), ValueError);
}

}  // namespace
}  // namespace pquant
