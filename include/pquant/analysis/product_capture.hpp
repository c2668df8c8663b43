// ProductCapture: collects, for chosen projections of a model, the input Hessian H = 2 X^T X / n
// of their inputs over calibration forwards, and their effective weights, through the
// ParameterStore's ProductObserver (layers/product_observer.hpp): the model's own forward runs
// unchanged and nothing of it is copied.
//
//   ProductCapture capture(model.store(), {"blocks.0.ffn.down", "blocks.1.attn.q"});
//   capture.attach();  for (...) model.forward(tokens, shape, logits);  capture.detach();
//   capture.projection("blocks.0.ffn.down").hessian.hessian();   // [in x in], FP64
//
// A projection is named as its weight tensor without ".weight" ("blocks.0.attn.q",
// "blocks.1.ffn.int1.up", "blocks.1.ffn.experts.2.down", "head"). What X is per projection type:
// the operand its weights multiply (ProductObserver). An expert's X holds only the tokens the
// router sent to it.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/analysis/input_hessian.hpp"
#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/layers/product_observer.hpp"

namespace pquant::analysis {

/// The names of the weight matrices a ProductCapture can be asked for: every kWeight tensor named
/// "<projection>.weight", as "<projection>".
inline std::vector<std::string> projection_names(const ParameterStore& store) {
  std::vector<std::string> names;
  for (const ParamInfo& p : store.infos())
    if (p.role == ParamRole::kWeight && p.name.ends_with(".weight"))
      names.push_back(p.name.substr(0, p.name.size() - 7));
  return names;
}

class ProductCapture final : public ProductObserver {
 public:
  struct Projection {
    std::string name;
    ParamId weight;
    InputHessian hessian;
    Matrix<float> effective_weight;  // W of the last observed product (W_q for BitLinear)
    std::size_t products = 0;        // forwards observed
  };

  /// ValueError naming the first unknown projection (and listing the known ones).
  ProductCapture(ParameterStore& store, const std::vector<std::string>& names) : store_(&store) {
    require<ValueError>(!names.empty(), "ProductCapture: no projection names given");
    for (const std::string& name : names) {
      ParamId id;
      for (std::size_t i = 0; i < store.infos().size(); ++i) {
        const ParamInfo& p = store.infos()[i];
        if (p.role == ParamRole::kWeight && p.name == name + ".weight") id = ParamId{i};
      }
      if (!id.valid()) {
        std::string known;
        for (const std::string& n : projection_names(store))
          known += (known.empty() ? "" : ", ") + n;
        throw ValueError("pquant: ProductCapture: the model has no projection '" + name +
                         "'; its projections are: " + known);
      }
      require<ValueError>(by_index_.count(id.index) == 0, "ProductCapture: projection '", name,
                          "' is named twice");
      auto p = std::make_unique<Projection>(
          Projection{name, id, InputHessian(store.info(id).cols), {}, 0});
      by_index_[id.index] = p.get();
      projections_.push_back(std::move(p));
    }
  }
  ~ProductCapture() { detach(); }
  ProductCapture(const ProductCapture&) = delete;
  ProductCapture& operator=(const ProductCapture&) = delete;

  /// Makes the store report to this capture (replacing any other observer) / stops it.
  void attach() { store_->set_observer(this); }
  void detach() {
    if (store_->observer() == this) store_->set_observer(nullptr);
  }

  void on_product(ParamId weight, MatrixView<const float> x, MatrixView<const float> w) override {
    const auto it = by_index_.find(weight.index);  // read-only: safe from concurrent calls
    if (it == by_index_.end()) return;
    Projection& p = *it->second;  // only this projection's own forward touches p
    p.hessian.add(x);
    if (p.effective_weight.rows() != w.rows || p.effective_weight.cols() != w.cols)
      p.effective_weight = Matrix<float>(w.rows, w.cols);
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c) p.effective_weight(r, c) = w(r, c);
    ++p.products;
  }

  std::size_t size() const { return projections_.size(); }
  const Projection& projection(std::size_t i) const { return *projections_.at(i); }
  /// ValueError for a name not captured.
  const Projection& projection(std::string_view name) const {
    for (const auto& p : projections_)
      if (p->name == name) return *p;
    throw ValueError("pquant: ProductCapture::projection: '" + std::string(name) +
                     "' was not captured");
  }

 private:
  ParameterStore* store_;
  std::vector<std::unique_ptr<Projection>> projections_;
  std::map<std::size_t, Projection*> by_index_;
};

}  // namespace pquant::analysis
