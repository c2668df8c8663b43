// Train = serve: for every variant, a randomly initialised trainable model (pquant/model) is
// exported to a packed model, saved, reloaded, and the engine's logits for a sequence are compared
// with the training code's quantized forward: identical argmax at every position and max relative
// error (max |diff| / max |logit|) below 1e-3, on every SIMD target this CPU supports. The batched
// pass is in fact bit-identical (printed max error 0): same integer kernels, same FP operation
// order.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/kernels/targets.hpp"
#include "pquant/model/variants.hpp"

using namespace pquant;
using namespace pquant::inference;
namespace fs = std::filesystem;

namespace {

ModelConfig parity_config(std::size_t experts, FfnActivation act = FfnActivation::kSwiGLU) {
  ModelConfig c;
  c.vocab = 64;
  c.d_model = 64;
  c.layers = 2;
  c.heads = 4;
  c.d_ff = 192;
  c.context = 16;
  c.experts = experts;
  c.r = 64;
  c.activation = act;
  return c;
}

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

template <class Model>
void check_parity(const ModelConfig& cfg, const char* name) {
  Model model(cfg, 42);
  randomise(model.store(), 7);
  std::vector<TokenId> tokens(cfg.context);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<TokenId>((i * 13 + 5) % cfg.vocab);
  const PackedModel exported = export_model(model);
  std::string pattern = (fs::temp_directory_path() / "pquant_parity_XXXXXX").string();
  const fs::path dir = ::mkdtemp(pattern.data());
  const std::string path = (dir / "model.safetensors").string();
  const std::uint64_t bytes = save_model(exported, path);
  std::ostringstream report;
  print_accounting(report, exported, bytes);
  EXPECT_NE(report.str().find("bytes on disk"), std::string::npos);
  const PackedModel packed = load_model(path);
  fs::remove_all(dir);

  const std::vector<int> ids(tokens.begin(), tokens.end());
  for (std::int64_t target : kernels::available_targets()) {
    kernels::force_target(target);
    SCOPED_TRACE(std::string(name) + " on " + kernels::target_name(target));
    // The training code's quantized forward on the same target (its FP32 GEMMs, like the engine's,
    // sum in a target-specific order).
    Matrix<float> train_logits(tokens.size(), cfg.vocab);
    model.forward(tokens, SequenceShape{1, tokens.size()}, train_logits.view());
    // Batched pass and token-by-token decoding both match the training forward.
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
    EXPECT_LT(diff_all / scale, 1e-3);
    EXPECT_LT(diff_step / scale, 1e-3);
    std::printf("[ parity ] %s on %s: max rel err batched %.3g, decode %.3g\n", name,
                kernels::target_name(target).c_str(), diff_all / scale, diff_step / scale);
  }
  kernels::force_target(0);
}

}  // namespace

TEST(Parity, FP) {
  check_parity<FP>(parity_config(1), "fp");
}
TEST(Parity, BitNet) {
  check_parity<BitNet>(parity_config(1), "bitnet");
}
TEST(Parity, BitNet158) {
  check_parity<BitNet158>(parity_config(1), "bitnet158");
}
TEST(Parity, PQuantOneExpert) {
  check_parity<PQuant<>>(parity_config(1), "pquant N=1");
}
TEST(Parity, PQuantFourExperts) {
  check_parity<PQuant<>>(parity_config(4), "pquant N=4");
}
TEST(Parity, PQuantReLU2) {
  check_parity<PQuant<>>(parity_config(2, FfnActivation::kReLU2), "pquant N=2 relu2");
}

TEST(Parity, ExportRejectsUnsupportedVariants) {
  // A per-group 1-bit variant cannot be packed (static_assert) — checked at compile time; at run
  // time a model whose name is not one of the four is a ValueError.
  EXPECT_THROW((void)parse_variant("ternary-kmeans"), ValueError);
}
