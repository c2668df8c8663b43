// An independent scalar reference of the packed model's forward (tests only): dequantized weights,
// fake-quantized activations (q / g), double accumulation, no KV cache (full causal recompute).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "pquant/inference/packed_model.hpp"

namespace pquant::inference::reference {

using Vec = std::vector<double>;

inline double weight(const PackedLinear& l, std::size_t r, std::size_t c) {
  const double s = l.scale.empty() ? 1.0 : l.scale[l.scale.size() == 1 ? 0 : r];
  switch (l.kind) {
    case WeightKind::kSign1:
      return s * kernels::lut_value(l.sign, r, c);
    case WeightKind::kTernary:
      return s * kernels::lut_value(l.ternary, r, c);
    case WeightKind::kInt8:
      return s * l.int8.value(r, c);
    case WeightKind::kF32:
      return l.f32(r, c);
  }
  return 0;
}

inline Vec rmsnorm(const Vec& x, const std::vector<float>& gain, double eps) {
  if (gain.empty()) return x;
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * gain[i];
  return y;
}

/// INT8 absmax fake quantization (round half to even), as method.md section 2.
inline Vec fake_quant(const Vec& a) {
  double mx = 0;
  for (double v : a) mx = std::fmax(mx, std::fabs(v));
  const double g = 127.0 / std::fmax(mx, 1e-5);
  Vec y(a.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    y[i] = std::fmin(127.0, std::fmax(-128.0, std::nearbyint(a[i] * g))) / g;
  return y;
}

inline Vec matvec(const PackedLinear& l, const Vec& x) {
  Vec y(l.rows, 0.0);
  for (std::size_t r = 0; r < l.rows; ++r)
    for (std::size_t c = 0; c < l.cols; ++c) y[r] += weight(l, r, c) * x[c];
  return y;
}

inline Vec rope(Vec x, std::size_t hd, std::size_t pos, double theta) {
  for (std::size_t h0 = 0; h0 < x.size(); h0 += hd)
    for (std::size_t i = 0; i < hd / 2; ++i) {
      const double ang = static_cast<double>(pos) *
                         std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
      const double a = x[h0 + i], b = x[h0 + i + hd / 2];
      x[h0 + i] = a * std::cos(ang) - b * std::sin(ang);
      x[h0 + i + hd / 2] = a * std::sin(ang) + b * std::cos(ang);
    }
  return x;
}

inline Vec activate(const Vec& up, std::size_t w, bool swiglu) {
  Vec h(w);
  for (std::size_t c = 0; c < w; ++c) {
    if (swiglu) {
      const double g = up[c];
      h[c] = g / (1.0 + std::exp(-g)) * up[w + c];
    } else {
      const double u = std::fmax(up[c], 0.0);
      h[c] = u * u;
    }
  }
  return h;
}

/// Logits [n][vocab] for every position of `tokens`.
inline std::vector<Vec> reference_logits(const PackedModel& m, const std::vector<int>& tokens) {
  const InferenceConfig& c = m.config;
  const std::size_t d = c.d_model, n = tokens.size(), hd = c.head_dim();
  const bool quant = c.quantized();
  auto in = [&](const Vec& a) { return quant ? fake_quant(a) : a; };
  std::vector<Vec> x(n, Vec(d));
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t i = 0; i < d; ++i)
      x[t][i] = m.embedding(static_cast<std::size_t>(tokens[t]), i);
  for (const PackedBlock& b : m.blocks) {
    std::vector<Vec> q(n), k(n), v(n);
    for (std::size_t t = 0; t < n; ++t) {
      const Vec a = in(rmsnorm(x[t], b.attn_norm, c.norm_eps));
      const Vec qkv = matvec(b.qkv, a);  // [q; k; v]
      q[t] = rope(Vec(qkv.begin(), qkv.begin() + d), hd, t, c.rope_theta);
      k[t] = rope(Vec(qkv.begin() + d, qkv.begin() + 2 * d), hd, t, c.rope_theta);
      v[t] = Vec(qkv.begin() + 2 * d, qkv.end());
    }
    for (std::size_t t = 0; t < n; ++t) {
      Vec att(d, 0.0);
      for (std::size_t h = 0; h < c.heads; ++h) {
        Vec s(t + 1);
        double mx = -1e300;
        for (std::size_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (std::size_t i = 0; i < hd; ++i) dot += q[t][h * hd + i] * k[j][h * hd + i];
          s[j] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::fmax(mx, s[j]);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (std::size_t j = 0; j <= t; ++j)
          for (std::size_t i = 0; i < hd; ++i) att[h * hd + i] += s[j] / sum * v[j][h * hd + i];
      }
      const Vec o = matvec(b.o, in(rmsnorm(att, b.o_norm, c.norm_eps)));
      for (std::size_t i = 0; i < d; ++i) x[t][i] += o[i];
    }
    for (std::size_t t = 0; t < n; ++t) {
      const Vec a = rmsnorm(x[t], b.ffn_norm, c.norm_eps);
      const Vec aq = in(a);
      const Vec h = activate(matvec(b.up, aq), c.lowbit_ff(), c.swiglu);
      const Vec y1 = matvec(b.down, in(rmsnorm(h, b.down_norm, c.norm_eps)));
      if (c.variant != Variant::kPQuant) {
        for (std::size_t i = 0; i < d; ++i) x[t][i] += y1[i];
        continue;
      }
      std::size_t e = 0;
      double p = 1.0;
      if (c.experts > 1) {
        Vec logit(c.experts, 0.0);
        for (std::size_t j = 0; j < c.experts; ++j)
          for (std::size_t i = 0; i < d; ++i) logit[j] += b.router(j, i) * a[i];
        for (std::size_t j = 1; j < c.experts; ++j)
          if (logit[j] > logit[e]) e = j;
        double sum = 0;
        for (double l : logit) sum += std::exp(l - logit[e]);
        p = 1.0 / sum;
      }
      const Vec he = activate(matvec(b.expert_up[e], aq), c.r, c.swiglu);
      const Vec y8 =
          matvec(b.expert_down[e], fake_quant(rmsnorm(he, b.expert_down_norm[e], c.norm_eps)));
      for (std::size_t i = 0; i < d; ++i) x[t][i] += b.alpha * p * y8[i] + b.beta * y1[i];
    }
  }
  std::vector<Vec> logits(n);
  for (std::size_t t = 0; t < n; ++t) {
    const Vec a = rmsnorm(x[t], m.final_norm, c.norm_eps);
    logits[t] = Vec(c.vocab, 0.0);
    for (std::size_t r = 0; r < c.vocab; ++r)
      for (std::size_t i = 0; i < d; ++i) logits[t][r] += m.head(r, i) * a[i];
  }
  return logits;
}

}  // namespace pquant::inference::reference
