// random_packed_model<V>: a randomly initialised PackedModel of any exportable variant and size,
// built one block at a time (each block's latent weights exist only while it is packed, so the
// paper's shapes fit in memory): for benchmarks and engine tests. Latent weights follow the
// variant's own initialisation (ModelConfig::init_std), embedding ~ U(-1, 1), head ~
// U(+-1/sqrt(d)), norm gains ~ U(0.8, 1.2). Deterministic for a seed. The blocks' tensors end up
// in a few large buffers (about 64 MB each), read in place (relocate_blocks), as in a model loaded
// from a file.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "pquant/core/matrix.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/model/model_config.hpp"
#include "pquant/model/transformer_block.hpp"

namespace pquant::inference {

template <ModelVariant V>
PackedModel random_packed_model(ModelConfig cfg, std::uint64_t seed) {
  detail::check_exportable<V>();
  if constexpr (requires { V::configure(cfg); }) cfg = V::configure(cfg);
  cfg.validate("random_packed_model");
  Rng rng(seed);
  auto fill = [&](MatrixView<float> m, double lo, double hi) {
    for (std::size_t r = 0; r < m.rows; ++r)
      for (std::size_t c = 0; c < m.cols; ++c) m(r, c) = static_cast<float>(rng.uniform(lo, hi));
  };
  PackedModel m;
  m.structure = detail::base_structure<V>(cfg);
  const std::size_t d = cfg.d_model;
  m.embedding = Matrix<float>(cfg.vocab, d);
  fill(m.embedding.view(), -1.0, 1.0);
  const double bound = 1.0 / std::sqrt(static_cast<double>(d));
  m.head = Matrix<float>(cfg.vocab, d);
  fill(m.head.view(), -bound, bound);
  m.final_norm.resize(d);
  fill(MatrixView<float>(m.final_norm.data(), 1, d, d), 0.8, 1.2);
  // Blocks are relocated in groups of about kGroupBytes (whole huge pages, little padding).
  constexpr std::size_t kGroupBytes = std::size_t{64} << 20;
  std::size_t first = 0, pending_bytes = 0;
  for (std::size_t l = 0; l < cfg.layers; ++l) {
    ParameterStore store;
    TransformerBlock<V> block(store, "blocks." + std::to_string(l), cfg);
    block.init(rng);
    for (std::size_t i = 0; i < store.infos().size(); ++i)
      if (store.infos()[i].role == ParamRole::kNormGain) fill(store.value(ParamId{i}), 0.8, 1.2);
    auto [packed, spec] = detail::export_block<V>(store, block, m.structure.rope_theta);
    m.blocks.push_back(std::move(packed));
    m.structure.blocks.push_back(std::move(spec));
    const PackedBlock& b = m.blocks.back();
    pending_bytes += b.qkv.streamed_bytes() + b.o.streamed_bytes() +
                     b.branch.up.streamed_bytes() + b.branch.down.streamed_bytes();
    for (const PackedBranch& e : b.experts)
      pending_bytes += e.up.streamed_bytes() + e.down.streamed_bytes();
    if (pending_bytes >= kGroupBytes || l + 1 == cfg.layers) {
      relocate_blocks(m, first, l + 1 - first);
      first = l + 1;
      pending_bytes = 0;
    }
  }
  m.structure.validate("random_packed_model");
  validate(m, "random_packed_model");
  return m;
}

}  // namespace pquant::inference
