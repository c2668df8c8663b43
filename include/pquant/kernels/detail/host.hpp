// Host-side helpers of the kernel entry points: per-thread scratch and LUT table construction.
#pragma once

#include <cstddef>
#include <bit>
#include <cstdint>
#include <cstring>
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

/// Activation of column k, or 0 in the padding.
inline int act(std::span<const std::int8_t> x, std::size_t k) {
  return k < x.size() ? x[k] : 0;
}

/// Low and high nibble of an activation: x = 16 * high + low, low in [0, 15], high in [-8, 7].
inline int low_nibble(int x) {
  return x & 15;
}
inline int high_nibble(int x) {
  return (x - (x & 15)) / 16;
}

/// Stores one group's split table: TL[idx] = sum_i m_i(idx) low(x_i), TH[idx] = sum_i m_i(idx)
/// high(x_i), where `mult(idx, i)` is weight i's multiplier m_i in [0, 2] for index idx.
template <std::size_t G, class Mult>
void store_split_table(const int (&xs)[G], Mult mult, std::uint8_t* out) {
  for (unsigned idx = 0; idx < 16; ++idx) {
    int tl = 0, th = 0;
    for (std::size_t i = 0; i < G; ++i) {
      const int m = mult(idx, static_cast<unsigned>(i));
      tl += m * low_nibble(xs[i]);
      th += m * high_nibble(xs[i]);
    }
    out[idx] = static_cast<std::uint8_t>(tl);
    out[16 + idx] = static_cast<std::uint8_t>(static_cast<std::int8_t>(th));
  }
}

// The split tables of 1-bit and ternary groups, built 8 entries at a time in 64-bit words (SWAR):
// every entry is a sum of multiplier * nibble <= 60 < 256, so bytes never carry into each other.
// The high table is built from biased nibbles xh + 8 in [0, 15] and unbiased per byte as
// ((U + 128 - 8 m(idx)) xor 0x80), which is U - 8 m(idx) as an int8 without borrows.
namespace swar {
// Byte j of mask_i = multiplier of weight i for table index j (W1: bit i of j).
inline constexpr std::uint64_t kSignBit0 = 0x0100010001000100ull;  // idx 1, 3, 5, 7
inline constexpr std::uint64_t kSignBit1 = 0x0101000001010000ull;  // idx 2, 3, 6, 7
inline constexpr std::uint64_t kSignBit2 = 0x0101010100000000ull;  // idx 4, 5, 6, 7
inline constexpr std::uint64_t kOnes = 0x0101010101010101ull;
// 128 - 8 * popcount(idx) for idx 0..7 and 8..15.
inline constexpr std::uint64_t kSignBiasLo = 0x6870707870787880ull;
inline constexpr std::uint64_t kSignBiasHi = 0x6068687068707078ull;
inline constexpr std::uint64_t kSign80 = 0x8080808080808080ull;
// Ternary: idx = c0 | c1 << 2 with codes c in {0, 1, 2} (3 counts as 0).
inline constexpr std::uint64_t kTernC0 = 0x0002010000020100ull;      // c0 of idx 0..7 (= of 8..15)
inline constexpr std::uint64_t kTernC1Lo = 0x0101010100000000ull;    // c1 of idx 0..7
inline constexpr std::uint64_t kTernC1Hi = 0x0000000002020202ull;    // c1 of idx 8..15
inline constexpr std::uint64_t kTernBiasLo = 0x7868707880707880ull;  // 128 - 8 (c0 + c1)
inline constexpr std::uint64_t kTernBiasHi = 0x8070788070606870ull;

inline void store64(std::uint8_t* out, std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out, &v, sizeof v);  // byte b of the word is entry b
  } else {
    for (int b = 0; b < 8; ++b) out[b] = static_cast<std::uint8_t>(v >> (8 * b));
  }
}
}  // namespace swar

/// W1 tables in 0/1 form: sum_g T_g = sum_k b_k x_k with b = (w + 1) / 2, so that
/// W1 . x = 2 * sum - sum(x). 4 weights per group: TL <= 60, TH in [-32, 28].
inline void build_sign_tables(std::span<const std::int8_t> x, std::size_t groups,
                              std::uint8_t* out) {
  using namespace swar;
  for (std::size_t g = 0; g < groups; ++g) {
    std::uint64_t l[4], h[4];
    const bool inside = 4 * g + 4 <= x.size();  // no padding in this group
    for (std::size_t i = 0; i < 4; ++i) {
      const int v = inside ? x[4 * g + i] : act(x, 4 * g + i);
      l[i] = static_cast<std::uint64_t>(low_nibble(v));
      h[i] = static_cast<std::uint64_t>(high_nibble(v) + 8);
    }
    const std::uint64_t tl = l[0] * kSignBit0 + l[1] * kSignBit1 + l[2] * kSignBit2;
    const std::uint64_t th = h[0] * kSignBit0 + h[1] * kSignBit1 + h[2] * kSignBit2;
    std::uint8_t* t = out + g * 32;
    store64(t, tl);
    store64(t + 8, tl + l[3] * kOnes);
    store64(t + 16, (th + kSignBiasLo) ^ kSign80);
    store64(t + 24, (th + h[3] * kOnes + kSignBiasHi) ^ kSign80);
  }
}

/// Ternary tables in code form: sum_g T_g = sum_k c_k x_k with code c = w + 1 in {0, 1, 2}, so
/// that W2 . x = sum - sum(x). 2 weights per group: TL <= 60, TH in [-32, 28]. Code 3 is rejected
/// at packing and counts as 0 here, so no index can break the 8-bit bounds.
inline void build_ternary_tables(std::span<const std::int8_t> x, std::size_t groups,
                                 std::uint8_t* out) {
  using namespace swar;
  for (std::size_t g = 0; g < groups; ++g) {
    const int x0 = act(x, 2 * g), x1 = act(x, 2 * g + 1);
    const auto l0 = static_cast<std::uint64_t>(low_nibble(x0));
    const auto l1 = static_cast<std::uint64_t>(low_nibble(x1));
    const auto h0 = static_cast<std::uint64_t>(high_nibble(x0) + 8);
    const auto h1 = static_cast<std::uint64_t>(high_nibble(x1) + 8);
    std::uint8_t* t = out + g * 32;
    store64(t, l0 * kTernC0 + l1 * kTernC1Lo);
    store64(t + 8, l0 * kTernC0 + l1 * kTernC1Hi);
    store64(t + 16, (h0 * kTernC0 + h1 * kTernC1Lo + kTernBiasLo) ^ kSign80);
    store64(t + 24, (h0 * kTernC0 + h1 * kTernC1Hi + kTernBiasHi) ^ kSign80);
  }
}

/// Codebook bucket tables: sum_g T_g = sum of x_k over the k whose code is `bucket`.
/// G = 4 / Bits weights per group: TL <= 15 G <= 60, TH in [-8 G, 7 G].
template <unsigned Bits>
void build_bucket_tables(std::span<const std::int8_t> x, std::size_t groups, unsigned bucket,
                         std::uint8_t* out) {
  constexpr std::size_t kGroup = 4 / Bits;
  constexpr unsigned kMask = (1u << Bits) - 1;
  for (std::size_t g = 0; g < groups; ++g) {
    int xs[kGroup];
    for (std::size_t i = 0; i < kGroup; ++i) xs[i] = act(x, kGroup * g + i);
    store_split_table(
        xs,
        [bucket](unsigned idx, unsigned i) { return int(((idx >> (i * Bits)) & kMask) == bucket); },
        out + g * 32);
  }
}

inline std::int64_t sum_of(std::span<const std::int8_t> x) {
  std::int64_t s = 0;
  for (std::int8_t v : x) s += v;
  return s;
}

/// The kernel's int32 sums wrap modulo 2^32; the final value is exact when it fits int32.
inline std::int32_t wrap32(std::int64_t v) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint64_t>(v)));
}

inline float scale_at(std::span<const float> s, std::size_t i) {
  return s.empty() ? 1.0f : (s.size() == 1 ? s[0] : s[i]);
}

}  // namespace pquant::kernels::detail
