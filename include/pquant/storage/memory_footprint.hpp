// MemoryFootprint: exact accounting of what a packed tensor costs.
//
// code_bits and param_bits are the information a format needs (rows*cols*bits, and 32 bits per
// scale or codebook entry); allocated_bytes is what the process actually holds, padding included.
// bits_per_weight() = (code_bits + param_bits) / weights, so "1.03 bits per weight" is honest.
#pragma once

#include <cstddef>

namespace pquant {

struct MemoryFootprint {
  std::size_t weights = 0;
  std::size_t code_bits = 0;
  std::size_t param_bits = 0;  // scales, codebooks
  std::size_t allocated_bytes = 0;

  double bits_per_weight() const {
    return weights == 0 ? 0.0 : static_cast<double>(code_bits + param_bits) / static_cast<double>(weights);
  }
  /// Bytes of payload (codes + parameters), rounded up to whole bytes.
  std::size_t payload_bytes() const { return (code_bits + param_bits + 7) / 8; }

  MemoryFootprint& operator+=(const MemoryFootprint& o) {
    weights += o.weights;
    code_bits += o.code_bits;
    param_bits += o.param_bits;
    allocated_bytes += o.allocated_bytes;
    return *this;
  }
  friend MemoryFootprint operator+(MemoryFootprint a, const MemoryFootprint& b) { return a += b; }
};

}  // namespace pquant
