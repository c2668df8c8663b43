// PackedLinear: one deployable projection of any packed form (quantizers/packed_form.hpp), with
// its form chosen at run time, and the registry that maps a model file's form ids to form types.
//
//   PackedLinear l = PackedLinear::of(P::pack<Q>(parts));   // any PackedForm P
//   l.apply(x, y);                                          // gemv for one token, gemm for more
// The registry knows the library's forms (1-bit, ternary and codebook LUT codes per row and per
// group of 64, INT8 per row, FP32); register_form<P>() adds a user's form, after which model files
// that use it load like any other.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"
#include "pquant/quantizers/packed_form.hpp"
#include "pquant/quantizers/packed_fp32.hpp"
#include "pquant/quantizers/packed_int8.hpp"
#include "pquant/quantizers/packed_lut.hpp"

namespace pquant::inference {

class PackedLinear {
 public:
  PackedLinear() = default;

  template <PackedForm P>
  static PackedLinear of(P form) {
    PackedLinear l;
    l.impl_ = std::make_shared<const Holder<P>>(std::move(form));
    return l;
  }

  bool empty() const { return impl_ == nullptr; }
  std::size_t rows() const { return impl_->rows(); }
  std::size_t cols() const { return impl_->cols(); }
  FormInput input() const { return impl_->input(); }
  std::string_view id() const { return impl_->id(); }
  nlohmann::json describe() const { return impl_->describe(); }
  std::size_t payload_bits() const { return impl_->payload_bits(); }
  std::size_t streamed_bytes() const { return impl_->streamed_bytes(); }
  void save(io::SafetensorsWriter& w, const std::string& name) const { impl_->save(w, name); }

  /// y [n x rows] = W . x: the GEMV kernels for one token, the GEMMs for several.
  void apply(const ActivationRows& x, MatrixView<float> y) const {
    require<ShapeError>(x.a.cols == cols() && y.rows == x.rows() && y.cols == rows() &&
                            x.rows() > 0,
                        "PackedLinear::apply: shapes do not match: input ", x.rows(), "x",
                        x.a.cols, ", weight ", rows(), "x", cols(), ", output ", y.rows, "x",
                        y.cols);
    require<ShapeError>(input() == FormInput::kFp32 || x.q.rows == x.rows(),
                        "PackedLinear::apply: form '", id(), "' needs INT8 activations");
    if (x.rows() == 1)
      impl_->gemv(x, y);
    else
      impl_->gemm(x, y);
  }

  /// The form object, if it is a P (tests, tools).
  template <PackedForm P>
  const P* as() const {
    const auto* h = dynamic_cast<const Holder<P>*>(impl_.get());
    return h ? &h->form : nullptr;
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual std::size_t rows() const = 0;
    virtual std::size_t cols() const = 0;
    virtual FormInput input() const = 0;
    virtual std::string_view id() const = 0;
    virtual nlohmann::json describe() const = 0;
    virtual std::size_t payload_bits() const = 0;
    virtual std::size_t streamed_bytes() const = 0;
    virtual void save(io::SafetensorsWriter& w, const std::string& name) const = 0;
    virtual void gemv(const ActivationRows& x, MatrixView<float> y) const = 0;
    virtual void gemm(const ActivationRows& x, MatrixView<float> y) const = 0;
  };
  template <PackedForm P>
  struct Holder final : Base {
    explicit Holder(P f) : form(std::move(f)) {}
    P form;
    std::size_t rows() const override { return form.rows(); }
    std::size_t cols() const override { return form.cols(); }
    FormInput input() const override { return P::kInput; }
    std::string_view id() const override { return P::kId; }
    nlohmann::json describe() const override { return P::describe(); }
    std::size_t payload_bits() const override { return form.payload_bits(); }
    std::size_t streamed_bytes() const override { return form.streamed_bytes(); }
    void save(io::SafetensorsWriter& w, const std::string& name) const override {
      form.save(w, name);
    }
    void gemv(const ActivationRows& x, MatrixView<float> y) const override { form.gemv(x, y); }
    void gemm(const ActivationRows& x, MatrixView<float> y) const override { form.gemm(x, y); }
  };
  std::shared_ptr<const Base> impl_;
};

/// Form id -> how to check and load it. Thread-safe; the library's forms are always present.
class FormRegistry {
 public:
  struct Entry {
    std::function<std::vector<TensorSpec>(const std::string&, std::size_t, std::size_t)> expected;
    std::function<PackedLinear(const io::SafetensorsView&, const std::string&, std::size_t,
                               std::size_t)>
        load;
    std::function<nlohmann::json()> describe;
  };

  static FormRegistry& global() {
    static FormRegistry r;
    return r;
  }

  template <PackedForm P>
  void add() {
    const std::lock_guard<std::mutex> lock(mutex_);
    entries_[std::string(P::kId)] =
        Entry{[](const std::string& n, std::size_t r, std::size_t c) { return P::expected(n, r, c); },
              [](const io::SafetensorsView& f, const std::string& n, std::size_t r,
                 std::size_t c) { return PackedLinear::of(P::load(f, n, r, c)); },
              [] { return P::describe(); }};
  }

  /// The entry of form `id`; FormatError naming the known forms when there is none.
  /// The description form `id` writes (FormatError when unknown).
  nlohmann::json describe(std::string_view id) const { return find(id).describe(); }

  Entry find(std::string_view id) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(std::string(id));
    if (it != entries_.end()) return it->second;
    std::string known;
    for (const auto& [k, e] : entries_) known += (known.empty() ? "" : ", ") + k;
    throw FormatError("pquant: load_model: unknown packed form '" + std::string(id) +
                      "' (known: " + known + "; a user's form is added with register_form<P>())");
  }

 private:
  FormRegistry() {
    add<LutCodes<SignBit, PerRow>>();
    add<LutCodes<SignBit, PerGroup<64>>>();
    add<LutCodes<TernaryCode, PerRow>>();
    add<LutCodes<TernaryCode, PerGroup<64>>>();
    add<LutCodes<CodebookIndex<1>, PerRow>>();
    add<LutCodes<CodebookIndex<2>, PerRow>>();
    add<LutCodes<CodebookIndex<4>, PerRow>>();
    add<LutCodes<CodebookIndex<2>, PerGroup<64>>>();
    add<LutCodes<CodebookIndex<4>, PerGroup<64>>>();
    add<Int8Codes<PerRow>>();
    add<Fp32Weights>();
  }
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

/// Makes model files that use form P loadable (export_model registers the forms it writes).
template <PackedForm P>
void register_form() {
  FormRegistry::global().add<P>();
}

}  // namespace pquant::inference
