// ModelConfig: the runtime sizes of a decoder-only model (a plain struct, style.md: model sizes
// are values, only kernel-shaping choices are types).
#pragma once

#include <cstddef>

#include "pquant/core/error.hpp"
#include "pquant/layers/activations.hpp"

namespace pquant {

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
  float aux_loss_coef = 0.01f;  // pQuant with experts > 1: Switch load-balancing loss weight
  double init_std = 0.02;       // latent weights ~ N(0, init_std^2); 0: fan-in (init.hpp)
  double embed_std = -1;        // embedding table ~ N(0, embed_std^2); < 0: follows init_std

  /// Throws ValueError naming the first inconsistent field.
  void validate(const char* fn) const {
    require<ValueError>(
        vocab > 0 && d_model > 0 && layers > 0 && heads > 0 && d_ff > 0 && context > 0, fn,
        ": every size in ModelConfig must be > 0");
    require<ValueError>(d_model % heads == 0, fn, ": 'd_model' (", d_model,
                        ") must be a multiple of 'heads' (", heads, ")");
    require<ValueError>((d_model / heads) % 2 == 0, fn, ": the head width d_model / heads (",
                        d_model / heads, ") must be even for RoPE");
  }
};

}  // namespace pquant
