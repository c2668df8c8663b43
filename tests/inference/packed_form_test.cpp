// Every library quantizer's packed form against the training side: BitLinear<Q>'s quantized
// forward (fake-quantized or integer product, independent of the packed code) on the same latent
// weights and inputs. Prefill (gemm) and decoding (gemv) must equal it bit for bit; stacked parts
// keep their own scales; a save/load round trip changes nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "pquant/layers/bit_linear.hpp"
#include "pquant/quantizers/int8_absmax.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"
#include "pquant/quantizers/packed_fp32.hpp"
#include "pquant/quantizers/packed_int8.hpp"
#include "pquant/quantizers/packed_lut.hpp"
#include "pquant/quantizers/sign_absmean.hpp"
#include "pquant/quantizers/ternary_absmean.hpp"

using namespace pquant;

namespace {

Matrix<float> random_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed, float bound) {
  Rng rng(seed);
  Matrix<float> m(rows, cols);
  for (float& v : m.flat()) v = static_cast<float>(rng.uniform(-bound, bound));
  return m;
}

/// The training side's product: BitLinear<Q> without its own norm, latent weights w.
template <class Q>
Matrix<float> training_product(MatrixView<const float> w, MatrixView<const float> a) {
  using BL = BitLinear<Q, Int8AbsMaxPerToken>;
  ParameterStore store;
  BL layer(store, "p", typename BL::Config{w.cols, w.rows, false, 0.02});
  MatrixView<float> latent = store.value(layer.weight_id());
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) latent(r, c) = w(r, c);
  typename BL::SharedInput in;
  BL::quantize_input(a, in);
  Matrix<float> y(a.rows, w.rows);
  layer.forward_shared(in, y.view());
  return y;
}

struct Activations {
  typename BitLinear<SignAbsMean<>>::SharedInput in;
  ActivationRows rows(MatrixView<const float> a, std::size_t t0, std::size_t n) const {
    return {a.row_range(t0, n), in.codes.view().row_range(t0, n),
            std::span<const float>(in.inv_gain).subspan(t0, n), in.xq.view().row_range(t0, n)};
  }
};

void expect_bits_equal(MatrixView<const float> got, MatrixView<const float> want,
                       const std::string& what) {
  ASSERT_EQ(got.rows, want.rows);
  ASSERT_EQ(got.cols, want.cols);
  for (std::size_t r = 0; r < got.rows; ++r)
    for (std::size_t c = 0; c < got.cols; ++c)
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got(r, c)), std::bit_cast<std::uint32_t>(want(r, c)))
          << what << " at (" << r << ", " << c << "): " << got(r, c) << " vs " << want(r, c);
}

template <class Q>
class PackedFormTest : public ::testing::Test {};

using Quantizers =
    ::testing::Types<SignAbsMean<PerTensor>, SignAbsMean<PerRow>, SignAbsMean<PerGroup<64>>,
                     TernaryAbsMean<PerTensor>, TernaryAbsMean<PerGroup<64>>, Int8AbsMax<PerRow>,
                     Int8AbsMax<PerTensor>, KMeansCodebook<2, PerTensor>, KMeansCodebook<2, PerRow>,
                     KMeansCodebook<4, PerTensor>, KMeansCodebook<4, PerRow>>;

struct QuantizerNames {
  template <class Q>
  static std::string GetName(int) {
    return std::string(Q::kName) + "_" + Q::scales_type::name();
  }
};
TYPED_TEST_SUITE(PackedFormTest, Quantizers, QuantizerNames);

TYPED_TEST(PackedFormTest, MatchesTrainingForwardBitForBit) {
  using Q = TypeParam;
  static_assert(ServableQuantizer<Q>);
  using P = packed_form_t<Q>;
  // Shapes off every tile, group and padding multiple; two stacked parts of different scales.
  const Matrix<float> w1 = random_matrix(37, 150, 1, 0.05f);
  const Matrix<float> w2 = random_matrix(29, 150, 2, 0.5f);
  const Matrix<float> a = random_matrix(5, 150, 3, 2.0f);
  const Matrix<float> y1 = training_product<Q>(w1.view(), a.view());
  const Matrix<float> y2 = training_product<Q>(w2.view(), a.view());
  Matrix<float> want(5, 66);
  for (std::size_t t = 0; t < 5; ++t)
    for (std::size_t c = 0; c < 66; ++c) want(t, c) = c < 37 ? y1(t, c) : y2(t, c - 37);

  const std::vector<MatrixView<const float>> parts{w1.view(), w2.view()};
  const P packed = P::template pack<Q>(parts);
  ASSERT_EQ(packed.rows(), 66u);
  ASSERT_EQ(packed.cols(), 150u);
  Activations act;
  BitLinear<SignAbsMean<>>::quantize_input(a.view(), act.in);
  Matrix<float> got(5, 66);
  packed.gemm(act.rows(a.view(), 0, 5), got.view());
  expect_bits_equal(got.view(), want.view(), "gemm");
  for (std::size_t t = 0; t < 5; ++t) {
    Matrix<float> one(1, 66);
    packed.gemv(act.rows(a.view(), t, 1), one.view());
    expect_bits_equal(one.view(), want.view().row_range(t, 1), "gemv token " + std::to_string(t));
  }

  // Save and load: same tensors as expected(), same products.
  io::SafetensorsWriter writer;
  packed.save(writer, "w");
  const std::vector<std::uint8_t> bytes = writer.serialize();
  const io::SafetensorsView view = io::SafetensorsView::parse(bytes);
  const std::vector<TensorSpec> specs = P::expected("w", 66, 150);
  ASSERT_EQ(view.tensors().size(), specs.size());
  for (const TensorSpec& s : specs) {
    const io::TensorInfo* t = view.find(s.name);
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->dtype, s.dtype) << s.name;
    EXPECT_EQ(t->shape, s.shape) << s.name;
  }
  const P loaded = P::load(view, "w", 66, 150);
  Matrix<float> again(5, 66);
  loaded.gemm(act.rows(a.view(), 0, 5), again.view());
  expect_bits_equal(again.view(), want.view(), "gemm after load");
  EXPECT_EQ(P::describe()["form"].template get<std::string>(), std::string(P::kId));
}

TEST(PackedForm, Fp32MatchesLinearInPrefill) {
  const Matrix<float> w = random_matrix(40, 96, 4, 0.2f);
  const Matrix<float> a = random_matrix(6, 96, 5, 1.0f);
  Matrix<float> want(6, 40);
  kernels::gemm_forward(a.view(), w.view(), want.view());  // Linear's forward product
  const std::vector<MatrixView<const float>> parts{w.view()};
  const Fp32Weights p = Fp32Weights::pack(parts);
  Matrix<float> got(6, 40);
  p.gemm({a.view(), {}, {}, {}}, got.view());
  expect_bits_equal(got.view(), want.view(), "f32 gemm");
  Matrix<float> one(1, 40);
  p.gemv({a.view().row_range(2, 1), {}, {}, {}}, one.view());
  for (std::size_t c = 0; c < 40; ++c) EXPECT_NEAR(one(0, c), want(2, c), 1e-5);
}

TEST(PackedForm, LoadRejectsBadCodesAndValues) {
  const Matrix<float> w = random_matrix(8, 20, 6, 0.1f);
  const std::vector<MatrixView<const float>> parts{w.view()};
  using P = packed_form_t<TernaryAbsMean<PerTensor>>;
  const P packed = P::pack<TernaryAbsMean<PerTensor>>(parts);
  io::SafetensorsWriter writer;
  packed.save(writer, "w");
  std::vector<std::uint8_t> bytes = writer.serialize();
  const io::SafetensorsView good = io::SafetensorsView::parse(bytes);
  const io::TensorInfo codes = good.at("w.codes"), scale = good.at("w.scale");
  const std::size_t data = bytes.size() - static_cast<std::size_t>(good.tensors().back().end);
  {  // a ternary code 3
    std::vector<std::uint8_t> b = bytes;
    b[data + codes.begin] = 0x03;
    EXPECT_THROW((void)P::load(io::SafetensorsView::parse(b), "w", 8, 20), FormatError);
  }
  {  // a padding row with a non-zero code
    std::vector<std::uint8_t> b = bytes;
    b[data + codes.begin + 31] = 0x01;
    EXPECT_THROW((void)P::load(io::SafetensorsView::parse(b), "w", 8, 20), FormatError);
  }
  {  // a NaN scale
    std::vector<std::uint8_t> b = bytes;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(&b[data + scale.begin], &nan, 4);
    EXPECT_THROW((void)P::load(io::SafetensorsView::parse(b), "w", 8, 20), FormatError);
  }
  // A shape the structure does not ask for.
  EXPECT_THROW((void)P::load(good, "w", 9, 20), FormatError);
}

TEST(PackedForm, UnservableQuantizersHaveNoForm) {
  static_assert(!ServableQuantizer<KMeansCodebook<8, PerRow>>);
  static_assert(!ServableQuantizer<Int8AbsMax<PerGroup<64>>>);
  static_assert(ServableQuantizer<SignAbsMean<PerGroup<64>>>);
  SUCCEED();
}

}  // namespace
