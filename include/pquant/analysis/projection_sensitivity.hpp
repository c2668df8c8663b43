// The sensitivity map of one captured projection and its statistics (docs/analysis.md).
//
//   ProjectionSensitivity r = projection_sensitivity(capture.projection("blocks.0.ffn.down"),
//                                                    model.store(), WeightSource::kLatent);
//
// Which weights s_ij is computed from, for a quantization-aware model:
//   kLatent     the FP32 latent weights the optimizer trains (the default): they are the model's
//               parameters, they carry the information about which weights training pushed far
//               from the quantization threshold, and they are defined the same way for every
//               variant, so FP, BitNet and pQuant maps compare like with like;
//   kEffective  the weights the forward actually multiplies (BitLinear: W_q = scale * code). For a
//               per-tensor 1-bit projection every |w_ij| is the same scale, so the map only shows
//               the inputs' Hessian: that flatness is itself what "democratization" means for the
//               deployed model.
// Needs Eigen 3 (sensitivity.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pquant/analysis/product_capture.hpp"
#include "pquant/analysis/sensitivity.hpp"
#include "pquant/analysis/sensitivity_stats.hpp"
#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/layers/parameter_store.hpp"

namespace pquant::analysis {

enum class WeightSource { kLatent, kEffective };

struct ProjectionSensitivity {
  std::string name;
  std::size_t rows = 0, cols = 0;  // the weight matrix [out x in]
  std::size_t tokens = 0;          // calibration rows seen (an expert: the tokens routed to it)
  std::size_t dead_columns = 0;
  std::vector<double> scores;  // s, row-major [rows x cols]
  SensitivityStats stats;
};

/// s and its statistics for a captured projection. ValueError when the projection saw fewer
/// calibration tokens than its input width (H would be rank-deficient and the map dominated by
/// the dampening) or none at all.
inline ProjectionSensitivity projection_sensitivity(const ProductCapture::Projection& p,
                                                    const ParameterStore& store,
                                                    WeightSource source = WeightSource::kLatent,
                                                    double damp = kDefaultDamp) {
  const std::size_t in = p.hessian.in_features();
  require<ValueError>(p.products > 0, "projection_sensitivity: projection '", p.name,
                      "' received no tokens in the calibration forwards (an expert the router "
                      "never chose, or a tensor that is not a projection's weight)");
  require<ValueError>(p.hessian.tokens() >= in, "projection_sensitivity: projection '", p.name,
                      "' saw ", p.hessian.tokens(),
                      " calibration tokens, fewer than its input width ", in,
                      "; give more calibration tokens");
  ProjectionSensitivity r;
  r.name = p.name;
  const MatrixView<const float> w =
      source == WeightSource::kLatent ? store.value(p.weight) : p.effective_weight.view();
  r.rows = w.rows;
  r.cols = w.cols;
  r.tokens = p.hessian.tokens();
  const std::vector<double> h = p.hessian.hessian();
  const std::vector<std::uint8_t> dead = dead_columns(h, in);
  for (std::uint8_t d : dead) r.dead_columns += d;
  const std::vector<double> hinv = inverse_hessian_diagonal(h, in, damp);
  r.scores = sensitivity_scores(w, hinv, dead);
  r.stats = sensitivity_stats(r.scores);
  return r;
}

}  // namespace pquant::analysis
