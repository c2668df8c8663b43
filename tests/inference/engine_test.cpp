// Engine vs an independent scalar reference (reference_forward.hpp) for every variant; prefill vs
// step-by-step decoding; KV-cache limits; router and token errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/random_model.hpp"
#include "reference_forward.hpp"

using namespace pquant;
using namespace pquant::inference;

namespace {

InferenceConfig small_config(Variant v, std::size_t experts = 1, bool swiglu = true) {
  InferenceConfig c;
  c.variant = v;
  c.vocab = 48;
  c.d_model = 64;
  c.layers = 2;
  c.heads = 4;
  c.d_ff = 160;
  c.r = v == Variant::kPQuant ? 32 : 0;
  c.experts = v == Variant::kPQuant ? experts : 1;
  c.context = 24;
  c.swiglu = swiglu;
  return c;
}

std::vector<int> some_tokens(std::size_t n, std::size_t vocab) {
  std::vector<int> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<int>((i * 7 + 3) % vocab);
  return t;
}

/// max |a - b| / max |b| over all logits, and whether every position's argmax agrees.
void expect_matches(const Matrix<float>& got, const std::vector<reference::Vec>& ref, double tol) {
  double diff = 0, scale = 0;
  for (std::size_t t = 0; t < ref.size(); ++t) {
    std::size_t ag = 0, ar = 0;
    for (std::size_t i = 0; i < ref[t].size(); ++i) {
      diff = std::fmax(diff, std::fabs(got(t, i) - ref[t][i]));
      scale = std::fmax(scale, std::fabs(ref[t][i]));
      if (got(t, i) > got(t, ag)) ag = i;
      if (ref[t][i] > ref[t][ar]) ar = i;
    }
    EXPECT_EQ(ag, ar) << "argmax differs at position " << t;
  }
  EXPECT_LT(diff / scale, tol) << "max relative error " << diff / scale;
}

struct Case {
  Variant variant;
  std::size_t experts;
  bool swiglu;
};

class EngineVsReference : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(EngineVsReference, LogitsMatchAndPrefillEqualsDecode) {
  const Case c = GetParam();
  const PackedModel m = random_packed_model(small_config(c.variant, c.experts, c.swiglu), 7);
  const std::vector<int> tokens = some_tokens(12, m.config.vocab);
  Engine batched(m);
  const Matrix<float> all = batched.forward_all(tokens);
  expect_matches(all, reference::reference_logits(m, tokens), 1e-3);
  if (c.experts > 1) {  // the router must actually route to several experts
    std::vector<int> used(c.experts, 0);
    for (std::size_t e : batched.last_experts()) used[e] = 1;
    int distinct = 0;
    for (int u : used) distinct += u;
    EXPECT_GT(distinct, 1);
  }
  // Token by token with the KV cache = the batched pass. Integer products are exact in both; FP32
  // products (head, FP variant) sum in another order in GEMM than in GEMV, hence 1e-5, not 0.
  auto near = [&](std::span<const float> logits, std::size_t t) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      diff = std::fmax(diff, std::fabs(logits[i] - all(t, i)));
      scale = std::fmax(scale, std::fabs(all(t, i)));
    }
    EXPECT_LT(diff / scale, 1e-5) << "position " << t;
  };
  Engine step(m);
  for (std::size_t t = 0; t < tokens.size(); ++t) near(step.step(tokens[t]), t);
  // Prefill of a prefix then decode: the same again.
  Engine mixed(m);
  near(mixed.prefill(std::span<const int>(tokens.data(), 5)), 4);
  for (std::size_t t = 5; t < tokens.size(); ++t) near(mixed.step(tokens[t]), t);
  EXPECT_EQ(mixed.position(), tokens.size());
}

INSTANTIATE_TEST_SUITE_P(
    Variants, EngineVsReference,
    ::testing::Values(Case{Variant::kFp, 1, true}, Case{Variant::kBitNet, 1, true},
                      Case{Variant::kBitNet158, 1, true}, Case{Variant::kPQuant, 1, true},
                      Case{Variant::kPQuant, 4, true}, Case{Variant::kPQuant, 4, false}));

TEST(Engine, RejectsBadTokensAndContextOverflow) {
  const PackedModel m = random_packed_model(small_config(Variant::kPQuant, 2), 1);
  Engine e(m);
  EXPECT_THROW((void)e.step(-1), ValueError);
  EXPECT_THROW((void)e.step(48), ValueError);
  EXPECT_THROW((void)e.prefill({}), ShapeError);
  const std::vector<int> full = some_tokens(24, 48);
  (void)e.prefill(full);
  EXPECT_THROW((void)e.step(1), ValueError);  // context of 24 is full
  e.reset();
  EXPECT_NO_THROW((void)e.step(1));
}

TEST(Engine, RejectsInconsistentModels) {
  PackedModel m = random_packed_model(small_config(Variant::kBitNet), 1);
  m.blocks[1].down_norm.resize(3);
  EXPECT_THROW(Engine{m}, ShapeError);
  PackedModel p = random_packed_model(small_config(Variant::kPQuant, 2), 1);
  p.blocks[0].expert_up.pop_back();
  EXPECT_THROW(Engine{p}, ShapeError);
}

// Decoding takes other FP32 GEMM paths when a head is wider than 128 or more than 128 keys are
// cached (see Engine::decode_attention): still the batched pass's values and the reference's.
TEST(Engine, LongContextAndWideHeadsDecodeAsBatched) {
  for (std::size_t heads : {1, 4}) {  // head_dim 256 and 64
    InferenceConfig c = small_config(Variant::kPQuant, 2);
    c.d_model = 256;
    c.heads = heads;
    c.layers = 1;
    c.context = 150;
    const PackedModel m = random_packed_model(c, 5);
    const std::vector<int> tokens = some_tokens(c.context, c.vocab);
    Engine batched(m);
    const Matrix<float> all = batched.forward_all(tokens);
    expect_matches(all, reference::reference_logits(m, tokens), 1e-3);
    Engine step(m);
    (void)step.prefill(std::span<const int>(tokens.data(), 3));
    double diff = 0, scale = 0;
    for (std::size_t t = 3; t < tokens.size(); ++t) {
      const std::span<const float> logits = step.step(tokens[t]);
      for (std::size_t i = 0; i < logits.size(); ++i) {
        diff = std::fmax(diff, std::fabs(logits[i] - all(t, i)));
        scale = std::fmax(scale, std::fabs(all(t, i)));
      }
    }
    EXPECT_LT(diff / scale, 1e-5) << heads << " heads";
  }
}
