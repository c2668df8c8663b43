// ParameterStore: every trainable tensor of a model in one contiguous arena (values, gradients).
//
// As in llm.c, parameters and gradients each live in one buffer carved into named tensors, so
// checkpoints are two memcpys, the optimizer is one fused loop, and a data-parallel all-reduce
// (later: MPI) has exactly one buffer to reduce, at one point: after backward, before the step.
// Layers register their tensors at construction and keep a ParamId; views are computed on demand,
// so registering more tensors (which may reallocate the arena) never leaves a dangling view held
// by a layer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/layers/product_observer.hpp"

namespace pquant {

/// What a tensor is, which decides its default treatment by the optimizer (weight decay applies to
/// kWeight only: norms, scalars such as alpha/beta, embeddings and biases are not decayed).
enum class ParamRole { kWeight, kEmbedding, kNormGain, kScalar, kBias };

struct ParamInfo {
  std::string name;        // hierarchical, e.g. "blocks.3.ffn.int8.up"
  std::size_t offset = 0;  // in floats, into the arena
  std::size_t rows = 0;
  std::size_t cols = 0;
  ParamRole role = ParamRole::kWeight;
  std::size_t size() const { return rows * cols; }
};

/// Index of a tensor in its ParameterStore.
struct ParamId {
  std::size_t index = static_cast<std::size_t>(-1);
  bool valid() const { return index != static_cast<std::size_t>(-1); }
};

class ParameterStore {
 public:
  /// Upper bound on the arena (values; gradients take as much again): 2^40 floats, 4 TiB. Larger
  /// requests are ShapeErrors before anything is allocated.
  static constexpr std::size_t kMaxArenaElements = std::size_t{1} << 40;

  ParameterStore() = default;
  ParameterStore(const ParameterStore&) = delete;  // layers refer to their store by address
  ParameterStore& operator=(const ParameterStore&) = delete;

  /// Registers a zero-initialised [rows x cols] tensor. Each tensor starts on a cache line.
  ParamId add(std::string name, std::size_t rows, std::size_t cols, ParamRole role) {
    require<ShapeError>(rows > 0 && cols > 0, "ParameterStore::add: tensor '", name,
                        "' must be non-empty, got ", rows, "x", cols);
    for (const ParamInfo& p : infos_)
      require<ValueError>(p.name != name, "ParameterStore::add: duplicate tensor name '", name,
                          "'");
    constexpr std::size_t kLine = kAlignment / sizeof(float);
    const std::size_t offset = (used_ + kLine - 1) / kLine * kLine;
    // Sizes come from user configs: a product or sum that wraps would register a tensor smaller
    // than its shape (and the arena's doubling would never reach a wrapped target).
    std::size_t elements = 0, end = 0;
    require<ShapeError>(
        !__builtin_mul_overflow(rows, cols, &elements) &&
            !__builtin_add_overflow(offset, elements, &end) && end <= kMaxArenaElements,
        "ParameterStore::add: tensor '", name, "' of ", rows, "x", cols,
        " would take the parameter arena past its limit of ", kMaxArenaElements, " floats");
    infos_.push_back({std::move(name), offset, rows, cols, role});
    grow(end);
    return {infos_.size() - 1};
  }

  MatrixView<float> value(ParamId id) { return view(values_, id); }
  MatrixView<const float> value(ParamId id) const { return view(values_, id); }
  MatrixView<float> grad(ParamId id) { return view(grads_, id); }
  MatrixView<const float> grad(ParamId id) const { return view(grads_, id); }
  const ParamInfo& info(ParamId id) const { return infos_.at(id.index); }
  const std::vector<ParamInfo>& infos() const { return infos_; }

  /// The whole arenas (padding between tensors included; padding values and gradients stay 0).
  std::span<float> values() { return {values_.data(), used_}; }
  std::span<const float> values() const { return {values_.data(), used_}; }
  std::span<float> grads() { return {grads_.data(), used_}; }
  std::span<const float> grads() const { return {grads_.data(), used_}; }

  /// Number of trainable scalars (padding excluded).
  std::size_t parameter_count() const {
    std::size_t n = 0;
    for (const ParamInfo& p : infos_) n += p.size();
    return n;
  }
  void zero_grads() {
    if (used_ != 0) std::memset(grads_.data(), 0, used_ * sizeof(float));
  }

  /// The observer every projection registered here reports its product to (nullptr: none; the
  /// default). Not owned; it must outlive the forwards it observes.
  void set_observer(ProductObserver* observer) { observer_ = observer; }
  ProductObserver* observer() const { return observer_; }

 private:
  template <class Buffer>
  static auto view_of(Buffer& buffer, const ParamInfo& p) {
    return MatrixView(buffer.data() + p.offset, p.rows, p.cols);
  }
  MatrixView<float> view(AlignedBuffer<float>& b, ParamId id) {
    return view_of(b, infos_.at(id.index));
  }
  MatrixView<const float> view(const AlignedBuffer<float>& b, ParamId id) const {
    const ParamInfo& p = infos_.at(id.index);
    return {b.data() + p.offset, p.rows, p.cols};
  }
  void grow(std::size_t needed) {
    if (needed > values_.size()) {
      // Doubling from at most kMaxArenaElements (2^40) cannot wrap; the last step is clamped.
      std::size_t capacity = values_.size() == 0 ? 4096 : values_.size();
      while (capacity < needed) capacity *= 2;
      capacity = std::min(capacity, kMaxArenaElements);
      AlignedBuffer<float> v(capacity), g(capacity);
      if (used_ != 0) {
        std::memcpy(v.data(), values_.data(), used_ * sizeof(float));
        std::memcpy(g.data(), grads_.data(), used_ * sizeof(float));
      }
      values_ = std::move(v);
      grads_ = std::move(g);
    }
    used_ = needed;
  }

  AlignedBuffer<float> values_;
  AlignedBuffer<float> grads_;
  std::size_t used_ = 0;
  std::vector<ParamInfo> infos_;
  ProductObserver* observer_ = nullptr;
};

}  // namespace pquant
