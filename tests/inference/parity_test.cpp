// Train = serve: for the paper's variants and variants written in application code (k-means
// codebooks, per-row and per-group scales, ternary attention with pQuant's FFN, a user's quantizer
// with its own packed form, FP attention with a 1-bit FFN), a randomly
// initialised trainable model (pquant/model) is exported, saved, reloaded, and the engine's logits
// (batched, and token by token) are compared with DecoderModel::forward on the same tokens, on
// every SIMD target this CPU supports: max |diff| / max |logit| <= 1e-5 and the same argmax
// everywhere (the integer paths and the decoded FP32 paths are in fact bit-identical; FP32
// projections differ only where one token takes the FP32 GEMV).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/kernels/targets.hpp"
#include "pquant/model/variants.hpp"
#include "test_variants.hpp"

using namespace pquant;
using namespace pquant::inference;
namespace fs = std::filesystem;

namespace {

/// Spreads the initial values so logits are well separated (init_std 0.02 leaves near-ties):
/// weights ~ U(+-2/sqrt(cols)), gains ~ U(0.5, 1.5), alpha/beta ~ U(0.2, 2).
void randomise(ParameterStore& s, std::uint64_t seed) {
  Rng rng(seed);
  for (std::size_t i = 0; i < s.infos().size(); ++i) {
    const ParamInfo& p = s.infos()[i];
    MatrixView<float> v = s.value(ParamId{i});
    for (std::size_t r = 0; r < v.rows; ++r)
      for (std::size_t c = 0; c < v.cols; ++c) {
        switch (p.role) {
          case ParamRole::kNormGain:
            v(r, c) = static_cast<float>(rng.uniform(0.5, 1.5));
            break;
          case ParamRole::kScalar:
            v(r, c) = static_cast<float>(rng.uniform(0.2, 2.0));
            break;
          default:
            v(r, c) =
                static_cast<float>(rng.uniform(-2.0, 2.0) / std::sqrt(static_cast<double>(p.cols)));
        }
      }
  }
}

template <class V, std::size_t Experts, FfnActivation Act = FfnActivation::kSwiGLU,
          bool FusedQkv = false>
struct Case {
  using variant = V;
  static ModelConfig config() {
    ModelConfig c;
    c.vocab = 64;
    c.d_model = 64;
    c.layers = 2;
    c.heads = 4;
    c.d_ff = 192;
    c.context = 16;
    c.experts = Experts;
    c.r = 64;
    c.activation = Act;
    c.fused_qkv = FusedQkv;
    return c;
  }
  static std::string name() {
    std::string n(V::kName);
    for (char& ch : n)
      if (ch == '-') ch = '_';
    n += "_N" + std::to_string(Experts);
    if (Act == FfnActivation::kReLU2) n += "_relu2";
    if (FusedQkv) n += "_fused_qkv";
    return n;
  }
};

template <class C>
class Parity : public ::testing::Test {};

using Cases = ::testing::Types<
    Case<variants::FP, 1>, Case<variants::BitNet, 1>, Case<variants::BitNet158, 1>,
    Case<variants::PQuant<>, 1>, Case<variants::PQuant<>, 4>,
    Case<variants::PQuant<>, 2, FfnActivation::kReLU2>, Case<test_variants::TernaryKMeans, 1>,
    Case<test_variants::PQuantPerRow, 2>, Case<test_variants::TernaryPQuant, 2>,
    Case<test_variants::BitNetGroup64, 1>, Case<test_variants::TernaryKMeansExperts, 2>,
    Case<test_variants::KMeans2, 1>, Case<test_variants::UserQuantizerVariant, 1>,
    Case<test_variants::FpAttentionBitFfn, 1>,
    Case<variants::PQuant<>, 1, FfnActivation::kSwiGLU, true>,
    Case<variants::BitNet, 1, FfnActivation::kSwiGLU, true>>;

struct CaseNames {
  template <class C>
  static std::string GetName(int) {
    return C::name();
  }
};
TYPED_TEST_SUITE(Parity, Cases, CaseNames);

TYPED_TEST(Parity, EngineLogitsEqualTrainingForward) {
  using V = typename TypeParam::variant;
  static_assert(exportable<V>);
  const ModelConfig cfg = TypeParam::config();
  DecoderModel<V> model(cfg, 42);
  randomise(model.store(), 7);
  std::vector<TokenId> tokens(cfg.context);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<TokenId>((i * 13 + 5) % cfg.vocab);
  const PackedModel exported = export_model(model);
  EXPECT_EQ(exported.structure.label, V::kName);
  std::string pattern = (fs::temp_directory_path() / "pquant_parity_XXXXXX").string();
  const fs::path dir = ::mkdtemp(pattern.data());
  const std::string path = (dir / "model.safetensors").string();
  const std::uint64_t bytes = save_model(exported, path);
  std::ostringstream report;
  print_accounting(report, exported, bytes);
  EXPECT_NE(report.str().find("bytes on disk"), std::string::npos);
  const PackedModel packed = load_model(path);
  fs::remove_all(dir);
  EXPECT_EQ(packed.structure.blocks, exported.structure.blocks);

  const std::vector<int> ids(tokens.begin(), tokens.end());
  for (std::int64_t target : kernels::available_targets()) {
    kernels::force_target(target);
    SCOPED_TRACE(TypeParam::name() + " on " + kernels::target_name(target));
    Matrix<float> train_logits(tokens.size(), cfg.vocab);
    model.forward(tokens, SequenceShape{1, tokens.size()}, train_logits.view());
    Engine batched(packed);
    const Matrix<float>& all = batched.forward_all(ids);
    Engine step(packed);
    double diff_all = 0, diff_step = 0, scale = 0;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const std::span<const float> logits = step.step(ids[t]);
      std::size_t a_train = 0, a_all = 0, a_step = 0;
      for (std::size_t i = 0; i < cfg.vocab; ++i) {
        const float want = train_logits(t, i);
        scale = std::fmax(scale, std::fabs(want));
        diff_all = std::fmax(diff_all, std::fabs(all(t, i) - want));
        diff_step = std::fmax(diff_step, std::fabs(logits[i] - want));
        if (want > train_logits(t, a_train)) a_train = i;
        if (all(t, i) > all(t, a_all)) a_all = i;
        if (logits[i] > logits[a_step]) a_step = i;
      }
      EXPECT_EQ(a_all, a_train) << "position " << t;
      EXPECT_EQ(a_step, a_train) << "position " << t;
    }
    EXPECT_LE(diff_all / scale, 1e-5);
    EXPECT_LE(diff_step / scale, 1e-5);
    std::printf("[ parity ] %s on %s: max rel err batched %.3g, decode %.3g\n",
                TypeParam::name().c_str(), kernels::target_name(target).c_str(),
                diff_all / scale, diff_step / scale);
  }
  kernels::force_target(0);
}

TEST(Exportable, BlockNormModelsAreRefused) {
  ModelConfig cfg = Case<variants::BitNet, 1>::config();
  cfg.block_norm = true;  // training only: the engine has no second pre-norm
  const DecoderModel<variants::BitNet> model(cfg, 1);
  EXPECT_THROW((void)export_model(model), ValueError);
}

TEST(Exportable, NamesVariantsWithoutPackedForms) {
  static_assert(exportable<variants::PQuant<>> && exportable<test_variants::TernaryKMeans>);
  static_assert(!exportable<test_variants::KMeans8>);  // 8-bit codebooks have no packed form
  SUCCEED();
}

}  // namespace
