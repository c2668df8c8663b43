// Per-target SIMD kernels (Highway). Not included directly: dispatch.hpp (runtime dispatch, one TU)
// or detail/static_backend.h (PQUANT_STATIC_DISPATCH) expand it once per target. Shapes and the
// exactness arguments are documented beside each kernel and in docs/kernels.md.

// Toggle guard: one expansion per target (Highway's foreach_target re-includes this file).
#if defined(PQUANT_KERNELS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PQUANT_KERNELS_INL_H_
#undef PQUANT_KERNELS_INL_H_
#else
#define PQUANT_KERNELS_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/epilogue.hpp"
#include "pquant/kernels/kernel_weights.hpp"

HWY_BEFORE_NAMESPACE();
namespace pquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Target the next call runs on (for tests and reports).
HWY_NOINLINE std::int64_t CurrentTarget() {
  return HWY_TARGET;
}

// Per-thread scratch that only grows (no allocation or page faults in the hot path).
template <class T, int kSlot>
T* Scratch(std::size_t count) {
  static thread_local hwy::AlignedFreeUniquePtr<T[]> buffer;
  static thread_local std::size_t capacity = 0;
  if (count > capacity) {
    buffer = hwy::AllocateAligned<T>(count);
    capacity = count;
  }
  return buffer.get();
}

// ---------------------------------------------------------------------------------------------
// LUT GEMV: out[r] = sum_g (16 TH_g[index(r, g)] + TL_g[index(r, g)]) (W1A8, W2A8, codebook
// buckets; the bounds that make every step exact are in backend.hpp, LutGemvArgs).
//
// One tile = 32 rows; one byte-vector load holds the 4-bit indices of two groups for 32 rows (16 on
// 128-bit targets). A step covers two loads = four groups: TableLookupBytes gives TL and TH of each
// group for every row, four of each are summed in 8 bits, and one unsigned x signed pairwise
// multiply-add (pmaddubsw with constant (1, 0) / (0, 1) / (16, 0) / (0, 16) multipliers) widens the
// even and odd rows into int16 while applying the factor 16. So a group costs 2 byte shuffles per
// 32 rows and the widening is shared by four groups. 256-bit vectors are used on AVX-512 targets
// too (the layout's tile is 32 rows).

#if HWY_TARGET == HWY_SCALAR
// One-lane target (no byte shuffles): the same sums, one row at a time.
HWY_INLINE void LutTile(const std::uint8_t* HWY_RESTRICT index, std::size_t pairs,
                        const std::uint8_t* HWY_RESTRICT tables, std::int32_t* HWY_RESTRICT out) {
  for (std::size_t row = 0; row < kLutTile; ++row) {
    std::uint32_t acc = 0;
    for (std::size_t p = 0; p < pairs; ++p) {
      const unsigned v = index[p * kLutTile + row];
      const std::uint8_t* t = tables + p * 64;
      for (unsigned half = 0; half < 2; ++half) {
        const unsigned i = half ? (v >> 4) : (v & 15u);
        const std::uint8_t* tg = t + 32 * half;
        acc += static_cast<std::uint32_t>(16 * static_cast<std::int8_t>(tg[16 + i]) + tg[i]);
      }
    }
    out[row] = static_cast<std::int32_t>(acc);
  }
}
#else

// pmaddubsw: (unsigned a) x (signed b), adjacent pairs added into int16. Our operands never
// saturate, so the portable fallback (no saturation) is identical.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_SSSE3
HWY_INLINE hn::Vec128<std::int16_t> MulPairs(hn::Vec128<std::uint8_t> a,
                                             hn::Vec128<std::int8_t> b) {
  return hn::Vec128<std::int16_t>{_mm_maddubs_epi16(a.raw, b.raw)};
}
#if HWY_TARGET <= HWY_AVX2
HWY_INLINE hn::Vec256<std::int16_t> MulPairs(hn::Vec256<std::uint8_t> a,
                                             hn::Vec256<std::int8_t> b) {
  return hn::Vec256<std::int16_t>{_mm256_maddubs_epi16(a.raw, b.raw)};
}
#endif
#else
template <class VU8, class VI8>
HWY_INLINE auto MulPairs(VU8 a, VI8 b) {
  const hn::DFromV<VU8> du8;
  const hn::Repartition<std::uint16_t, decltype(du8)> du16;
  const hn::Repartition<std::int16_t, decltype(du8)> di16;
  const auto a_even = hn::BitCast(di16, hn::And(hn::BitCast(du16, a), hn::Set(du16, 0xFF)));
  const auto a_odd = hn::BitCast(di16, hn::ShiftRight<8>(hn::BitCast(du16, a)));
  const auto b_even = hn::ShiftRight<8>(hn::ShiftLeft<8>(hn::BitCast(di16, b)));
  const auto b_odd = hn::ShiftRight<8>(hn::BitCast(di16, b));
  return hn::Add(hn::Mul(a_even, b_even), hn::Mul(a_odd, b_odd));
}
#endif

HWY_INLINE void LutTile(const std::uint8_t* HWY_RESTRICT index, std::size_t pairs,
                        const std::uint8_t* HWY_RESTRICT tables, std::int32_t* HWY_RESTRICT out) {
  const hn::CappedTag<std::uint8_t, 32> du8;
  const hn::Repartition<std::int8_t, decltype(du8)> di8;
  const hn::Repartition<std::int16_t, decltype(du8)> di16;
  const hn::Repartition<std::uint16_t, decltype(du8)> du16;
  const std::size_t N = hn::Lanes(du8);
  const std::size_t H = N / 2;
  HWY_ALIGN std::int16_t part[32];
  std::uint32_t acc[kLutTile] = {};
  const auto nibble = hn::Set(du8, 0x0F);
  const auto even1 = hn::BitCast(di8, hn::Set(du16, 0x0001));   // (1, 0) multipliers
  const auto odd1 = hn::BitCast(di8, hn::Set(du16, 0x0100));    // (0, 1)
  const auto even16 = hn::BitCast(du8, hn::Set(du16, 0x0010));  // (16, 0)
  const auto odd16 = hn::BitCast(du8, hn::Set(du16, 0x1000));   // (0, 16)
  constexpr std::size_t kPairsPerBlock = detail::kLutGroupsPerBlock / 2;
  for (std::size_t chunk = 0; chunk < kLutTile; chunk += N) {
    for (std::size_t p0 = 0; p0 < pairs; p0 += kPairsPerBlock) {
      const std::size_t p1 = std::min(pairs, p0 + kPairsPerBlock);
      auto acc_even = hn::Zero(di16);
      auto acc_odd = hn::Zero(di16);
      for (std::size_t p = p0; p < p1; p += 2) {
        const auto v0 = hn::Load(du8, index + p * kLutTile + chunk);
        const auto v1 = hn::Load(du8, index + (p + 1) * kLutTile + chunk);
        const auto i0 = hn::And(v0, nibble);
        const auto i1 = hn::And(hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v0))), nibble);
        const auto i2 = hn::And(v1, nibble);
        const auto i3 = hn::And(hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v1))), nibble);
        const std::uint8_t* t = tables + p * 64;
        // Low-nibble sums: 4 x <= 60 fits uint8; high-nibble sums: 4 x [-32, 28] fits int8.
        auto lo = hn::TableLookupBytes(hn::LoadDup128(du8, t), i0);
        auto hi = hn::TableLookupBytes(hn::LoadDup128(du8, t + 16), i0);
        lo = hn::Add(lo, hn::TableLookupBytes(hn::LoadDup128(du8, t + 32), i1));
        hi = hn::Add(hi, hn::TableLookupBytes(hn::LoadDup128(du8, t + 48), i1));
        lo = hn::Add(lo, hn::TableLookupBytes(hn::LoadDup128(du8, t + 64), i2));
        hi = hn::Add(hi, hn::TableLookupBytes(hn::LoadDup128(du8, t + 80), i2));
        lo = hn::Add(lo, hn::TableLookupBytes(hn::LoadDup128(du8, t + 96), i3));
        hi = hn::Add(hi, hn::TableLookupBytes(hn::LoadDup128(du8, t + 112), i3));
        const auto hi_signed = hn::BitCast(di8, hi);
        acc_even = hn::Add(acc_even, hn::Add(MulPairs(lo, even1), MulPairs(even16, hi_signed)));
        acc_odd = hn::Add(acc_odd, hn::Add(MulPairs(lo, odd1), MulPairs(odd16, hi_signed)));
      }
      hn::Store(acc_even, di16, part);
      hn::Store(acc_odd, di16, part + H);
      for (std::size_t q = 0; q < N; ++q)
        acc[chunk + q] += static_cast<std::uint32_t>(static_cast<std::int32_t>(part[q]));
    }
  }
  // Vector order -> row order: lane q of the even sums is row 2q of the chunk, of the odd sums
  // 2q+1.
  for (std::size_t chunk = 0; chunk < kLutTile; chunk += N)
    for (std::size_t q = 0; q < N; ++q) {
      const std::size_t row = q < H ? 2 * q : 2 * (q - H) + 1;
      out[chunk + row] = static_cast<std::int32_t>(acc[chunk + q]);
    }
}
#endif  // HWY_TARGET == HWY_SCALAR

#define PQUANT_LUT_PAIR_TILES (HWY_TARGET != HWY_SCALAR && HWY_MAX_BYTES >= 32)
#if PQUANT_LUT_PAIR_TILES
// Two tiles at once on targets with 32-byte vectors: every table broadcast feeds 64 rows.
HWY_INLINE void LutTilePair(const std::uint8_t* HWY_RESTRICT index0,
                            const std::uint8_t* HWY_RESTRICT index1, std::size_t pairs,
                            const std::uint8_t* HWY_RESTRICT tables,
                            std::int32_t* HWY_RESTRICT out0, std::int32_t* HWY_RESTRICT out1) {
  const hn::CappedTag<std::uint8_t, 32> du8;
  const hn::Repartition<std::int8_t, decltype(du8)> di8;
  const hn::Repartition<std::int16_t, decltype(du8)> di16;
  const hn::Repartition<std::uint16_t, decltype(du8)> du16;
  constexpr std::size_t H = kLutTile / 2;
  HWY_ALIGN std::int16_t part[4 * H];
  std::uint32_t acc[2 * kLutTile] = {};
  const auto nibble = hn::Set(du8, 0x0F);
  const auto even1 = hn::BitCast(di8, hn::Set(du16, 0x0001));
  const auto odd1 = hn::BitCast(di8, hn::Set(du16, 0x0100));
  const auto even16 = hn::BitCast(du8, hn::Set(du16, 0x0010));
  const auto odd16 = hn::BitCast(du8, hn::Set(du16, 0x1000));
  constexpr std::size_t kPairsPerBlock = detail::kLutGroupsPerBlock / 2;
  auto low = [&](hn::Vec<decltype(du8)> v) HWY_ATTR { return hn::And(v, nibble); };
  auto high = [&](hn::Vec<decltype(du8)> v) HWY_ATTR {
    return hn::And(hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v))), nibble);
  };
  for (std::size_t p0 = 0; p0 < pairs; p0 += kPairsPerBlock) {
    const std::size_t p1 = std::min(pairs, p0 + kPairsPerBlock);
    auto e0 = hn::Zero(di16), o0 = hn::Zero(di16), e1 = hn::Zero(di16), o1 = hn::Zero(di16);
    for (std::size_t p = p0; p < p1; p += 2) {
      const auto a0 = hn::Load(du8, index0 + p * kLutTile);
      const auto a1 = hn::Load(du8, index0 + (p + 1) * kLutTile);
      const auto b0 = hn::Load(du8, index1 + p * kLutTile);
      const auto b1 = hn::Load(du8, index1 + (p + 1) * kLutTile);
      const std::uint8_t* t = tables + p * 64;
      // Four groups per step, each a (low, high) 16-entry table pair looked up by both tiles'
      // 4-bit indices; the first step initialises the sums, the other three add to them.
      auto lo0 = hn::Zero(du8), hi0 = lo0, lo1 = lo0, hi1 = lo0;
      auto step = [&](const std::uint8_t* tab, hn::Vec<decltype(du8)> ia,
                      hn::Vec<decltype(du8)> ib) HWY_ATTR {
        const auto tl = hn::LoadDup128(du8, tab), th = hn::LoadDup128(du8, tab + 16);
        lo0 = hn::Add(lo0, hn::TableLookupBytes(tl, ia));
        hi0 = hn::Add(hi0, hn::TableLookupBytes(th, ia));
        lo1 = hn::Add(lo1, hn::TableLookupBytes(tl, ib));
        hi1 = hn::Add(hi1, hn::TableLookupBytes(th, ib));
      };
      step(t, low(a0), low(b0));
      step(t + 32, high(a0), high(b0));
      step(t + 64, low(a1), low(b1));
      step(t + 96, high(a1), high(b1));
      const auto h0 = hn::BitCast(di8, hi0), h1 = hn::BitCast(di8, hi1);
      e0 = hn::Add(e0, hn::Add(MulPairs(lo0, even1), MulPairs(even16, h0)));
      o0 = hn::Add(o0, hn::Add(MulPairs(lo0, odd1), MulPairs(odd16, h0)));
      e1 = hn::Add(e1, hn::Add(MulPairs(lo1, even1), MulPairs(even16, h1)));
      o1 = hn::Add(o1, hn::Add(MulPairs(lo1, odd1), MulPairs(odd16, h1)));
    }
    hn::Store(e0, di16, part);
    hn::Store(o0, di16, part + H);
    hn::Store(e1, di16, part + 2 * H);
    hn::Store(o1, di16, part + 3 * H);
    for (std::size_t q = 0; q < 2 * kLutTile; ++q)
      acc[q] += static_cast<std::uint32_t>(static_cast<std::int32_t>(part[q]));
  }
  for (std::size_t q = 0; q < kLutTile; ++q) {
    const std::size_t row = q < H ? 2 * q : 2 * (q - H) + 1;
    out0[row] = static_cast<std::int32_t>(acc[q]);
    out1[row] = static_cast<std::int32_t>(acc[kLutTile + q]);
  }
}
#endif

// The fused epilogue of rows [first, first + count) (see LutGemvArgs).
inline void LutEpilogue(const detail::LutGemvArgs& a, std::size_t first, std::size_t count) {
  const std::size_t end = std::min(a.rows, first + count);
  for (std::size_t r = first; r < end; ++r) {
    const std::uint64_t v =
        static_cast<std::uint64_t>(static_cast<std::int64_t>(a.mul) * a.out[r] + a.offset);
    const auto acc = static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
    const float rs = a.row_scale_size == 0 ? 1.0f : a.row_scale[a.row_scale_size == 1 ? 0 : r];
    a.y[r] = detail::epilogue_value(acc, rs, a.token_scale, a.residual ? a.residual[r] : 0.0f);
  }
}

HWY_NOINLINE void LutGemv(const detail::LutGemvArgs& a) {
  const std::size_t tile_bytes = a.pairs * kLutTile;
#if PQUANT_LUT_PAIR_TILES
  const bool pair_tiles = hn::Lanes(hn::CappedTag<std::uint8_t, 32>()) == kLutTile;
#endif
  // Small row tiles (4 x 32 rows) scheduled dynamically: the two cores of a VM are not always
  // equal. Each tile's rows are computed by one task, so results do not depend on the threads.
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, (a.tiles + 3) / 4, 1),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        for (std::size_t blk = range.begin(); blk != range.end(); ++blk) {
          std::size_t t = blk * 4;
          const std::size_t end = std::min(a.tiles, t + 4);
#if PQUANT_LUT_PAIR_TILES
          if (pair_tiles) {
            for (; t + 2 <= end; t += 2)
              LutTilePair(a.index + t * tile_bytes, a.index + (t + 1) * tile_bytes, a.pairs,
                          a.tables, a.out + t * kLutTile, a.out + (t + 1) * kLutTile);
          }
#endif
          for (; t < end; ++t)
            LutTile(a.index + t * tile_bytes, a.pairs, a.tables, a.out + t * kLutTile);
          if (a.y != nullptr) LutEpilogue(a, blk * 4 * kLutTile, 4 * kLutTile);
        }
      },
      tbb::simple_partitioner());
}
#undef PQUANT_LUT_PAIR_TILES

// ---------------------------------------------------------------------------------------------
// INT8 GEMV: out[r] = sum_k w[r][k] * x[k]. Weights widened to int16, pairs multiplied and added
// into int32 (pmaddwd); |w * x| <= 16384 so two products fit, and K <= kMaxKInt8 keeps int32 exact.

#if HWY_TARGET == HWY_SCALAR
HWY_NOINLINE void Int8Gemv(const detail::Int8GemvArgs& a) {
  for (std::size_t r = 0; r < a.rows; ++r) {
    std::int32_t acc = 0;
    for (std::size_t k = 0; k < a.stride; ++k) acc += a.w[r * a.stride + k] * a.x16[k];
    a.out[r] = acc;
  }
}
#else
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
// Symmetric weights (no -128): |x| x sign(w, x) with pmaddubsw, 32 weights per op, then pmaddwd
// with ones into int32. Exact: |w| <= 127, |x| <= 128, pair sums <= 32512.
HWY_INLINE void Int8RowsSymmetric(const detail::Int8GemvArgs& a, std::size_t r0, std::size_t r1) {
  const hn::Full256<std::int32_t> d32;
  const __m256i ones = _mm256_set1_epi16(1);
  const std::size_t stride = a.stride;
  auto hsum = [&](__m256i v) HWY_ATTR {
    return hn::GetLane(hn::SumOfLanes(d32, hn::Vec256<std::int32_t>{v}));
  };
  auto step = [&](const std::int8_t* w, __m256i xa, __m256i xs, __m256i s) HWY_ATTR {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i p = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(wv, xs));
    return _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
  };
  std::size_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const std::int8_t* w0 = a.w + r * stride;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (std::size_t k = 0; k < stride; k += 32) {
      const __m256i xa = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.xabs + k));
      const __m256i xs = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.x8 + k));
      s0 = step(w0 + k, xa, xs, s0);
      s1 = step(w0 + stride + k, xa, xs, s1);
      s2 = step(w0 + 2 * stride + k, xa, xs, s2);
      s3 = step(w0 + 3 * stride + k, xa, xs, s3);
    }
    a.out[r] = hsum(s0);
    a.out[r + 1] = hsum(s1);
    a.out[r + 2] = hsum(s2);
    a.out[r + 3] = hsum(s3);
  }
  for (; r < r1; ++r) {
    __m256i s0 = _mm256_setzero_si256();
    for (std::size_t k = 0; k < stride; k += 32)
      s0 = step(a.w + r * stride + k,
                _mm256_load_si256(reinterpret_cast<const __m256i*>(a.xabs + k)),
                _mm256_load_si256(reinterpret_cast<const __m256i*>(a.x8 + k)), s0);
    a.out[r] = hsum(s0);
  }
}
#define PQUANT_INT8_SYMMETRIC 1
#else
#define PQUANT_INT8_SYMMETRIC 0
#endif

HWY_NOINLINE void Int8Gemv(const detail::Int8GemvArgs& a) {
#if PQUANT_INT8_SYMMETRIC
  if (a.symmetric && a.x8 != nullptr && a.xabs != nullptr) {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, a.rows, 32),
        [&](const tbb::blocked_range<std::size_t>& range)
            HWY_ATTR { Int8RowsSymmetric(a, range.begin(), range.end()); },
        tbb::simple_partitioner());
    return;
  }
#endif
#undef PQUANT_INT8_SYMMETRIC
  const hn::ScalableTag<std::int16_t> d16;
  const hn::Rebind<std::int8_t, decltype(d16)> d8;
  const hn::Repartition<std::int32_t, decltype(d16)> d32;
  const std::size_t N = hn::Lanes(d16);
  const std::size_t stride = a.stride;
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, a.rows, 32),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        std::size_t r = range.begin();
        for (; r + 4 <= range.end(); r += 4) {
          const std::int8_t* w0 = a.w + r * stride;
          auto s0 = hn::Zero(d32), s1 = hn::Zero(d32), s2 = hn::Zero(d32), s3 = hn::Zero(d32);
          auto t0 = hn::Zero(d32), t1 = hn::Zero(d32), t2 = hn::Zero(d32), t3 = hn::Zero(d32);
          for (std::size_t k = 0; k < stride; k += N) {
            const auto x = hn::Load(d16, a.x16 + k);
            s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + k)), x,
                                               s0, t0);
            s1 = hn::ReorderWidenMulAccumulate(
                d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + stride + k)), x, s1, t1);
            s2 = hn::ReorderWidenMulAccumulate(
                d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + 2 * stride + k)), x, s2, t2);
            s3 = hn::ReorderWidenMulAccumulate(
                d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + 3 * stride + k)), x, s3, t3);
          }
          a.out[r] = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s0, t0)));
          a.out[r + 1] = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s1, t1)));
          a.out[r + 2] = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s2, t2)));
          a.out[r + 3] = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s3, t3)));
        }
        for (; r < range.end(); ++r) {
          const std::int8_t* w0 = a.w + r * stride;
          auto s0 = hn::Zero(d32), t0 = hn::Zero(d32);
          for (std::size_t k = 0; k < stride; k += N) {
            s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + k)),
                                               hn::Load(d16, a.x16 + k), s0, t0);
          }
          a.out[r] = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s0, t0)));
        }
      },
      tbb::simple_partitioner());
}

#endif  // HWY_TARGET == HWY_SCALAR

// ---------------------------------------------------------------------------------------------
// FP32 GEMV: y[r] = sum_k w[r][k] * x[k]; four rows share each x load, FMA into per-row vectors.
// The summation order depends only on K and the target (never on threads).

HWY_NOINLINE void F32Gemv(const detail::F32GemvArgs& a) {
  const hn::ScalableTag<float> df;
  const std::size_t N = hn::Lanes(df);
  const std::size_t kv = a.cols / N * N;
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, a.rows, 16),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        std::size_t r = range.begin();
        for (; r + 4 <= range.end(); r += 4) {
          const float* w0 = a.w + r * a.stride;
          const float* w1 = w0 + a.stride;
          const float* w2 = w1 + a.stride;
          const float* w3 = w2 + a.stride;
          auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
          for (std::size_t k = 0; k < kv; k += N) {
            const auto x = hn::LoadU(df, a.x + k);
            s0 = hn::MulAdd(hn::LoadU(df, w0 + k), x, s0);
            s1 = hn::MulAdd(hn::LoadU(df, w1 + k), x, s1);
            s2 = hn::MulAdd(hn::LoadU(df, w2 + k), x, s2);
            s3 = hn::MulAdd(hn::LoadU(df, w3 + k), x, s3);
          }
          float y0 = hn::GetLane(hn::SumOfLanes(df, s0)), y1 = hn::GetLane(hn::SumOfLanes(df, s1));
          float y2 = hn::GetLane(hn::SumOfLanes(df, s2)), y3 = hn::GetLane(hn::SumOfLanes(df, s3));
          for (std::size_t k = kv; k < a.cols; ++k) {
            y0 += w0[k] * a.x[k];
            y1 += w1[k] * a.x[k];
            y2 += w2[k] * a.x[k];
            y3 += w3[k] * a.x[k];
          }
          a.y[r] = y0;
          a.y[r + 1] = y1;
          a.y[r + 2] = y2;
          a.y[r + 3] = y3;
        }
        for (; r < range.end(); ++r) {
          const float* w0 = a.w + r * a.stride;
          auto s0 = hn::Zero(df);
          for (std::size_t k = 0; k < kv; k += N)
            s0 = hn::MulAdd(hn::LoadU(df, w0 + k), hn::LoadU(df, a.x + k), s0);
          float y0 = hn::GetLane(hn::SumOfLanes(df, s0));
          for (std::size_t k = kv; k < a.cols; ++k) y0 += w0[k] * a.x[k];
          a.y[r] = y0;
        }
      },
      tbb::simple_partitioner());
}

// FP32 GEMM (training and the integer GEMMs of the quantized forward): its own file.
#include "pquant/kernels/gemm_f32-inl.h"

}  // namespace pquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // PQUANT_KERNELS_INL_H_
