// BitLinear: the STE convention checked against finite differences of the STE surrogate
// (gradient_check.hpp explains why), the quantized forward against an independent computation,
// dW = dY^T X_q by hand, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gradient_check.hpp"
#include "pquant/kernels.hpp"
#include "pquant/layers.hpp"
#include "../common/type_names.hpp"

namespace pquant {
namespace {

using testing::check_gradients;
using testing::DTensor;
using testing::random_matrix;
using testing::SteSurrogate;
using testing::to_double;

template <class WQ, class AQ, class Ste, bool kNormalize>
struct Case {
  using Layer = BitLinear<WQ, AQ, Ste>;
  static constexpr bool normalize = kNormalize;
};

/// The STE mask of a rule at the latent weights: all ones, or the clip-range indicator.
template <class Ste>
void ste_mask(MatrixView<const float> w, MatrixView<float> m) {
  Matrix<float> ones(w.rows, w.cols), out(w.rows, w.cols);
  for (float& v : ones.flat()) v = 1.0f;
  Ste::backward(w, ones.view(), out.view());
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) m(r, c) = out(r, c);
}

template <class C>
class BitLinearTest : public ::testing::Test {};
using Cases =
    ::testing::Types<Case<SignAbsMean<PerTensor>, Int8AbsMaxPerToken, StraightThrough, true>,
                     Case<SignAbsMean<PerRow>, Int8AbsMaxPerToken, StraightThrough, false>,
                     Case<SignAbsMean<PerGroup<4>>, NoActivationQuant, StraightThrough, true>,
                     Case<SignAbsMean<PerTensor>, Int8AbsMaxPerToken,
                          ClippedStraightThrough<SignAbsMean<PerTensor>>, true>,
                     Case<TernaryAbsMean<PerTensor>, Int8AbsMaxPerToken, StraightThrough, true>,
                     Case<Int8AbsMax<PerRow>, Int8AbsMaxPerToken, StraightThrough, false>,
                     Case<KMeansCodebook<2, PerTensor>, Int8AbsMaxPerToken, StraightThrough, true>,
                     Case<KMeansCodebook<4, PerRow>, NoActivationQuant, StraightThrough, false>>;
TYPED_TEST_SUITE(BitLinearTest, Cases, test::TypeNames);

TYPED_TEST(BitLinearTest, SteGradientsMatchSurrogateFiniteDifferences) {
  using Layer = typename TypeParam::Layer;
  using WQ = typename Layer::weight_quantizer;
  using AQ = typename Layer::activation_quantizer;
  using Ste = typename Layer::ste_rule;
  constexpr std::size_t n = 4, in = 8, out = 5;
  ParameterStore store;
  Layer layer(store, "proj", {in, out, TypeParam::normalize, 0.5});
  Rng rng(11);
  layer.init(rng);
  if (TypeParam::normalize) init::normal(store.value(layer.norm_gain_id()), rng, 1.0);
  const Matrix<float> x = random_matrix(n, in, rng), r = random_matrix(n, out, rng);
  Matrix<float> y(n, out), dx(n, in);
  layer.forward(x, y);
  layer.backward(r, dx);

  const DTensor rd = to_double("r", r.view());
  SteSurrogate sur;
  auto surrogate_y = [&](const std::vector<DTensor>& p) {
    sur.begin_pass();
    DTensor a = p[0];
    if (TypeParam::normalize) {
      std::vector<double> inv(n);
      rmsnorm_forward<double>(p[0].view(), p[2].v.data(), 1e-5, a.view(), inv.data());
    }
    if constexpr (AQ::kQuantizes)
      sur.quantize(a.view(), [](auto i, auto o) { AQ::fake_quantize(i, o); });
    DTensor w = p[1];
    sur.quantize(
        w.view(), [](auto i, auto o) { WQ::fake_quantize(i, o); }, ste_mask<Ste>);
    DTensor yd = testing::zeros("y", n, out);
    detail::matmul_xwt<double>(a.view(), w.view(), yd.view());
    return yd;
  };
  auto loss = [&](const std::vector<DTensor>& p) {
    return testing::dot(rd.view(), surrogate_y(p).view());
  };
  std::vector<DTensor> point = {to_double("x", x.view()),
                                to_double("W", store.value(layer.weight_id()))};
  std::vector<MatrixView<const float>> analytic = {dx.view(), store.grad(layer.weight_id())};
  if (TypeParam::normalize) {
    point.push_back(to_double("gain", store.value(layer.norm_gain_id())));
    analytic.push_back(store.grad(layer.norm_gain_id()));
  }
  // Recording pass: the surrogate's forward is the layer's forward.
  const DTensor y_ref = surrogate_y(point);
  sur.freeze();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < out; ++j)
      EXPECT_NEAR(y(i, j), y_ref(i, j), 1e-5 * (1 + std::fabs(y_ref(i, j))));
  check_gradients(loss, point, analytic);

  // dW = dY^T X_q by hand (before the STE rule), from the layer's own X_q.
  const MatrixView<const float> xq = layer.quantized_input();
  Matrix<float> mask(out, in);
  ste_mask<Ste>(store.value(layer.weight_id()), mask.view());
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t c = 0; c < in; ++c) {
      double s = 0;
      for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(r(i, o)) * xq(i, c);
      EXPECT_NEAR(store.grad(layer.weight_id())(o, c), mask(o, c) * s, 1e-5);
    }
}

TEST(BitLinear, ForwardIsLambdaOverGTimesIntegerProduct) {
  // Independent computation of Y = (lambda / g) * (W1 . q) with W1 = sign(W - mean W), sign(0)=+1,
  // lambda = mean |W|, q = nearbyint(a * g), g = 127 / absmax(a) per token (no normalization here).
  constexpr std::size_t n = 3, in = 7, out = 4;
  ParameterStore store;
  BitLinear<SignAbsMean<PerTensor>> layer(store, "q", {in, out, false, 1.0});
  Rng rng(12);
  layer.init(rng);
  const Matrix<float> x = random_matrix(n, in, rng);
  Matrix<float> y(n, out);
  layer.forward(x, y);
  const MatrixView<const float> w = store.value(layer.weight_id());
  double mu = 0, lambda = 0;
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t c = 0; c < in; ++c) mu += w(o, c), lambda += std::fabs(w(o, c));
  mu /= out * in, lambda /= out * in;
  for (std::size_t i = 0; i < n; ++i) {
    float absmax = 0;
    for (std::size_t c = 0; c < in; ++c) absmax = std::max(absmax, std::fabs(x(i, c)));
    const float g = 127.0f / absmax;
    for (std::size_t o = 0; o < out; ++o) {
      long acc = 0;  // the exact integer product
      for (std::size_t c = 0; c < in; ++c) {
        const long q = std::lrint(std::nearbyint(x(i, c) * g));
        acc += (w(o, c) >= mu ? 1 : -1) * q;
      }
      EXPECT_NEAR(y(i, o), lambda / g * static_cast<double>(acc), 1e-5 * (1 + std::fabs(y(i, o))));
    }
  }
}

template <class P>
class BitLinearIntegerForward : public ::testing::Test {};
using IntegerProjections = ::testing::Types<SignBitLinear, TernaryBitLinear, Int8BitLinear,
                                            BitLinear<SignAbsMean<PerRow>>>;
TYPED_TEST_SUITE(BitLinearIntegerForward, IntegerProjections, test::TypeNames);

TYPED_TEST(BitLinearIntegerForward, EqualsTheExactIntegerProductAndInferenceEpilogue) {
  // y = epilogue(sum_c code(o, c) * q(i, c), scale(o), 1/g_i): the inference engine's formula,
  // bit for bit, with the codes and scales of the quantizer and q, g of the activation quantizer.
  static_assert(TypeParam::kIntegerForward);
  using WQ = typename TypeParam::weight_quantizer;
  // Two forwards with new latent weights in between: the second reuses the layer's packed-weight
  // buffers (1-bit: the LUT layout is repacked every step).
  constexpr std::size_t n = 3, in = 70, out = 5;
  ParameterStore store;
  TypeParam layer(store, "p", {in, out, true, 0.5});
  Rng rng(13);
  for (int round = 0; round < 2; ++round) {
    layer.init(rng);
    const Matrix<float> x = random_matrix(n, in, rng);
    Matrix<float> y(n, out), a(n, in);
    layer.forward(x, y);
    std::vector<float> inv(n);
    rmsnorm_forward<float>(x.view(), store.value(layer.norm_gain_id()).data, kRmsNormEps, a.view(),
                           inv.data());
    Matrix<std::int8_t> q(n, in);
    std::vector<float> g(n);
    Int8AbsMaxPerToken::quantize(a.view(), q.view(), g);
    const auto packed = WQ::quantize(store.value(layer.weight_id()));
    const auto scales = packed.params();
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t o = 0; o < out; ++o) {
        std::int64_t acc = 0;
        for (std::size_t c = 0; c < in; ++c) acc += packed.view().value(o, c) * q(i, c);
        const float scale = scales.size() == 1 ? scales[0] : scales[o];
        EXPECT_EQ(y(i, o), kernels::detail::epilogue_value(static_cast<std::int32_t>(acc), scale,
                                                           1.0f / g[i], 0.0f))
            << round << ": " << i << ", " << o;
      }
  }
}

TEST(BitLinear, SharedInputForwardEqualsForward) {
  // Two projections reading one quantized input give what each computes on its own.
  constexpr std::size_t n = 4, in = 16, out = 6;
  ParameterStore store;
  SignBitLinear a(store, "a", {in, out, false, 0.5}), b(store, "b", {in, out, false, 0.5});
  Rng rng(14);
  a.init(rng);
  init::normal(store.value(b.weight_id()), rng, 0.5);
  const Matrix<float> x = random_matrix(n, in, rng), dy = random_matrix(n, out, rng);
  Matrix<float> y1(n, out), y2(n, out), dx1(n, in), dx2(n, in);
  SignBitLinear::SharedInput shared;
  SignBitLinear::quantize_input(x, shared);
  a.forward_shared(shared, y1);
  a.backward(dy, dx1);
  const std::vector<float> grad_shared(store.grad(a.weight_id()).data,
                                       store.grad(a.weight_id()).data + in * out);
  store.zero_grads();
  a.forward(x, y2);
  a.backward(dy, dx2);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t o = 0; o < out; ++o) EXPECT_EQ(y1(i, o), y2(i, o));
    for (std::size_t c = 0; c < in; ++c) EXPECT_EQ(dx1(i, c), dx2(i, c));
  }
  for (std::size_t j = 0; j < in * out; ++j)
    EXPECT_EQ(grad_shared[j], store.grad(a.weight_id()).data[j]);
  b.forward_shared(shared, y1);  // the same shared operand serves another projection
  SignBitLinear normed(store, "c", {in, out, true});
  EXPECT_THROW(normed.forward_shared(shared, y1), ValueError);
}

TEST(BitLinear, RejectsBadShapesAndNonFiniteInput) {
  ParameterStore store;
  BitLinear<SignAbsMean<PerTensor>> layer(store, "q", {4, 2});
  Matrix<float> x(3, 4), y(3, 2), dx(3, 4);
  EXPECT_THROW(layer.backward(y, dx), ValueError);
  Matrix<float> bad_x(3, 5);
  EXPECT_THROW(layer.forward(bad_x, y), ShapeError);
  x(2, 1) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(layer.forward(x, y), ValueError);
  x(2, 1) = 1.0f;
  layer.forward(x, y);
  Matrix<float> bad_dx(3, 3);
  EXPECT_THROW(layer.backward(y, bad_dx), ShapeError);
  EXPECT_EQ(store.info(layer.norm_gain_id()).name, "q.norm.gain");
  EXPECT_EQ(store.info(layer.weight_id()).name, "q.weight");
}

}  // namespace
}  // namespace pquant
