// random_packed_model: a randomly initialised PackedModel of any variant and size, built directly
// in packed form (no training, no latent weights): for benchmarks at the paper's shapes and for
// engine tests. Codes are uniform; scales mimic trained magnitudes (lambda ~ 0.02, INT8 row scale
// ~ 0.02 / 127, alpha 2.0, beta 0.2). Deterministic for a seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pquant/core/matrix.hpp"
#include "pquant/inference/model_config.hpp"
#include "pquant/inference/packed_model.hpp"

namespace pquant::inference {

namespace detail {

struct FastRng {  // SplitMix64: fast enough to fill hundreds of millions of weights
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * 0x1.0p-24f;
  }
};

inline Matrix<std::int8_t> random_codes(std::size_t rows, std::size_t cols, int lo, int hi,
                                        FastRng& rng) {
  Matrix<std::int8_t> m(rows, cols);
  const auto span = static_cast<std::uint64_t>(hi - lo + 1);
  for (std::int8_t& v : m.flat())
    v = static_cast<std::int8_t>(lo + static_cast<int>(rng.next() % span));
  return m;
}

inline Matrix<float> random_matrix(std::size_t rows, std::size_t cols, float bound, FastRng& rng) {
  Matrix<float> m(rows, cols);
  for (float& v : m.flat()) v = rng.uniform(-bound, bound);
  return m;
}

inline std::vector<float> random_gain(std::size_t n, FastRng& rng) {
  std::vector<float> g(n);
  for (float& v : g) v = rng.uniform(0.8f, 1.2f);
  return g;
}

/// A low-bit / FP linear of `kind`; fused = number of stacked parts (each keeps its own scale).
inline PackedLinear random_linear(WeightKind kind, std::size_t rows, std::size_t cols,
                                  std::size_t parts, FastRng& rng) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(cols));
  switch (kind) {
    case WeightKind::kF32:
      return make_f32_linear(random_matrix(rows, cols, bound, rng).view());
    case WeightKind::kInt8: {
      std::vector<float> s(rows);
      for (float& v : s) v = rng.uniform(0.5f, 1.5f) * bound / 127.0f * 2.0f;
      return make_int8_linear(random_codes(rows, cols, -127, 127, rng).view(), std::move(s));
    }
    case WeightKind::kSign1:
    case WeightKind::kTernary: {
      std::vector<float> s;
      const std::size_t per = rows / parts;
      for (std::size_t p = 0; p < parts; ++p)
        s.insert(s.end(), per, rng.uniform(0.5f, 1.5f) * bound);
      if (parts == 1) s.resize(1);
      const Matrix<std::int8_t> codes =
          kind == WeightKind::kSign1 ? [&] {
            Matrix<std::int8_t> m(rows, cols);
            for (std::int8_t& v : m.flat()) v = (rng.next() >> 63) ? 1 : -1;
            return m;
          }()
                                     : random_codes(rows, cols, -1, 1, rng);
      return kind == WeightKind::kSign1 ? make_sign_linear(codes.view(), std::move(s))
                                        : make_ternary_linear(codes.view(), std::move(s));
    }
  }
  return {};
}

}  // namespace detail

/// o_norm / down_norm: whether the output and down projections normalize their own inputs
/// (BitLinear's default in quantized variants).
inline PackedModel random_packed_model(const InferenceConfig& cfg, std::uint64_t seed,
                                       bool sub_norms = true) {
  cfg.validate("random_packed_model");
  detail::FastRng rng{seed};
  PackedModel m;
  m.config = cfg;
  const std::size_t d = cfg.d_model, h = cfg.lowbit_ff(), gate = cfg.swiglu ? 2 : 1;
  const WeightKind low = cfg.variant == Variant::kFp          ? WeightKind::kF32
                         : cfg.variant == Variant::kBitNet158 ? WeightKind::kTernary
                                                              : WeightKind::kSign1;
  const bool sub = sub_norms && cfg.quantized();
  m.embedding = detail::random_matrix(cfg.vocab, d, 1.0f, rng);
  m.head = detail::random_matrix(cfg.vocab, d, 1.0f / std::sqrt(static_cast<float>(d)), rng);
  m.final_norm = detail::random_gain(d, rng);
  m.blocks.resize(cfg.layers);
  for (PackedBlock& b : m.blocks) {
    b.attn_norm = detail::random_gain(d, rng);
    b.qkv = detail::random_linear(low, 3 * d, d, 3, rng);
    b.o = detail::random_linear(low, d, d, 1, rng);
    if (sub) b.o_norm = detail::random_gain(d, rng);
    b.ffn_norm = detail::random_gain(d, rng);
    b.up = detail::random_linear(low, gate * h, d, gate, rng);
    b.down = detail::random_linear(low, d, h, 1, rng);
    if (sub) b.down_norm = detail::random_gain(h, rng);
    if (cfg.variant == Variant::kPQuant) {
      if (cfg.experts > 1) b.router = detail::random_matrix(cfg.experts, d, 0.5f, rng);
      for (std::size_t e = 0; e < cfg.experts; ++e) {
        b.expert_up.push_back(detail::random_linear(WeightKind::kInt8, gate * cfg.r, d, 1, rng));
        b.expert_down.push_back(detail::random_linear(WeightKind::kInt8, d, cfg.r, 1, rng));
        b.expert_down_norm.push_back(sub ? detail::random_gain(cfg.r, rng) : std::vector<float>{});
      }
      b.alpha = 2.0f;
      b.beta = 0.2f;
    }
  }
  validate(m, "random_packed_model");
  return m;
}

}  // namespace pquant::inference
