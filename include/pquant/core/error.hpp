// pquant's exception types and the checks that throw them.
//
// Every public entry point validates its arguments and throws one of these with a message that
// names the function, the argument and what was expected ("pquant::gemv: argument 'x' must have
// 4096 elements, got 4095"). Nothing in pquant signals bad input through UB, asserts or NaNs.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace pquant {

/// Base of every exception pquant throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor argument has the wrong shape, is empty, or two shapes disagree.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A value is out of its domain: NaN/Inf input, a negative size, an unknown option.
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A file or byte stream is malformed: truncated, oversized, inconsistent or hostile.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// The operating system refused a file operation.
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

}  // namespace detail

/// Throws `E` with the concatenated message parts when `ok` is false. The parts are only
/// formatted on failure, so checks are cheap on the hot path.
template <class E = ValueError, class... Parts>
inline void require(bool ok, Parts&&... parts) {
  if (!ok) [[unlikely]] {
    throw E(detail::concat("pquant: ", std::forward<Parts>(parts)...));
  }
}

}  // namespace pquant
