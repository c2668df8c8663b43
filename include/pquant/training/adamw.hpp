// AdamW over a ParameterStore arena: one fused, elementwise loop (Loshchilov & Hutter 2019).
//
// For every scalar p with gradient g, at step t (1-based), learning rate lr and weight decay wd:
//   p <- p - lr * wd * p                      (decoupled decay; only tensors whose role decays)
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// which is PyTorch's torch.optim.AdamW arithmetic. Defaults b1 = 0.9, b2 = 0.95, eps = 1e-8
// (docs/method.md section 4). By default only ParamRole::kWeight decays: norms, scalars (alpha,
// beta), embeddings and biases do not. The loop is elementwise, so results are bit-identical for
// any number of threads.
#pragma once

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/kernels/elementwise.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  // Which roles receive weight decay (the decay *amount* comes from the schedule each step).
  bool decay_weights = true;
  bool decay_embeddings = false;
  bool decay_norm_gains = false;
  bool decay_scalars = false;
  bool decay_biases = false;

  bool decays(ParamRole role) const {
    switch (role) {
      case ParamRole::kWeight:
        return decay_weights;
      case ParamRole::kEmbedding:
        return decay_embeddings;
      case ParamRole::kNormGain:
        return decay_norm_gains;
      case ParamRole::kScalar:
        return decay_scalars;
      case ParamRole::kBias:
        return decay_biases;
    }
    return false;
  }
};

/// p, g, m, v [n]: the scalar AdamW update, element by element (the reference the SIMD kernel
/// kernels::adamw_update reproduces operation for operation; AdamW::step runs the kernel).
inline void adamw_update_reference(std::span<float> p, std::span<const float> g, std::span<float> m,
                                   std::span<float> v, const kernels::AdamWStep& s) {
  for (std::size_t i = 0; i < p.size(); ++i) {
    const float gi = g[i];
    m[i] = s.beta1 * m[i] + (1.f - s.beta1) * gi;
    v[i] = s.beta2 * v[i] + (1.f - s.beta2) * gi * gi;
    const float denom = std::sqrt(v[i]) * s.inv_sqrt_bc2 + s.eps;
    p[i] = p[i] * s.decay - s.step_size * (m[i] / denom);
  }
}

class AdamW {
 public:
  /// Sizes the moment arenas after `store` (register every parameter first).
  explicit AdamW(const ParameterStore& store, AdamWConfig config = {}) : config_(config) {
    require<ValueError>(config.beta1 >= 0.f && config.beta1 < 1.f,
                        "AdamW: 'beta1' must be in [0, 1), got ", config.beta1);
    require<ValueError>(config.beta2 >= 0.f && config.beta2 < 1.f,
                        "AdamW: 'beta2' must be in [0, 1), got ", config.beta2);
    require<ValueError>(config.eps > 0.f, "AdamW: 'eps' must be > 0, got ", config.eps);
    require<ValueError>(store.values().size() > 0, "AdamW: the parameter store is empty");
    m_ = AlignedBuffer<float>(store.values().size());
    v_ = AlignedBuffer<float>(store.values().size());
    // Segments of at most kSegment floats, each with its decay flag: the unit of parallel work.
    constexpr std::size_t kSegment = 8192;
    for (const ParamInfo& p : store.infos()) {
      for (std::size_t lo = 0; lo < p.size(); lo += kSegment)
        segments_.push_back(
            {p.offset + lo, std::min(kSegment, p.size() - lo), config.decays(p.role)});
    }
  }

  /// One update of every parameter in `store` from its gradient. `weight_decay` is the
  /// coefficient for decaying tensors at this step (the schedule's value).
  void step(ParameterStore& store, float lr, float weight_decay) {
    require<ShapeError>(store.values().size() == m_.size(), "AdamW::step: argument 'store' has ",
                        store.values().size(), " floats, the optimizer was built for ", m_.size());
    require<ValueError>(std::isfinite(lr) && lr >= 0.f,
                        "AdamW::step: argument 'lr' must be finite and >= 0, got ", lr);
    require<ValueError>(std::isfinite(weight_decay) && weight_decay >= 0.f,
                        "AdamW::step: argument 'weight_decay' must be finite and >= 0, got ",
                        weight_decay);
    ++t_;
    const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
    const double bc1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(t_));
    const double bc2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(t_));
    const float step_size = static_cast<float>(lr / bc1);
    const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
    const float decay = 1.f - lr * weight_decay;
    float* p = store.values().data();
    const float* g = store.grads().data();
    float* m = m_.data();
    float* v = v_.data();
    const kernels::AdamWStep base{b1, b2, eps, step_size, inv_sqrt_bc2, 1.f};
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, segments_.size()), [&](const auto& r) {
      for (std::size_t s = r.begin(); s != r.end(); ++s) {
        const Segment seg = segments_[s];
        kernels::AdamWStep st = base;
        st.decay = seg.decay ? decay : 1.f;
        // SIMD; the operations of adamw_update_reference, in order (bit-identical).
        kernels::adamw_update({p + seg.offset, seg.size}, {g + seg.offset, seg.size},
                              {m + seg.offset, seg.size}, {v + seg.offset, seg.size}, st);
      }
    });
  }

  const AdamWConfig& config() const { return config_; }
  /// Number of steps taken (the bias-correction exponent).
  std::uint64_t steps() const { return t_; }
  std::span<float> first_moment() { return m_.span(); }
  std::span<const float> first_moment() const { return m_.span(); }
  std::span<float> second_moment() { return v_.span(); }
  std::span<const float> second_moment() const { return v_.span(); }
  /// Restores the step count (checkpoints); the moments are restored through the spans.
  void set_steps(std::uint64_t t) { t_ = t; }

 private:
  struct Segment {
    std::size_t offset;
    std::size_t size;
    bool decay;
  };
  AdamWConfig config_;
  AlignedBuffer<float> m_;
  AlignedBuffer<float> v_;
  std::vector<Segment> segments_;
  std::uint64_t t_ = 0;
};

}  // namespace pquant
