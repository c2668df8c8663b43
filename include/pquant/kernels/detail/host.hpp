// Host-side helpers of the kernel entry points: per-thread scratch and LUT table construction.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/kernels/backend.hpp"
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

/// Stores the int16 entries T[0..15] of one group as 16 low bytes then 16 high bytes.
inline void store_table(const int (&t)[16], std::uint8_t* out) {
  for (int i = 0; i < 16; ++i) {
    const auto v = static_cast<std::uint16_t>(static_cast<std::int16_t>(t[i]));
    out[i] = static_cast<std::uint8_t>(v & 0xFF);
    out[16 + i] = static_cast<std::uint8_t>(v >> 8);
  }
}

/// Activation of column k, or 0 in the padding.
inline int act(std::span<const std::int8_t> x, std::size_t k) { return k < x.size() ? x[k] : 0; }

/// W1 tables: T_g[idx] = sum_i (bit i of idx ? +x : -x)[4g + i]. |T| <= 512.
/// Built incrementally: T[0] = -sum x, T[idx] = T[idx without its lowest bit i] + 2 x_i.
inline void build_sign_tables(std::span<const std::int8_t> x, std::size_t groups, std::uint8_t* out) {
  for (std::size_t g = 0; g < groups; ++g) {
    int xs[4];
    for (int i = 0; i < 4; ++i) xs[i] = act(x, g * 4 + static_cast<std::size_t>(i));
    int t[16];
    t[0] = -(xs[0] + xs[1] + xs[2] + xs[3]);
    for (unsigned idx = 1; idx < 16; ++idx) t[idx] = t[idx & (idx - 1)] + 2 * xs[std::countr_zero(idx)];
    store_table(t, out + g * 32);
  }
}

/// W2 tables: T_g[idx] = (idx & 3 - 1) x[2g] + (idx >> 2 - 1) x[2g + 1]. |T| <= 512.
inline void build_ternary_tables(std::span<const std::int8_t> x, std::size_t groups,
                                 std::uint8_t* out) {
  for (std::size_t g = 0; g < groups; ++g) {
    const int x0 = act(x, 2 * g), x1 = act(x, 2 * g + 1);
    int t[16];
    for (int idx = 0; idx < 16; ++idx) t[idx] = ((idx & 3) - 1) * x0 + ((idx >> 2) - 1) * x1;
    store_table(t, out + g * 32);
  }
}

/// Codebook bucket tables: T_g[idx] = sum_i [code i of idx == bucket] x[G g + i]. |T| <= 512.
template <unsigned Bits>
void build_bucket_tables(std::span<const std::int8_t> x, std::size_t groups, unsigned bucket,
                         std::uint8_t* out) {
  constexpr unsigned kGroup = 4 / Bits, kMask = (1u << Bits) - 1;
  for (std::size_t g = 0; g < groups; ++g) {
    int t[16];
    for (unsigned idx = 0; idx < 16; ++idx) {
      int s = 0;
      for (unsigned i = 0; i < kGroup; ++i)
        if (((idx >> (i * Bits)) & kMask) == bucket) s += act(x, kGroup * g + i);
      t[idx] = s;
    }
    store_table(t, out + g * 32);
  }
}

inline float scale_at(std::span<const float> s, std::size_t i) {
  return s.empty() ? 1.0f : (s.size() == 1 ? s[0] : s[i]);
}

}  // namespace pquant::kernels::detail
