// BorrowedInput (layers/layer.hpp): a forward on a lent input gives the same outputs, input
// gradients and parameter gradients, bit for bit, as the copying forward; the copying forward still
// owns its copy and still rejects NaN/Inf; inside a model, a non-finite value still surfaces.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gradient_check.hpp"
#include "pquant/layers.hpp"
#include "pquant/model.hpp"

namespace pquant {
namespace {

using testing::random_matrix;

struct Outcome {
  Matrix<float> y, dx;
  std::vector<float> grads;
};

bool same_bits(MatrixView<const float> a, MatrixView<const float> b) {
  if (a.rows != b.rows || a.cols != b.cols) return false;
  for (std::size_t i = 0; i < a.rows; ++i)
    if (std::memcmp(&a(i, 0), &b(i, 0), a.cols * sizeof(float)) != 0) return false;
  return true;
}

// A fresh layer (same construction and seed every time), one forward on x (lent or copied), then
// one backward of dy. With `clobber`, x is overwritten between forward and backward (allowed only
// for the copying forward).
template <class Layer, class... Shape>
Outcome run(typename Layer::Config cfg, const Matrix<float>& x, const Matrix<float>& dy,
            bool lend, bool clobber, Shape... shape) {
  ParameterStore store;
  Layer layer(store, "l", cfg);
  Rng rng(7);
  layer.init(rng);
  for (float& v : store.values()) v += static_cast<float>(rng.normal(0.0, 0.1));  // gains != 1
  Matrix<float> input = x;
  Outcome out{Matrix<float>(x.rows(), dy.cols()), Matrix<float>(x.rows(), x.cols()), {}};
  if (lend)
    layer.forward(input.view(), out.y.view(), shape..., borrowed_input);
  else
    layer.forward(input.view(), out.y.view(), shape...);
  if (clobber)
    for (float& v : input.flat()) v = 1e3f;
  store.zero_grads();
  layer.backward(dy.view(), out.dx.view());
  out.grads.assign(store.grads().begin(), store.grads().end());
  return out;
}

template <class Layer, class... Shape>
void expect_lent_equals_copied(typename Layer::Config cfg, std::size_t n, std::size_t in,
                               std::size_t out, Shape... shape) {
  Rng rng(11);
  const Matrix<float> x = random_matrix(n, in, rng), dy = random_matrix(n, out, rng);
  const Outcome copied = run<Layer>(cfg, x, dy, false, true, shape...);
  const Outcome lent = run<Layer>(cfg, x, dy, true, false, shape...);
  EXPECT_TRUE(same_bits(copied.y.view(), lent.y.view()));
  EXPECT_TRUE(same_bits(copied.dx.view(), lent.dx.view()));
  ASSERT_EQ(copied.grads.size(), lent.grads.size());
  EXPECT_EQ(std::memcmp(copied.grads.data(), lent.grads.data(), lent.grads.size() * sizeof(float)),
            0);
  // The copying forward's backward did not read x after it was overwritten: its gradients are
  // those of a run that left x alone.
  const Outcome untouched = run<Layer>(cfg, x, dy, false, false, shape...);
  EXPECT_EQ(std::memcmp(copied.grads.data(), untouched.grads.data(),
                        untouched.grads.size() * sizeof(float)),
            0);
}

TEST(BorrowedInput, LinearAndRmsNorm) {
  expect_lent_equals_copied<Linear>({6, 5, true}, 9, 6, 5);
  expect_lent_equals_copied<RMSNorm>({7}, 9, 7, 7);
}

TEST(BorrowedInput, NormedAndQuantizedProjections) {
  expect_lent_equals_copied<NormedLinear>({6, 5, true}, 9, 6, 5);
  expect_lent_equals_copied<NormedLinear>({6, 5, false}, 9, 6, 5);
  expect_lent_equals_copied<SignBitLinear>({6, 5, true}, 9, 6, 5);
  expect_lent_equals_copied<TernaryBitLinear>({6, 5, false}, 9, 6, 5);
}

TEST(BorrowedInput, AttentionAndFfns) {
  const SequenceShape shape{2, 5};
  expect_lent_equals_copied<CausalSelfAttention<NormedLinear>>({8, 2}, 10, 8, 8, shape);
  expect_lent_equals_copied<CausalSelfAttention<SignBitLinear>>({8, 2}, 10, 8, 8, shape);
  expect_lent_equals_copied<Ffn<NormedLinear>>({8, 12}, 10, 8, 8);
  expect_lent_equals_copied<Ffn<SignBitLinear>>({8, 12}, 10, 8, 8);
  typename DecoupledFfn<>::Config cfg;
  cfg.d_model = 8, cfg.d_ff = 16, cfg.r = 4, cfg.experts = 3;
  expect_lent_equals_copied<DecoupledFfn<>>(cfg, 10, 8, 8);
}

TEST(BorrowedInput, CopyingForwardStillRejectsNonFiniteInput) {
  ParameterStore store;
  Ffn<NormedLinear> ffn(store, "f", {4, 6});
  CausalSelfAttention<NormedLinear> att(store, "a", {4, 2});
  Matrix<float> x(4, 4), y(4, 4);
  x(2, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(ffn.forward(x.view(), y.view()), ValueError);
  EXPECT_THROW(att.forward(x.view(), y.view(), SequenceShape{1, 4}), ValueError);
  // Lent inputs are not scanned, but their shapes are checked.
  Matrix<float> wrong(4, 5);
  EXPECT_THROW(ffn.forward(wrong.view(), y.view(), borrowed_input), ShapeError);
}

TEST(BorrowedInput, NonFiniteValueInsideTheModelSurfacesInTheLoss) {
  ModelConfig cfg;
  cfg.d_model = 8, cfg.layers = 2, cfg.heads = 2, cfg.d_ff = 16, cfg.context = 4, cfg.vocab = 16;
  FP model(cfg, 3);
  // One weight of the second block's FFN: the model lends its activations to every layer, so no
  // layer scans its input; the NaN reaches the logits, which the loss checks.
  const ParamId id = model.block(1).ffn().branch().up().weight_id();
  model.store().value(id)(0, 0) = std::numeric_limits<float>::infinity();
  const std::vector<TokenId> tokens = {1, 2, 3, 4};
  const std::vector<std::int32_t> targets = {2, 3, 4, 5};
  EXPECT_THROW(model.forward_backward(tokens, targets, SequenceShape{1, 4}), ValueError);
}

}  // namespace
}  // namespace pquant
