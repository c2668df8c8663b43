// The paper's variants as one type list, and the one function that maps a variant's name to its
// type. Every place that turns a name from a command line or a file into a model type goes
// through visit_variant, so adding a variant to PaperVariants is the whole change.
//
//   visit_variant(name, [&]<class V>(std::type_identity<V>) { DecoderModel<V> model(c, seed); });
//
// An unknown name is a ValueError that lists the known ones.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/model/variant.hpp"
#include "pquant/model/variants.hpp"

namespace pquant {

/// A list of variant policies (each a ModelVariant with a distinct kName).
template <ModelVariant... Vs>
struct VariantList {
  static constexpr std::size_t size = sizeof...(Vs);

  /// The variants' names, in list order.
  static std::vector<std::string_view> names() { return {Vs::kName...}; }

  /// "a, b, c or d": for messages and help texts.
  static std::string names_text() {
    std::string out;
    const std::vector<std::string_view> n = names();
    for (std::size_t i = 0; i < n.size(); ++i) {
      if (i > 0) out += i + 1 == n.size() ? " or " : ", ";
      out += n[i];
    }
    return out;
  }

  static bool contains(std::string_view name) { return ((Vs::kName == name) || ...); }
};

/// The paper's four variants (FP, BitNet, BitNet b1.58, pQuant with experts / r from the runtime
/// config), in the order the documentation lists them.
using PaperVariants =
    VariantList<variants::FP, variants::BitNet, variants::BitNet158, variants::PQuant<>>;

namespace detail {

template <class F, class V, class... Rest>
decltype(auto) visit_variant_impl(std::string_view name, F& f) {
  if constexpr (sizeof...(Rest) == 0) {
    return f(std::type_identity<V>{});  // the caller checked that the name is in the list
  } else {
    if (V::kName == name) return f(std::type_identity<V>{});
    return visit_variant_impl<F, Rest...>(name, f);
  }
}

template <class List>
struct VisitVariant;
template <class... Vs>
struct VisitVariant<VariantList<Vs...>> {
  template <class F>
  static decltype(auto) run(std::string_view name, F& f) {
    require<ValueError>(VariantList<Vs...>::contains(name), "unknown variant '", name,
                        "', expected ", VariantList<Vs...>::names_text());
    return visit_variant_impl<F, Vs...>(name, f);
  }
};

}  // namespace detail

/// Calls f(std::type_identity<V>{}) for the variant V of `List` named `name` and returns its
/// result (every instantiation of f must return the same type). ValueError for an unknown name.
template <class List = PaperVariants, class F>
decltype(auto) visit_variant(std::string_view name, F&& f) {
  return detail::VisitVariant<List>::run(name, f);
}

}  // namespace pquant
