// Host-side helpers of the kernel entry points: per-thread scratch and the LUT formats' table
// selectors (the tables themselves are built by the lut_tables kernel).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/kernel_weights.hpp"

namespace pquant::kernels::detail {

/// A per-thread buffer of at least `count` elements that only grows (contents unspecified). If the
/// thread's buffer is already leased (a kernel called from inside a task that stole work while an
/// outer call waits), the lease owns a fresh buffer instead, so nested calls never share memory.
template <class T, int Tag>
class Scratch {
 public:
  explicit Scratch(std::size_t count) {
    Slot& s = slot();
    if (!s.busy) {
      s.busy = true;
      slot_ = &s;
      if (s.buffer.size() < count) s.buffer = AlignedBuffer<T>(count);
      data_ = s.buffer.data();
    } else {
      own_ = AlignedBuffer<T>(count);
      data_ = own_.data();
    }
  }
  ~Scratch() {
    if (slot_ != nullptr) slot_->busy = false;
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() const { return data_; }

 private:
  struct Slot {
    AlignedBuffer<T> buffer;
    bool busy = false;
  };
  static Slot& slot() {
    static thread_local Slot s;
    return s;
  }
  Slot* slot_ = nullptr;
  AlignedBuffer<T> own_;
  T* data_ = nullptr;
};

/// Selector terms of a LUT format's tables (LutTablesArgs in backend.hpp): byte 16 t + idx is the
/// activation that term t adds to entry idx, or kNoTerm.
using LutSelect = std::array<std::uint8_t, 64>;
inline constexpr std::uint8_t kNoTerm = 0x80;

/// W1 in 0/1 form: term t selects x_t when bit t of idx is set, so sum_g T_g = sum_k b_k x_k with
/// b = (w + 1) / 2, and W1 . x = 2 * sum - sum(x).
constexpr LutSelect sign_select() {
  LutSelect s{};
  for (unsigned t = 0; t < 4; ++t)
    for (unsigned idx = 0; idx < 16; ++idx)
      s[16 * t + idx] = ((idx >> t) & 1u) ? static_cast<std::uint8_t>(t) : kNoTerm;
  return s;
}

/// Ternary in code form: idx = c0 | c1 << 2 with c = w + 1 in {0, 1, 2}; terms 0 and 1 select x_0
/// for c0 >= 1 and c0 == 2, terms 2 and 3 likewise x_1, so sum = sum_k c_k x_k and
/// W2 . x = sum - sum(x). Code 3 (rejected at packing) selects nothing.
constexpr LutSelect ternary_select() {
  LutSelect s{};
  for (unsigned idx = 0; idx < 16; ++idx)
    for (unsigned i = 0; i < 2; ++i) {
      const unsigned c = (idx >> (2 * i)) & 3u;
      s[16 * (2 * i) + idx] = (c == 1 || c == 2) ? static_cast<std::uint8_t>(i) : kNoTerm;
      s[16 * (2 * i + 1) + idx] = c == 2 ? static_cast<std::uint8_t>(i) : kNoTerm;
    }
  return s;
}

/// Codebook bucket tables: term i (< 4 / Bits weights per group) selects x_i when code i of idx is
/// `bucket`, so sum = sum of x_k over the k whose code is `bucket`.
template <unsigned Bits>
constexpr LutSelect bucket_select(unsigned bucket) {
  constexpr unsigned kGroup = 4 / Bits, kMask = (1u << Bits) - 1;
  LutSelect s{};
  for (unsigned t = 0; t < 4; ++t)
    for (unsigned idx = 0; idx < 16; ++idx)
      s[16 * t + idx] = (t < kGroup && ((idx >> (t * Bits)) & kMask) == bucket)
                            ? static_cast<std::uint8_t>(t)
                            : kNoTerm;
  return s;
}

/// The kernel's int32 sums wrap modulo 2^32; the final value is exact when it fits int32.
inline std::int32_t wrap32(std::int64_t v) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint64_t>(v)));
}

inline float scale_at(std::span<const float> s, std::size_t i) {
  return s.empty() ? 1.0f : (s.size() == 1 ? s[0] : s[i]);
}

/// Row i of an integer GEMM's output: dst[j] = epilogue_value(sum_j, row_scale[j], token_scale[i],
/// residual(i, j)) for j < n, sum_j = src[j] (int32, or a float holding an exact int32); dst may
/// be src. Without a residual the loop is vectorisable and bit-identical: float(sum) and the float
/// scale multiply exactly in double, so rounding that product once to float equals the float
/// product, and + 0.0f turns -0 into +0 as the double + 0.0 does.
template <class T>
void epilogue_row(const T* src, std::size_t n, std::size_t i, const Epilogue& ep, float* dst) {
  const float ts = scale_at(ep.token_scale, i);
  if (ep.residual.empty()) {
    if (ep.row_scale.size() > 1) {
      const float* rs = ep.row_scale.data();
      for (std::size_t j = 0; j < n; ++j)
        dst[j] = static_cast<float>(static_cast<std::int32_t>(src[j])) * (rs[j] * ts) + 0.0f;
    } else {
      const float scale = scale_at(ep.row_scale, 0) * ts;
      for (std::size_t j = 0; j < n; ++j)
        dst[j] = static_cast<float>(static_cast<std::int32_t>(src[j])) * scale + 0.0f;
    }
    return;
  }
  for (std::size_t j = 0; j < n; ++j)
    dst[j] = epilogue_value(static_cast<std::int32_t>(src[j]), scale_at(ep.row_scale, j), ts,
                            ep.residual(i, j));
}

}  // namespace pquant::kernels::detail
