// ModelConfig: the runtime sizes of a decoder-only model. A plain struct: model sizes are values,
// only kernel-shaping choices are types (sizes as template arguments would multiply
// instantiations and compile time without making any kernel faster).
#pragma once

#include <cmath>
#include <cstddef>

#include "pquant/core/error.hpp"
#include "pquant/layers/activations.hpp"
#include "pquant/layers/rope.hpp"

namespace pquant {

/// The distribution of fan-in scaled weights (ModelConfig::init_std == 0): PyTorch nn.Linear's
/// U(+-1/sqrt(fan_in)) (std 1/sqrt(3 fan_in)) or N(0, 1/fan_in).
enum class FanInInit { kUniform, kNormal };

struct ModelConfig {
  std::size_t vocab = 256;  // byte-level by default
  std::size_t d_model = 128;
  std::size_t layers = 4;
  std::size_t heads = 4;
  std::size_t d_ff = 384;     // FFN hidden width (pQuant: r INT8 + (d_ff - r) 1-bit)
  std::size_t context = 128;  // longest sequence (RoPE table size)
  std::size_t experts = 1;    // pQuant: INT8 experts behind the top-1 router (1..8)
  std::size_t r = 32;         // pQuant: hidden width of each INT8 expert
  FfnActivation activation = FfnActivation::kSwiGLU;
  bool fused_qkv = false;   // Q, K, V as one projection: one 1-bit scale for the three (attention.hpp)
  bool block_norm = false;  // a LLaMA block pre-norm in series with the sublayers' own (training only)
  double rope_theta = kRopeBase;  // RoPE base (imported checkpoints may use another, e.g. 500000)
  float aux_loss_coef = 0.01f;  // pQuant with experts > 1: Switch load-balancing loss weight
  float alpha_init = 1.0f;      // pQuant: initial INT8-branch scale (method.md section 3; the
  float beta_init = 1.0f;       // paper's 2.0 / 0.2 trains worse at our sizes) and 1-bit one
  // Initialisation (docs/training.md): init_std 0 (default) = fan-in scaled, every linear weight
  // ~ U(+-1/sqrt(fan_in)) (PyTorch nn.Linear) and the embedding ~ N(0, 1) (nn.Embedding, a
  // one-hot input has fan-in 1); init_std > 0 = N(0, init_std^2) everywhere, output projections
  // scaled by 1/sqrt(2 layers) (GPT-2). embed_std >= 0 overrides the embedding's std.
  // fan_in picks the distribution of the fan-in scaled block weights (attention, FFN, router);
  // the head keeps nn.Linear's uniform default either way.
  double init_std = 0.0;
  double embed_std = -1;
  FanInInit fan_in = FanInInit::kUniform;

  /// Throws ValueError naming the first inconsistent field.
  void validate(const char* fn) const {
    require<ValueError>(
        vocab > 0 && d_model > 0 && layers > 0 && heads > 0 && d_ff > 0 && context > 0, fn,
        ": every size in ModelConfig must be > 0");
    require<ValueError>(d_model % heads == 0, fn, ": 'd_model' (", d_model,
                        ") must be a multiple of 'heads' (", heads, ")");
    require<ValueError>((d_model / heads) % 2 == 0, fn, ": the head width d_model / heads (",
                        d_model / heads, ") must be even for RoPE");
    require<ValueError>(std::isfinite(rope_theta) && rope_theta > 1, fn,
                        ": 'rope_theta' must be a finite number > 1, got ", rope_theta);
  }
};

}  // namespace pquant
