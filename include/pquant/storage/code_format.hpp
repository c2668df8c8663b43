// Code formats: what a b-bit code stored in a PackedMatrix means.
//
// A format is a tag struct with compile-time traits (as gemma.cpp's compression tags):
//   kBits            bits per code (1, 2, 4 or 8)
//   kName            a short name used in model files and reports
//   kHasCodebook     codes index a learned table of 2^kBits floats instead of fixed integers
//   decode(code)     the integer a code stands for (formats without a codebook)
//   encode(value)    the code of an integer value (formats without a codebook)
// Code fields are unsigned kBits-wide integers; bit 1 of SignBit means +1 (docs/method.md
// section 2).
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>

namespace pquant {

/// 1-bit sign codes: 0 -> -1, 1 -> +1.
struct SignBit {
  static constexpr unsigned kBits = 1;
  static constexpr std::string_view kName = "sign1";
  static constexpr bool kHasCodebook = false;
  static constexpr int decode(std::uint8_t code) { return code ? 1 : -1; }
  static constexpr std::uint8_t encode(int value) { return value >= 0 ? 1 : 0; }
};

/// 2-bit ternary codes: 0 -> -1, 1 -> 0, 2 -> +1 (3 is never written).
struct TernaryCode {
  static constexpr unsigned kBits = 2;
  static constexpr std::string_view kName = "ternary2";
  static constexpr bool kHasCodebook = false;
  static constexpr int decode(std::uint8_t code) { return static_cast<int>(code) - 1; }
  static constexpr std::uint8_t encode(int value) { return static_cast<std::uint8_t>(value + 1); }
};

/// Signed INT8 codes stored as their two's-complement byte.
struct Int8Code {
  static constexpr unsigned kBits = 8;
  static constexpr std::string_view kName = "int8";
  static constexpr bool kHasCodebook = false;
  static constexpr int decode(std::uint8_t code) { return static_cast<std::int8_t>(code); }
  static constexpr std::uint8_t encode(int value) { return static_cast<std::uint8_t>(value); }
};

/// b-bit indices into a codebook of 2^b floats (k-means quantization, "1-Bit Wonder").
template <unsigned Bits>
struct CodebookIndex {
  static_assert(Bits == 1 || Bits == 2 || Bits == 4 || Bits == 8, "codebook width 1, 2, 4 or 8");
  static constexpr unsigned kBits = Bits;
  static constexpr std::string_view kName = Bits == 1   ? "codebook1"
                                            : Bits == 2 ? "codebook2"
                                            : Bits == 4 ? "codebook4"
                                                        : "codebook8";
  static constexpr bool kHasCodebook = true;
  static constexpr unsigned kCodebookSize = 1u << Bits;
};

template <class F>
concept CodeFormat = requires {
  { F::kBits } -> std::convertible_to<unsigned>;
  { F::kName } -> std::convertible_to<std::string_view>;
  { F::kHasCodebook } -> std::convertible_to<bool>;
} && (F::kBits == 1 || F::kBits == 2 || F::kBits == 4 || F::kBits == 8);

template <class F>
concept IntegerCodeFormat = CodeFormat<F> && !F::kHasCodebook && requires(std::uint8_t c, int v) {
  { F::decode(c) } -> std::same_as<int>;
  { F::encode(v) } -> std::same_as<std::uint8_t>;
};

}  // namespace pquant
