// The capture hook: the X and W it sees are those of a direct computation of the same layer, the
// Hessian it accumulates is 2 X^T X / n of that X, attaching it changes no output, and names are
// checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "pquant/analysis/input_hessian.hpp"
#include "pquant/analysis/product_capture.hpp"
#include "pquant/layers/rms_norm.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/quantizers/activation_quantizer.hpp"
#include "pquant/quantizers/sign_absmean.hpp"

namespace pquant::analysis {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.vocab = 64;
  c.d_model = 32;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 48;
  c.context = 16;
  c.r = 16;
  return c;
}

std::vector<TokenId> tokens(std::size_t n) {
  std::vector<TokenId> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<TokenId>((i * 7 + i / 5) % 64);
  return t;
}

// Records every X and W of one projection.
class Recorder final : public ProductObserver {
 public:
  explicit Recorder(ParamId id) : id_(id) {}
  void on_product(ParamId weight, MatrixView<const float> x, MatrixView<const float> w) override {
    if (weight.index != id_.index) return;
    x_.assign(x.rows * x.cols, 0);
    for (std::size_t r = 0; r < x.rows; ++r)
      for (std::size_t c = 0; c < x.cols; ++c) x_[r * x.cols + c] = x(r, c);
    w_.assign(w.data, w.data + w.rows * w.cols);
    rows_ = x.rows;
  }
  std::vector<float> x_, w_;
  std::size_t rows_ = 0;

 private:
  ParamId id_;
};

ParamId id_of(const ParameterStore& store, const std::string& name) {
  for (std::size_t i = 0; i < store.infos().size(); ++i)
    if (store.infos()[i].name == name) return ParamId{i};
  return {};
}

// Layer 0's Q projection reads RMSNorm(embedding) (the attention's shared pre-norm): computed here
// from the stored embedding and gain with the scalar RMSNorm reference.
template <class Model>
std::vector<float> layer0_attention_input(const Model& model, const std::vector<TokenId>& t) {
  const ParameterStore& s = model.store();
  const MatrixView<const float> embed = s.value(id_of(s, "embed.table"));
  const MatrixView<const float> gain = s.value(id_of(s, "blocks.0.attn.norm.gain"));
  const std::size_t d = embed.cols;
  Matrix<float> x(t.size(), d), y(t.size(), d);
  for (std::size_t i = 0; i < t.size(); ++i)
    for (std::size_t c = 0; c < d; ++c) x(i, c) = embed(static_cast<std::size_t>(t[i]), c);
  std::vector<float> inv(t.size());
  rmsnorm_forward<float>(x.view(), gain.data, kRmsNormEps, y.view(), inv.data());
  return {y.view().data, y.view().data + t.size() * d};
}

TEST(ProductCapture, FullPrecisionInputIsTheNormalizedEmbedding) {
  FP model(small_config(), 3);
  const std::vector<TokenId> t = tokens(32);
  const ParamId q = id_of(model.store(), "blocks.0.attn.q.weight");
  Recorder rec(q);
  model.store().set_observer(&rec);
  Matrix<float> logits(32, 64);
  model.forward(t, SequenceShape{2, 16}, logits.view());
  model.store().set_observer(nullptr);
  const std::vector<float> expect = layer0_attention_input(model, t);
  ASSERT_EQ(rec.rows_, 32u);
  ASSERT_EQ(rec.x_.size(), expect.size());
  for (std::size_t i = 0; i < expect.size(); ++i) EXPECT_FLOAT_EQ(rec.x_[i], expect[i]) << i;
  const MatrixView<const float> w = model.store().value(q);
  EXPECT_TRUE(std::equal(rec.w_.begin(), rec.w_.end(), w.data));  // FP: W is the latent weight
}

TEST(ProductCapture, BitNetInputAndWeightAreTheQuantizedOperands) {
  BitNet model(small_config(), 4);
  const std::vector<TokenId> t = tokens(16);
  const ParamId q = id_of(model.store(), "blocks.0.attn.q.weight");
  Recorder rec(q);
  model.store().set_observer(&rec);
  Matrix<float> logits(16, 64);
  model.forward(t, SequenceShape{1, 16}, logits.view());
  model.store().set_observer(nullptr);
  const std::vector<float> a = layer0_attention_input(model, t);
  Matrix<float> xq(16, 32);
  Int8AbsMaxPerToken::fake_quantize(MatrixView<const float>(a.data(), 16, 32), xq.view());
  ASSERT_EQ(rec.x_.size(), 16u * 32u);
  for (std::size_t i = 0; i < rec.x_.size(); ++i) EXPECT_EQ(rec.x_[i], xq.view().data[i]) << i;
  const MatrixView<const float> latent = model.store().value(q);
  Matrix<float> wq(latent.rows, latent.cols);
  SignAbsMean<PerTensor>::fake_quantize(latent, wq.view());
  ASSERT_EQ(rec.w_.size(), latent.rows * latent.cols);
  for (std::size_t i = 0; i < rec.w_.size(); ++i) EXPECT_EQ(rec.w_[i], wq.view().data[i]) << i;
}

TEST(ProductCapture, HessianIsTwiceXtXOverTokensOfTheObservedInput) {
  BitNet model(small_config(), 5);
  const std::vector<TokenId> t = tokens(32);
  const ParamId down = id_of(model.store(), "blocks.1.ffn.down.weight");
  Recorder rec(down);
  ProductCapture capture(model.store(), {"blocks.1.ffn.down"});
  Matrix<float> logits(32, 64);
  // Two forwards: the capture accumulates both, the recorder keeps the last (same tokens).
  for (int pass = 0; pass < 2; ++pass) {
    capture.attach();
    model.forward(t, SequenceShape{2, 16}, logits.view());
    model.store().set_observer(&rec);
    model.forward(t, SequenceShape{2, 16}, logits.view());
    model.store().set_observer(nullptr);
  }
  const ProductCapture::Projection& p = capture.projection("blocks.1.ffn.down");
  EXPECT_EQ(p.products, 2u);
  EXPECT_EQ(p.hessian.tokens(), 64u);
  const std::size_t n = 48;
  const std::vector<double> h = p.hessian.hessian();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double sum = 0;
      for (std::size_t r = 0; r < 32; ++r)
        sum += static_cast<double>(rec.x_[r * n + i]) * rec.x_[r * n + j];
      EXPECT_NEAR(h[i * n + j], 2.0 * sum / 32.0, 1e-12 * (1 + std::fabs(sum))) << i << "," << j;
    }
}

TEST(ProductCapture, AttachingChangesNoOutput) {
  PQuant<> model(
      [] {
        ModelConfig c = small_config();
        c.experts = 2;
        return c;
      }(),
      6);
  const std::vector<TokenId> t = tokens(32);
  Matrix<float> plain(32, 64), observed(32, 64);
  model.forward(t, SequenceShape{2, 16}, plain.view());
  std::vector<std::string> all = projection_names(model.store());
  all.erase(std::remove_if(all.begin(), all.end(),
                           [](const std::string& n) { return n.find("router") != n.npos; }),
            all.end());
  ProductCapture capture(model.store(), all);
  capture.attach();
  model.forward(t, SequenceShape{2, 16}, observed.view());
  capture.detach();
  EXPECT_EQ(model.store().observer(), nullptr);
  for (std::size_t i = 0; i < 32 * 64; ++i)
    ASSERT_EQ(plain.view().data[i], observed.view().data[i]) << i;
  // Every token went to exactly one expert of each layer.
  for (std::size_t l = 0; l < 2; ++l) {
    const std::string e = "blocks." + std::to_string(l) + ".ffn.experts.";
    EXPECT_EQ(capture.projection(e + "0.up").hessian.tokens() +
                  capture.projection(e + "1.up").hessian.tokens(),
              32u);
  }
  EXPECT_EQ(capture.projection("head").hessian.tokens(), 32u);
}

TEST(ProductCapture, RejectsUnknownAndRepeatedNames) {
  FP model(small_config(), 7);
  try {
    ProductCapture c(model.store(), {"blocks.0.attn.x"});
    FAIL() << "no error";
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no projection 'blocks.0.attn.x'"), what.npos) << what;
    EXPECT_NE(what.find("blocks.0.attn.q"), what.npos) << what;  // the known names are listed
  }
  EXPECT_THROW(ProductCapture(model.store(), {"blocks.0.attn.q", "blocks.0.attn.q"}), ValueError);
  EXPECT_THROW(ProductCapture(model.store(), {"embed"}), ValueError);  // not a projection
  EXPECT_THROW(ProductCapture(model.store(), {}), ValueError);
}

TEST(InputHessian, RejectsWrongWidthAndEmptyUse) {
  InputHessian h(3);
  EXPECT_THROW(h.hessian(), ValueError);
  Matrix<float> x(2, 4);
  EXPECT_THROW(h.add(x.view()), ShapeError);
}

}  // namespace
}  // namespace pquant::analysis
