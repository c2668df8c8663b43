// Engine: batched prefill vs token-by-token decoding (same logits; bit for bit on the integer
// paths), the KV cache across its growth and past the in-place attention length, the context
// policy, bad tokens, inconsistent models, owning engines, and router diagnostics.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/random_model.hpp"
#include "pquant/model/variants.hpp"
#include "test_variants.hpp"

using namespace pquant;
using namespace pquant::inference;

namespace {

ModelConfig config(std::size_t experts, std::size_t context, std::size_t heads = 4) {
  ModelConfig c;
  c.vocab = 48;
  c.d_model = 64;
  c.layers = 2;
  c.heads = heads;
  c.d_ff = 160;
  c.r = 32;
  c.experts = experts;
  c.context = context;
  return c;
}

std::vector<int> some_tokens(std::size_t n, std::size_t vocab) {
  std::vector<int> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<int>((i * 7 + 3) % vocab);
  return t;
}

/// Decoding token by token gives the batched pass's logits. Every layer is bit for bit the same
/// on the integer paths; the head (FP32 GEMV for one token, GEMM for several) sums in another
/// order, so logits agree to `tol` relative to the largest.
void expect_decode_equals_batched(const PackedModel& m, std::size_t n, double tol) {
  const std::vector<int> ids = some_tokens(n, m.structure.vocab);
  Engine batched(m);
  const Matrix<float> all = batched.forward_all(ids);
  float scale = 0;
  for (float v : all.flat()) scale = std::max(scale, std::fabs(v));
  Engine step(m);
  for (std::size_t t = 0; t < n; ++t) {
    const std::span<const float> logits = step.step(ids[t]);
    for (std::size_t i = 0; i < m.structure.vocab; ++i)
      ASSERT_LE(std::fabs(logits[i] - all(t, i)), tol * scale)
          << "position " << t << " logit " << i;
  }
}

template <class V, std::size_t Experts>
struct Case {
  using variant = V;
  static constexpr std::size_t kExperts = Experts;
  static std::string name() {
    std::string n(V::kName);
    for (char& ch : n)
      if (ch == '-') ch = '_';
    return n + "_N" + std::to_string(Experts);
  }
};

template <class C>
class EngineDecode : public ::testing::Test {};
using Cases = ::testing::Types<Case<variants::BitNet, 1>, Case<variants::BitNet158, 1>,
                               Case<variants::PQuant<>, 4>, Case<test_variants::PQuantPerRow, 2>,
                               Case<test_variants::TernaryKMeansExperts, 2>>;
struct CaseNames {
  template <class C>
  static std::string GetName(int) {
    return C::name();
  }
};
TYPED_TEST_SUITE(EngineDecode, Cases, CaseNames);

TYPED_TEST(EngineDecode, DecodeEqualsBatched) {
  const PackedModel m =
      random_packed_model<typename TypeParam::variant>(config(TypeParam::kExperts, 24), 5);
  expect_decode_equals_batched(m, 24, 1e-5);
}

TEST(Engine, FpDecodeIsCloseToBatched) {
  expect_decode_equals_batched(random_packed_model<variants::FP>(config(1, 20), 6), 20, 1e-5);
}

TEST(Engine, LongContextAndWideHeadsDecodeAsBatched) {
  // 200 positions: the cache grows several times and passes the in-place attention length (128);
  // one head of width 128 takes the other decode product.
  expect_decode_equals_batched(random_packed_model<variants::BitNet>(config(1, 200), 7), 200, 1e-5);
  expect_decode_equals_batched(random_packed_model<variants::BitNet>(config(1, 140, 1), 8), 140,
                               1e-5);
}

TEST(Engine, PrefillThenDecodeContinuesTheSequence) {
  const PackedModel m = random_packed_model<variants::PQuant<>>(config(2, 20), 9);
  const std::vector<int> ids = some_tokens(12, m.structure.vocab);
  Engine all(m);
  const Matrix<float> want = all.forward_all(ids);
  float scale = 0;
  for (float v : want.flat()) scale = std::max(scale, std::fabs(v));
  Engine e(m);
  e.prefill(std::span<const int>(ids).first(7));
  for (std::size_t t = 7; t < ids.size(); ++t) {
    const std::span<const float> got = e.step(ids[t]);
    for (std::size_t i = 0; i < m.structure.vocab; ++i)
      ASSERT_LE(std::fabs(got[i] - want(t, i)), 1e-5 * scale);
  }
  EXPECT_EQ(e.position(), ids.size());
  EXPECT_EQ(e.last_experts().size(), m.structure.layers());  // one token, every layer
}

TEST(Engine, ContextIsAClearError) {
  const PackedModel m = random_packed_model<variants::BitNet>(config(1, 8), 10);
  Engine e(m);
  e.prefill(some_tokens(8, m.structure.vocab));
  try {
    e.step(1);
    ADD_FAILURE() << "decoded past the context";
  } catch (const ValueError& err) {
    EXPECT_NE(std::string(err.what()).find("context of 8"), std::string::npos) << err.what();
  }
  e.reset();
  EXPECT_NO_THROW(e.step(1));
  EXPECT_THROW(e.step(-1), ValueError);
  EXPECT_THROW(e.step(48), ValueError);
  EXPECT_THROW(e.prefill(std::span<const int>()), ShapeError);
}

TEST(Engine, OwningEngineOutlivesItsSource) {
  std::vector<float> want;
  std::unique_ptr<Engine> e;
  {
    auto m = std::make_shared<const PackedModel>(
        random_packed_model<variants::BitNet158>(config(1, 8), 11));
    Engine reference(*m);
    const std::span<const float> l = reference.step(3);
    want.assign(l.begin(), l.end());
    e = std::make_unique<Engine>(m);
  }
  const std::span<const float> got = e->step(3);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]);
  static_assert(!std::is_constructible_v<Engine, PackedModel&&>);
  static_assert(std::is_constructible_v<Engine, const PackedModel&>);
}

TEST(Engine, RejectsInconsistentModels) {
  PackedModel m = random_packed_model<variants::PQuant<>>(config(2, 8), 12);
  m.blocks[1].router = Matrix<float>();
  EXPECT_THROW(Engine{m}, ShapeError);
  PackedModel n = random_packed_model<variants::BitNet>(config(1, 8), 13);
  n.structure.blocks[0].o_form = "f32";
  EXPECT_THROW(Engine{n}, ShapeError);
}

}  // namespace
