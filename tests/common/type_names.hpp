// Readable names for typed test suites: `TYPED_TEST_SUITE(Suite, Types, pquant::test::TypeNames)`
// names each case after its type ("SignAbsMean_PerGroup_64") instead of "/0", "/1", ..., so a
// failing case says which configuration failed. A type may choose its own name with
// `static std::string test_name()`.
#pragma once

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>

namespace pquant::test {

/// The demangled name of T with namespaces dropped and every character that a GoogleTest name
/// cannot hold turned into one '_' ("pquant::KMeansCodebook<4ul, pquant::PerRow>" ->
/// "KMeansCodebook_4_PerRow").
template <class T>
std::string readable_type_name() {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(typeid(T).name(), nullptr, nullptr, &status), std::free);
  std::string full = status == 0 ? demangled.get() : typeid(T).name();
  for (std::string_view ns : {"pquant::", "test::", "(anonymous namespace)::", "std::"}) {
    for (auto pos = full.find(ns); pos != std::string::npos; pos = full.find(ns))
      full.erase(pos, ns.size());
  }
  // Alphanumeric runs joined by '_'; integer arguments lose their suffix ("64ul" -> "64").
  std::string out, run;
  auto flush = [&] {
    if (run.empty()) return;
    std::size_t digits = 0;
    while (digits < run.size() && run[digits] >= '0' && run[digits] <= '9') ++digits;
    if (digits > 0 && run.find_first_not_of("ul", digits) == std::string::npos) run.resize(digits);
    if (!out.empty()) out += '_';
    out += run;
    run.clear();
  };
  for (const char c : full) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum) {
      run += c;
    } else {
      flush();
    }
  }
  flush();
  return out;
}

/// NameGenerator for TYPED_TEST_SUITE.
struct TypeNames {
  template <class T>
  static std::string GetName(int) {
    if constexpr (requires { T::test_name(); }) {
      return T::test_name();
    } else {
      return readable_type_name<T>();
    }
  }
};

}  // namespace pquant::test
