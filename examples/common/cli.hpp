// What every pquant command-line tool shares: strict numeric validators for CLI11 options and one
// main() wrapper that turns every failure into one line on stderr and a non-zero exit.
//
// CLI11's own integer conversion accepts "-1" for an unsigned option (strtoull wraps it) and reads
// "010" as octal, and its Range lets NaN through; in_range parses the value itself (decimal, whole
// string, finite) and rewrites it in canonical form before CLI11 converts it.
//
// Exit codes: 0 success (and --help), 2 a bad command line, 1 anything that failed while running.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <new>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "pquant/core/error.hpp"

namespace cli {

inline constexpr int kUsageError = 2;
inline constexpr int kRunError = 1;

namespace detail {

template <class T>
std::string show(T v) {
  std::ostringstream s;
  if constexpr (std::is_floating_point_v<T>) s.precision(std::numeric_limits<T>::max_digits10 - 2);
  s << v;
  return s.str();
}

/// Parses the whole of `text` as a decimal T (no sign for unsigned types, no whitespace).
template <class T>
bool parse(const std::string& text, T& out) {
  if (text.empty()) return false;
  const char* first = text.data();
  const char* last = first + text.size();
  if constexpr (std::is_unsigned_v<T>) {
    if (*first == '+' || *first == '-') return false;
  } else if (*first == '+') {
    ++first;  // from_chars takes no '+'
  }
  const auto [end, ec] = std::from_chars(first, last, out);
  if (ec != std::errc() || end != last) return false;
  if constexpr (std::is_floating_point_v<T>) return std::isfinite(out);
  return true;
}

}  // namespace detail

/// Accepts a T in [lo, hi] (floating point: finite) and normalises the text to it: attach it with
/// Option::transform (Option::check would discard the normalised text).
template <class T>
CLI::Validator in_range(T lo, T hi) {
  const std::string kind = std::is_integral_v<T> ? "an integer" : "a finite number";
  const std::string range = "[" + detail::show(lo) + ", " + detail::show(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        T v{};
        if (!detail::parse(text, v) || v < lo || v > hi)
          return "must be " + kind + " in " + range + ", got '" + text + "'";
        if constexpr (std::is_integral_v<T>) text = std::to_string(v);
        return {};
      },
      "in " + range);
}

/// A finite number > lo and <= hi (for rates and scales where 0 is meaningless).
template <class T>
CLI::Validator above(T lo, T hi) {
  static_assert(std::is_floating_point_v<T>);
  const std::string range = "(" + detail::show(lo) + ", " + detail::show(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        T v{};
        if (!detail::parse(text, v) || !(v > lo) || v > hi)
          return "must be a finite number in " + range + ", got '" + text + "'";
        return {};
      },
      "in " + range);
}

/// A bad combination of flags found after parsing: reported like CLI11's own errors.
[[noreturn]] inline void reject(const std::string& flag, const std::string& message) {
  throw CLI::ValidationError(flag, message);
}

/// Parses the command line into `app` (declared by the caller), runs `validate` (cross-flag
/// checks: call reject()), then `body`. Returns the process exit code; every exception ends as
/// one line "<tool>: <what>" on stderr.
inline int run(CLI::App& app, int argc, char** argv, const std::function<void()>& validate,
               const std::function<int()>& body) {
  const std::string tool = app.get_name();
  try {
    try {
      app.parse(argc, argv);
      validate();
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      std::cerr << tool << ": " << e.what() << " (see --help)\n";
      return kUsageError;
    }
    return body();
  } catch (const pquant::Error& e) {
    std::cerr << tool << ": " << e.what() << "\n";
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << tool << ": " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << tool
              << ": out of memory: the requested sizes need more memory than this machine can "
                 "allocate (use smaller sizes)\n";
  } catch (const std::exception& e) {
    std::cerr << tool << ": internal error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << tool << ": internal error: unknown exception\n";
  }
  return kRunError;
}

}  // namespace cli
