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
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
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
// LUT GEMV: out[r] = sum_g (16 TH_g[index(r, g)] + TL_g[index(r, g)]) - 512 * groups (W1A8, W2A8,
// codebook buckets; TH carries a bias of 32, and the bounds that make every step exact are in
// backend.hpp, LutGemvArgs).
//
// One tile = 32 rows; one byte-vector load holds the 4-bit indices of two groups for 32 rows (16 on
// 128-bit targets). A step covers two loads = four groups: TableLookupBytes gives TL and TH of each
// group for every row, four of each are summed in 8 bits (both unsigned, <= 240), the two sums are
// interleaved byte-wise and one unsigned x signed pairwise multiply-add (pmaddubsw with constant
// (1, 16) multipliers) per half gives TL + 16 TH per row in 16 bits. So a group costs 2 byte
// shuffles per 32 rows and the widening (2 interleaves, 2 multiply-adds) is shared by four groups.
// 256-bit vectors are used on AVX-512 targets too (the layout's tile is 32 rows).

// How far ahead the LUT loop prefetches its index stream, per tile, in pairs of groups (32 bytes
// each): 2 KiB, about 100 ns of work ahead, which covers a DRAM access (the hardware prefetchers
// alone left DRAM-resident weights at about half the read bandwidth).
inline constexpr std::size_t kLutPrefetchPairs = 64;

// Prefetch of the index stream into L2 (prefetcht1 on x86): an L1 prefetch holds one of the few
// L1 miss buffers until its line arrives from DRAM, and with the loop's rate that capped the
// lines in flight below what the read bandwidth needs; the L2 has more. The loop's own loads
// then hit L2, whose latency the out-of-order core hides.
HWY_INLINE void PrefetchL2(const void* p) {
#if HWY_ARCH_X86
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#else
  hwy::Prefetch(p);
#endif
}

// Tiles per task of the parallel loop (and per K-blocked pass).
inline constexpr std::size_t kLutTilesPerTask = 4;

#if HWY_TARGET == HWY_SCALAR
// One-lane target (no byte shuffles): the same sums, one row at a time (vector order = row order).
HWY_INLINE void LutBlock(const std::uint8_t* HWY_RESTRICT index, std::size_t ntiles,
                         std::size_t pairs, std::size_t p0, std::size_t p1,
                         const std::uint8_t* HWY_RESTRICT tables, std::uint32_t* HWY_RESTRICT acc) {
  for (std::size_t t = 0; t < ntiles; ++t)
    for (std::size_t row = 0; row < kLutTile; ++row) {
      std::uint32_t sum = 0;
      for (std::size_t p = p0; p < p1; ++p) {
        const unsigned v = index[(t * pairs + p) * kLutTile + row];
        const std::uint8_t* tp = tables + p * 64;
        for (unsigned half = 0; half < 2; ++half) {
          const unsigned i = half ? (v >> 4) : (v & 15u);
          const std::uint8_t* tg = tp + 32 * half;
          sum += static_cast<std::uint32_t>(16 * tg[16 + i] + tg[i]);
        }
      }
      acc[t * kLutTile + row] += sum;
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

// Adds the K-range [p0, p1) of up to kLutTilesPerTask tiles into acc (uint32, row order).
HWY_INLINE void LutBlock(const std::uint8_t* HWY_RESTRICT index, std::size_t ntiles,
                         std::size_t pairs, std::size_t p0, std::size_t p1,
                         const std::uint8_t* HWY_RESTRICT tables, std::uint32_t* HWY_RESTRICT acc) {
  const hn::CappedTag<std::uint8_t, 32> du8;
  const hn::Repartition<std::int8_t, decltype(du8)> di8;
  const hn::Repartition<std::uint16_t, decltype(du8)> du16;
  const hn::Repartition<std::uint32_t, decltype(du8)> du32;
  const hn::Half<decltype(du16)> du16h;
  const std::size_t N = hn::Lanes(du8);  // 16 or 32 rows per chunk
  const std::size_t tile_bytes = pairs * kLutTile;
  const auto nibble = hn::Set(du8, 0x0F);
  const auto weights = hn::BitCast(di8, hn::Set(du16, 0x1001));  // (1, 16) multipliers
  // Rows of the four uint32 quarters: the interleaves work per 16-row block, so the lower
  // interleave holds rows 0-7 of each block and the upper one rows 8-15.
  const std::size_t at1 = N == 32 ? 16 : 4, at2 = 8, at3 = N == 32 ? 24 : 12;
  for (std::size_t t = 0; t < ntiles; ++t) {
    for (std::size_t chunk = 0; chunk < kLutTile; chunk += N) {
      const std::uint8_t* idx = index + t * tile_bytes + chunk;
      auto sum0 = hn::Zero(du32), sum1 = hn::Zero(du32), sum2 = hn::Zero(du32),
           sum3 = hn::Zero(du32);
      for (std::size_t b0 = p0; b0 < p1; b0 += detail::kLutGroupsPerBlock / 2) {
        const std::size_t b1 = std::min(p1, b0 + detail::kLutGroupsPerBlock / 2);
        // Unsigned 16-bit sums: each step adds TL + 16 TH <= 240 + 16 * 240 = 4080, and a block
        // has at most 16 steps (65280 <= 65535).
        auto lower = hn::Zero(du16);
        auto upper = hn::Zero(du16);
        for (std::size_t p = b0; p < b1; p += 2) {
          const auto v0 = hn::Load(du8, idx + p * kLutTile);
          const auto v1 = hn::Load(du8, idx + (p + 1) * kLutTile);
          if (p + kLutPrefetchPairs < pairs)
            PrefetchL2(idx + (p + kLutPrefetchPairs) * kLutTile);
#if HWY_TARGET == HWY_AVX3_DL
          // vpermb (VBMI) reads index bits 0-4 of each byte and ignores bits 5-7; the broadcast
          // table holds its 16 entries twice, so bit 4 does not matter either and the indices need
          // no mask: v (low nibble in bits 0-3) and v >> 4 (16-bit shift, high nibble in 0-3).
          const auto i0 = v0;
          const auto i1 = hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v0)));
          const auto i2 = v1;
          const auto i3 = hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v1)));
          auto lookup = [](decltype(v0) table, decltype(v0) i) HWY_ATTR {
            // The zero-masking form with every lane kept: GCC 12's plain form warns
            // (maybe-uninitialized) on its undefined pass-through operand.
            return decltype(v0){_mm256_maskz_permutexvar_epi8(~__mmask32{0}, i.raw, table.raw)};
          };
          (void)nibble;
#else
          const auto i0 = hn::And(v0, nibble);
          const auto i1 =
              hn::And(hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v0))), nibble);
          const auto i2 = hn::And(v1, nibble);
          const auto i3 =
              hn::And(hn::BitCast(du8, hn::ShiftRight<4>(hn::BitCast(du16, v1))), nibble);
          auto lookup = [](decltype(v0) table, decltype(v0) i)
                            HWY_ATTR { return hn::TableLookupBytes(table, i); };
#endif
          const std::uint8_t* tab = tables + p * 64;
          // Four TL (<= 60) and four TH (<= 60, biased) sum to <= 240 in uint8.
          auto lo = lookup(hn::LoadDup128(du8, tab), i0);
          auto hi = lookup(hn::LoadDup128(du8, tab + 16), i0);
          lo = hn::Add(lo, lookup(hn::LoadDup128(du8, tab + 32), i1));
          hi = hn::Add(hi, lookup(hn::LoadDup128(du8, tab + 48), i1));
          lo = hn::Add(lo, lookup(hn::LoadDup128(du8, tab + 64), i2));
          hi = hn::Add(hi, lookup(hn::LoadDup128(du8, tab + 80), i2));
          lo = hn::Add(lo, lookup(hn::LoadDup128(du8, tab + 96), i3));
          hi = hn::Add(hi, lookup(hn::LoadDup128(du8, tab + 112), i3));
          lower = hn::Add(lower,
                          hn::BitCast(du16, MulPairs(hn::InterleaveLower(du8, lo, hi), weights)));
          upper = hn::Add(upper,
                          hn::BitCast(du16, MulPairs(hn::InterleaveUpper(du8, lo, hi), weights)));
        }
        sum0 = hn::Add(sum0, hn::PromoteTo(du32, hn::LowerHalf(du16h, lower)));
        sum1 = hn::Add(sum1, hn::PromoteTo(du32, hn::UpperHalf(du16h, lower)));
        sum2 = hn::Add(sum2, hn::PromoteTo(du32, hn::LowerHalf(du16h, upper)));
        sum3 = hn::Add(sum3, hn::PromoteTo(du32, hn::UpperHalf(du16h, upper)));
      }
      std::uint32_t* a = acc + t * kLutTile + chunk;
      hn::StoreU(hn::Add(hn::LoadU(du32, a), sum0), du32, a);
      hn::StoreU(hn::Add(hn::LoadU(du32, a + at1), sum1), du32, a + at1);
      hn::StoreU(hn::Add(hn::LoadU(du32, a + at2), sum2), du32, a + at2);
      hn::StoreU(hn::Add(hn::LoadU(du32, a + at3), sum3), du32, a + at3);
    }
  }
}
#endif  // HWY_TARGET == HWY_SCALAR

#if HWY_TARGET == HWY_AVX3_DL
// Wide tables (AVX3_DL): 64-entry byte lookups (vpermb on 512-bit vectors reads index bits 0-5).
// For formats whose codes never straddle bit 6 of an index byte (2 or 4 weights per nibble), a
// byte of pair p splits into bits 0-5 (group 2p and the low half of group 2p + 1) and bits 6-7
// (the high half of group 2p + 1). Per step of two pairs (p, p + 1), `wide` holds at (p / 2) * 288:
// TL64 and TH64 of pair p, TL64 and TH64 of pair p + 1 (64 bytes each; entry n = the sums of
// bits 0-5 = n, TL <= 60 + 30 = 90 and TH biased by 48 in [0, 90]), then TLr and THr (16 bytes
// each; entry m = the sums of bits 6-7 of pair p = m & 3 and of pair p + 1 = m >> 2, TL <= 60 and
// TH biased by 32 in [0, 60]). A step's three TL lookups add to <= 240 and its TH lookups too,
// with a bias of 48 + 48 + 32 = 128 = 4 * 32, the same as four groups of the 16-entry tables, so
// the widening, the 16-bit block bound and the final correction are the same.
// GCC 12 warns (maybe-uninitialized) on the undefined pass-through operand inside many AVX-512
// intrinsics once inlined; Highway's own x86 headers silence the same false positive.
HWY_DIAGNOSTICS(push)
#if HWY_COMPILER_GCC_ACTUAL
HWY_DIAGNOSTICS_OFF(disable : 4701, ignored "-Wmaybe-uninitialized")
#endif

HWY_INLINE __m512i Vpermb512(__m512i index, __m512i table) {
  return _mm512_maskz_permutexvar_epi8(~__mmask64{0}, index, table);
}
HWY_INLINE __m512i Bcast128(__m128i v) {
  return _mm512_maskz_broadcast_i32x4(0xFFFF, v);
}

HWY_INLINE void LutWideTables(const std::uint8_t* HWY_RESTRICT tables, std::size_t pairs,
                              std::uint8_t* HWY_RESTRICT wide) {
  const __m512i lo_index = _mm512_set_epi8(
      15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
      3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9,
      8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i hi_index = _mm512_set_epi8(
      3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
      1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  // m -> nibble (m & 3) << 2 and (m >> 2) << 2: the codes of bits 6-7 alone in their group.
  const __m128i rest_a = _mm_set_epi8(12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0);
  const __m128i rest_b = _mm_set_epi8(12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0);
  const __m512i sixteen = _mm512_set1_epi8(16);
  const __m128i thirty_two = _mm_set1_epi8(32);
  for (std::size_t p = 0; p < pairs; p += 2) {
    std::uint8_t* out = wide + (p / 2) * 288;
    for (std::size_t q = 0; q < 2; ++q) {
      const std::uint8_t* g0 = tables + (p + q) * 64;  // group 2(p + q), then 2(p + q) + 1
      const auto bcast = [](const std::uint8_t* t) HWY_ATTR {
        return Bcast128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
      };
      const __m512i tl = _mm512_add_epi8(Vpermb512(lo_index, bcast(g0)),
                                         Vpermb512(hi_index, bcast(g0 + 32)));
      const __m512i th = _mm512_sub_epi8(
          _mm512_add_epi8(Vpermb512(lo_index, bcast(g0 + 16)),
                          Vpermb512(hi_index, bcast(g0 + 48))),
          sixteen);
      _mm512_storeu_si512(out + q * 128, tl);
      _mm512_storeu_si512(out + q * 128 + 64, th);
    }
    const auto load = [&](std::size_t off) HWY_ATTR {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(tables + p * 64 + off));
    };
    // Group 2p + 1 at 32, group 2p + 3 at 96.
    const __m128i tlr =
        _mm_add_epi8(_mm_shuffle_epi8(load(32), rest_a), _mm_shuffle_epi8(load(96), rest_b));
    const __m128i thr = _mm_sub_epi8(
        _mm_add_epi8(_mm_shuffle_epi8(load(48), rest_a), _mm_shuffle_epi8(load(112), rest_b)),
        thirty_two);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 256), tlr);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 272), thr);
  }
}

// LutBlock on the wide tables for a pair of tiles (64 rows in one 512-bit vector: tile t in the
// lower half, tile t + 1 in the upper). Per step of two pairs (1024 weights): 2 index vectors
// (4 loads), 2 shifts and a ternary-logic select for the bits 6-7 index, 6 vpermb, 4 byte adds,
// 2 interleaves, 2 vpmaddubsw and 2 word adds.
HWY_INLINE void LutBlockWide(const std::uint8_t* HWY_RESTRICT index, std::size_t pairs,
                             std::size_t p0, std::size_t p1, const std::uint8_t* HWY_RESTRICT wide,
                             std::uint32_t* HWY_RESTRICT acc) {
  const std::size_t tile_bytes = pairs * kLutTile;
  const std::uint8_t* idx0 = index;
  const std::uint8_t* idx1 = index + tile_bytes;
  const __m512i weights = _mm512_set1_epi16(0x1001);  // (1, 16) multipliers
  const __m512i low2 = _mm512_set1_epi8(3);
  __m512i sum0 = _mm512_setzero_si512(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
  const auto load2 = [&](std::size_t p) HWY_ATTR {
    return _mm512_maskz_inserti64x4(
        0xFF, _mm512_zextsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(idx0 + p * kLutTile))),
        _mm256_load_si256(reinterpret_cast<const __m256i*>(idx1 + p * kLutTile)), 1);
  };
  for (std::size_t b0 = p0; b0 < p1; b0 += detail::kLutGroupsPerBlock / 2) {
    const std::size_t b1 = std::min(p1, b0 + detail::kLutGroupsPerBlock / 2);
    __m512i lower = _mm512_setzero_si512(), upper = lower;
    for (std::size_t p = b0; p < b1; p += 2) {
      const __m512i v0 = load2(p), v1 = load2(p + 1);
      if (p + kLutPrefetchPairs < pairs) {
        PrefetchL2(idx0 + (p + kLutPrefetchPairs) * kLutTile);
        PrefetchL2(idx1 + (p + kLutPrefetchPairs) * kLutTile);
      }
      const std::uint8_t* w = wide + (p / 2) * 288;
      const auto table = [&](std::size_t off) HWY_ATTR {
        return _mm512_loadu_si512(w + off);
      };
      // Bits 0-1 from v0 >> 6 (its bits 6-7), bits 2-3 from v1 >> 4 (its bits 6-7); bits 4-5 are
      // left over from the shift and select copies of the broadcast 16-entry table.
      const __m512i rest = _mm512_ternarylogic_epi32(low2, _mm512_srli_epi16(v0, 6),
                                                     _mm512_srli_epi16(v1, 4), 0xCA);
      const __m512i tlr = Bcast128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 256)));
      const __m512i thr = Bcast128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 272)));
      __m512i lo = _mm512_add_epi8(Vpermb512(v0, table(0)),
                                   Vpermb512(v1, table(128)));
      __m512i hi = _mm512_add_epi8(Vpermb512(v0, table(64)),
                                   Vpermb512(v1, table(192)));
      lo = _mm512_add_epi8(lo, Vpermb512(rest, tlr));
      hi = _mm512_add_epi8(hi, Vpermb512(rest, thr));
      lower = _mm512_add_epi16(lower, _mm512_maddubs_epi16(_mm512_unpacklo_epi8(lo, hi), weights));
      upper = _mm512_add_epi16(upper, _mm512_maddubs_epi16(_mm512_unpackhi_epi8(lo, hi), weights));
    }
    sum0 = _mm512_add_epi32(sum0, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(lower)));
    sum1 = _mm512_add_epi32(sum1, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(lower, 1)));
    sum2 = _mm512_add_epi32(sum2, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(upper)));
    sum3 = _mm512_add_epi32(sum3, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(upper, 1)));
  }
  // Interleaves work per 128-bit lane (16 rows): lower holds rows 0-7 of each lane, upper rows
  // 8-15. sum0: tile t rows 0-7 and 16-23; sum2: its rows 8-15 and 24-31; sum1 and sum3: tile t + 1.
  const auto add8 = [&](std::uint32_t* a, __m256i v) HWY_ATTR {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a),
                        _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)), v));
  };
  const __m512i quarter[4] = {sum0, sum2, sum1, sum3};
  for (std::size_t i = 0; i < 4; ++i) {
    std::uint32_t* a = acc + (i / 2) * kLutTile + (i % 2) * 8;
    add8(a, _mm512_castsi512_si256(quarter[i]));
    add8(a + 16, _mm512_extracti64x4_epi64(quarter[i], 1));
  }
}
HWY_DIAGNOSTICS(pop)
#endif

// The first visit's index bytes of `ntiles` tiles, requested all at once so that their cache
// misses overlap (the step loop prefetches only each tile's next visit).
HWY_INLINE void PrefetchFirstVisit(const std::uint8_t* index, std::size_t ntiles,
                                   std::size_t pairs) {
  for (std::size_t t = 0; t < ntiles; ++t)
    for (std::size_t p = 0; p < std::min(pairs, kLutPrefetchPairs); p += 2)
      PrefetchL2(index + (t * pairs + p) * kLutTile);
}

// The sums of up to kLutTilesPerTask tiles over the whole K for `tokens` activation vectors (their
// tables table_stride bytes apart, their sums out_stride apart): K-visit outer, so a visit's tables
// (kLutGroupsPerVisit * 32 bytes = 4 KiB per token) stay in L1 while the tiles' indices pass over
// them (a row's tables, 32 bytes per group, outgrow L1 at K >= 4096), and each visit's indices
// (8 KiB for 4 tiles) stay in L1 across the tokens. `next`, when not null, holds the `next_tiles`
// tiles the caller will probably run next: their first visit is prefetched during the last visit.
HWY_INLINE void LutTiles(const std::uint8_t* HWY_RESTRICT index, std::size_t ntiles,
                         std::size_t pairs, const std::uint8_t* tables, std::size_t table_stride,
                         std::size_t tokens, std::int32_t* out, std::size_t out_stride,
                         const std::uint8_t* next = nullptr, std::size_t next_tiles = 0,
                         const std::uint8_t* wide = nullptr) {
  constexpr std::size_t kMaxTokens = 8;
  std::uint32_t acc[kMaxTokens][kLutTilesPerTask * kLutTile];
  constexpr std::size_t kPairsPerVisit = detail::kLutGroupsPerVisit / 2;
  PrefetchFirstVisit(index, ntiles, pairs);
  for (std::size_t m0 = 0; m0 < tokens; m0 += kMaxTokens) {
    const std::size_t mc = std::min(kMaxTokens, tokens - m0);
    for (std::size_t m = 0; m < mc; ++m)
      std::fill(acc[m], acc[m] + ntiles * kLutTile, std::uint32_t{0});
    for (std::size_t p0 = 0; p0 < pairs; p0 += kPairsPerVisit) {
      const std::size_t p1 = std::min(pairs, p0 + kPairsPerVisit);
      if (next != nullptr && p1 == pairs && m0 + mc == tokens)
        PrefetchFirstVisit(next, next_tiles, pairs);
#if HWY_TARGET == HWY_AVX3_DL
      if (wide != nullptr) {  // pairs of tiles on the wide tables (token m's at m * wide_stride)
        const std::size_t wide_stride = pairs * detail::kLutWideBytesPerPair;
        for (std::size_t m = 0; m < mc; ++m) {
          const std::uint8_t* wm = wide + (m0 + m) * wide_stride;
          std::size_t t = 0;
          for (; t + 2 <= ntiles; t += 2)
            LutBlockWide(index + t * pairs * kLutTile, pairs, p0, p1, wm, acc[m] + t * kLutTile);
          if (t < ntiles)
            LutBlock(index + t * pairs * kLutTile, 1, pairs, p0, p1,
                     tables + (m0 + m) * table_stride, acc[m] + t * kLutTile);
        }
        continue;
      }
#else
      (void)wide;
#endif
      for (std::size_t m = 0; m < mc; ++m)
        LutBlock(index, ntiles, pairs, p0, p1, tables + (m0 + m) * table_stride, acc[m]);
    }
    // Every group's TH bias of 32 added 16 * 32 (modulo 2^32, like the sums).
    const auto bias = static_cast<std::uint32_t>(512 * 2 * pairs);
    for (std::size_t m = 0; m < mc; ++m)
      for (std::size_t q = 0; q < ntiles * kLutTile; ++q)
        out[(m0 + m) * out_stride + q] = static_cast<std::int32_t>(acc[m][q] - bias);
  }
}

// Token m's epilogue from a batched one.
inline detail::RowEpilogueArgs TokenEpilogue(const detail::BatchEpilogueArgs& ep, std::size_t m,
                                             std::int32_t mul, std::int64_t offset) {
  detail::RowEpilogueArgs a;
  a.y = ep.y + m * ep.ldy;
  a.rows = ep.rows;
  a.mul = mul;
  a.offset = offset;
  a.row_scale = ep.row_scale;
  a.row_scale_size = ep.row_scale_size;
  a.token_scale = ep.token_scale[ep.token_scale_size == 1 ? 0 : m];
  a.residual = ep.residual != nullptr ? ep.residual + m * ep.ldr : nullptr;
  return a;
}

// The fused epilogue of rows [first, first + count) (RowEpilogueArgs): the wrap to int32 in
// uint32 lanes, then epilogue.hpp's formula in double lanes (the product of two floats is exact in
// double, so a fused multiply-add rounds the same as the scalar formula).
inline void RowEpilogue(const detail::RowEpilogueArgs& a, std::size_t first, std::size_t count,
                        const std::int32_t* sums) {
  const std::size_t end = std::min(a.rows, first + count);
  std::size_t r = first;
#if HWY_HAVE_FLOAT64
  if (a.row_scale_size == a.rows || a.row_scale_size <= 1) {
    const hn::ScalableTag<double> dd;
    const hn::Rebind<float, decltype(dd)> df;
    const hn::Rebind<std::uint32_t, decltype(dd)> du;
    const hn::Rebind<std::int32_t, decltype(dd)> di;
    const std::size_t L = hn::Lanes(dd);
    const auto mul = hn::Set(du, static_cast<std::uint32_t>(a.mul));
    const auto offset =
        hn::Set(du, static_cast<std::uint32_t>(static_cast<std::uint64_t>(a.offset)));
    const float fixed_scale = a.row_scale_size == 1 ? a.row_scale[0] : 1.0f;
    const auto token = hn::Set(df, a.token_scale);
    for (; r + L <= end; r += L) {
      const auto sum = hn::Add(
          hn::Mul(hn::LoadU(du, reinterpret_cast<const std::uint32_t*>(sums + (r - first))), mul),
          offset);
      const auto acc = hn::PromoteTo(dd, hn::ConvertTo(df, hn::BitCast(di, sum)));
      const auto rs =
          a.row_scale_size == a.rows ? hn::LoadU(df, a.row_scale + r) : hn::Set(df, fixed_scale);
      const auto scale = hn::PromoteTo(dd, hn::Mul(rs, token));
      const auto res = a.residual ? hn::PromoteTo(dd, hn::LoadU(df, a.residual + r)) : hn::Zero(dd);
      hn::StoreU(hn::DemoteTo(df, hn::MulAdd(acc, scale, res)), df, a.y + r);
    }
  }
#endif
  for (; r < end; ++r) {
    const std::uint64_t v =
        static_cast<std::uint64_t>(static_cast<std::int64_t>(a.mul) * sums[r - first] + a.offset);
    const auto acc = static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
    const float rs = a.row_scale_size == 0 ? 1.0f : a.row_scale[a.row_scale_size == 1 ? 0 : r];
    a.y[r] = detail::epilogue_value(acc, rs, a.token_scale, a.residual ? a.residual[r] : 0.0f);
  }
}

// Tables of one group: its activations in the low bytes of `word` (memory order).
template <std::size_t G>
HWY_INLINE std::uint32_t GroupWord(const detail::LutTablesArgs& a, std::size_t g) {
  std::uint8_t bytes[4] = {};
  const std::size_t first = g * G;
  if (first + G <= a.k) {
    std::memcpy(bytes, a.x + first, G);
  } else {
    for (std::size_t i = 0; first + i < a.k && i < G; ++i)
      bytes[i] = static_cast<std::uint8_t>(a.x[first + i]);
  }
  std::uint32_t word;
  std::memcpy(&word, bytes, 4);
  return word;
}

template <std::size_t G>
HWY_INLINE void LutTablesOf(const detail::LutTablesArgs& a) {
#if HWY_TARGET == HWY_SCALAR
  for (std::size_t g = 0; g < a.groups; ++g) {
    const std::uint32_t word = GroupWord<G>(a, g);
    std::uint8_t v[4];
    std::memcpy(v, &word, 4);
    for (unsigned idx = 0; idx < 16; ++idx) {
      int tl = 0, th = 0;
      for (unsigned t = 0; t < 4; ++t) {
        const unsigned sel = a.select[16 * t + idx];
        if (sel >= 0x80) continue;
        const int x = static_cast<std::int8_t>(v[sel & 3]);
        tl += x & 15;
        th += (x - (x & 15)) / 16;
      }
      a.tables[32 * g + idx] = static_cast<std::uint8_t>(tl);
      a.tables[32 * g + 16 + idx] = static_cast<std::uint8_t>(th + 32);
    }
  }
#else
  const hn::CappedTag<std::uint8_t, 16> d;
  const hn::Repartition<std::uint16_t, decltype(d)> d16;
  const hn::Repartition<std::uint32_t, decltype(d)> d32;
  const auto nibble = hn::Set(d, 0x0F);
  const auto eight = hn::Set(d, 8);
  const auto bias = hn::Set(d, 32);  // TH is stored + 32 (unsigned, see LutGemvArgs)
  const auto s0 = hn::LoadU(d, a.select), s1 = hn::LoadU(d, a.select + 16);
  const auto s2 = hn::LoadU(d, a.select + 32), s3 = hn::LoadU(d, a.select + 48);
  for (std::size_t g = 0; g < a.groups; ++g) {
    const auto v = hn::BitCast(d, hn::Set(d32, GroupWord<G>(a, g)));
    const auto xl = hn::And(v, nibble);
    // high(v) = ((v >> 4) xor 8) - 8 per byte: the arithmetic shift of a byte.
    const auto xh = hn::Sub(
        hn::Xor(hn::And(hn::BitCast(d, hn::ShiftRight<4>(hn::BitCast(d16, v))), nibble), eight),
        eight);
    const auto tl =
        hn::Add(hn::Add(hn::TableLookupBytesOr0(xl, s0), hn::TableLookupBytesOr0(xl, s1)),
                hn::Add(hn::TableLookupBytesOr0(xl, s2), hn::TableLookupBytesOr0(xl, s3)));
    const auto th =
        hn::Add(hn::Add(hn::Add(hn::TableLookupBytesOr0(xh, s0), hn::TableLookupBytesOr0(xh, s1)),
                        hn::Add(hn::TableLookupBytesOr0(xh, s2), hn::TableLookupBytesOr0(xh, s3))),
                bias);
    hn::StoreU(tl, d, a.tables + 32 * g);
    hn::StoreU(th, d, a.tables + 32 * g + 16);
  }
#endif
}

// Tables for one activation vector (LutTablesArgs); one group per step in 128-bit vectors: the
// group's activations are broadcast, split into nibbles, and each selector term is one byte lookup
// (selector >= 0x80 gives 0).
HWY_NOINLINE void LutTables(const detail::LutTablesArgs& a) {
  if (a.group == 4)
    LutTablesOf<4>(a);
  else if (a.group == 2)
    LutTablesOf<2>(a);
  else
    LutTablesOf<1>(a);
  if (a.sum != nullptr) {
    std::int64_t s = 0;
    std::size_t k = 0;
#if HWY_TARGET != HWY_SCALAR
    // sum(x) = sum(x xor 0x80 as uint8) - 128 k; eight bytes per uint64 lane.
    const hn::ScalableTag<std::uint8_t> d;
    const hn::Repartition<std::uint64_t, decltype(d)> d64;
    const std::size_t N = hn::Lanes(d);
    const auto bias = hn::Set(d, 0x80);
    auto acc = hn::Zero(d64);
    const auto* x = reinterpret_cast<const std::uint8_t*>(a.x);
    for (; k + N <= a.k; k += N)
      acc = hn::Add(acc, hn::SumsOf8(hn::Xor(hn::LoadU(d, x + k), bias)));
    s = static_cast<std::int64_t>(hn::GetLane(hn::SumOfLanes(d64, acc))) -
        128 * static_cast<std::int64_t>(k);
#endif
    for (; k < a.k; ++k) s += a.x[k];
    *a.sum = s;
  }
}

HWY_NOINLINE void LutGemv(const detail::LutGemvArgs& a) {
  const std::size_t tile_bytes = a.pairs * kLutTile;
  const std::uint8_t* wide = nullptr;
#if HWY_TARGET == HWY_AVX3_DL
  if (a.wide != nullptr && (a.group == 2 || a.group == 4) && a.tiles >= 2) {
    LutWideTables(a.tables, a.pairs, a.wide);
    wide = a.wide;
  }
#endif
  // Small row tiles (kLutTilesPerTask x 32 rows) scheduled dynamically: the two cores of a VM are
  // not always equal. Each tile's rows are computed by one task, so results do not depend on the
  // threads.
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, (a.tiles + kLutTilesPerTask - 1) / kLutTilesPerTask, 1),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        for (std::size_t blk = range.begin(); blk != range.end(); ++blk) {
          const std::size_t t = blk * kLutTilesPerTask;
          const std::size_t n = std::min(a.tiles - t, kLutTilesPerTask);
          // Tasks run mostly in order on each thread: prefetch the following task's start.
          const std::size_t tn = t + n;
          const std::size_t nn = std::min(a.tiles - tn, kLutTilesPerTask);
          LutTiles(a.index + t * tile_bytes, n, a.pairs, a.tables, 0, 1, a.out + t * kLutTile, 0,
                   nn != 0 ? a.index + tn * tile_bytes : nullptr, nn, wide);
          if (a.ep.y != nullptr) RowEpilogue(a.ep, t * kLutTile, n * kLutTile, a.out + t * kLutTile);
        }
      },
      tbb::simple_partitioner());
}

// LUT GEMM (LutGemmArgs): the GEMV's tile tasks, each running every token over its tiles (8 tokens
// at a time, K-visit outer), so a tile's indices are read from memory once per call instead of once
// per token; each token's sums go through the epilogue straight from the task's buffer.
HWY_NOINLINE void LutGemm(const detail::LutGemmArgs& g) {
  const std::size_t tile_bytes = g.pairs * kLutTile;
  constexpr std::size_t kTokens = 8;
  const std::uint8_t* wide = nullptr;
#if HWY_TARGET == HWY_AVX3_DL
  if (g.wide != nullptr && (g.group == 2 || g.group == 4) && g.tiles >= 2) {
    for (std::size_t i = 0; i < g.m; ++i)
      LutWideTables(g.tables + i * g.table_stride, g.pairs,
                    g.wide + i * g.pairs * detail::kLutWideBytesPerPair);
    wide = g.wide;
  }
#endif
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, (g.tiles + kLutTilesPerTask - 1) / kLutTilesPerTask, 1),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        HWY_ALIGN std::int32_t sums[kTokens * kLutTilesPerTask * kLutTile];
        constexpr std::size_t kStride = kLutTilesPerTask * kLutTile;
        for (std::size_t blk = range.begin(); blk != range.end(); ++blk) {
          const std::size_t t = blk * kLutTilesPerTask;
          const std::size_t n = std::min(g.tiles - t, kLutTilesPerTask);
          for (std::size_t m0 = 0; m0 < g.m; m0 += kTokens) {
            const std::size_t mc = std::min(kTokens, g.m - m0);
            LutTiles(g.index + t * tile_bytes, n, g.pairs, g.tables + m0 * g.table_stride,
                     g.table_stride, mc, sums, kStride, nullptr, 0,
                     wide != nullptr ? wide + m0 * g.pairs * detail::kLutWideBytesPerPair
                                     : nullptr);
            for (std::size_t i = 0; i < mc; ++i) {
              const std::size_t m = m0 + i;
              RowEpilogue(TokenEpilogue(g.ep, m, g.mul, g.offset[m]), t * kLutTile, n * kLutTile,
                          sums + i * kStride);
            }
          }
        }
      },
      tbb::simple_partitioner());
}

// ---------------------------------------------------------------------------------------------
// Token-major LUT GEMM (TokenLutGemmArgs): per chunk of up to 32 tokens and per block of 16 weight
// bytes of a row (pairs), one table of 16 entries per 4-bit group (two per pair), entry n = the
// int16 dot products of the weights n stands for with the group's activations of the 32 tokens
// (64 bytes, one 512-bit vector). A row then costs two table reads and two vector adds per weight
// byte for all 32 tokens: the weight nibbles are the table indices, so each weight load serves
// every token, and a block's tables (32 KiB) stay in L1 while every row passes over them. Bounds:
// |entry| <= 4 * 128 = 512 (4 sign weights, or 2 ternary codes whose weight c - 1 is at most 2 for
// the invalid code 3), 32 entries <= 16384 in int16, then widened into the int32 sums.

inline constexpr std::size_t kTokenLutEntries = 16;

// The activations of pairs [p0, p0 + np) transposed: xt[j * 32 + i] = x of token m0 + i at column
// p0 * per + j (0 for tokens past mc and columns past k).
HWY_INLINE void TokenLutTranspose(const detail::TokenLutGemmArgs& a, std::size_t m0, std::size_t mc,
                                  std::size_t p0, std::size_t np, std::size_t per) {
  constexpr std::size_t T = detail::kTokenLutTokens;
  std::fill(a.xt, a.xt + np * per * T, std::int16_t{0});
  const std::size_t k0 = p0 * per, k1 = std::min(a.k, (p0 + np) * per);
  for (std::size_t i = 0; i < mc; ++i) {
    const std::int8_t* x = a.x + (m0 + i) * a.ldx;
    for (std::size_t k = k0; k < k1; ++k) a.xt[(k - k0) * T + i] = x[k];
  }
}

// The table of one 4-bit group: entry n (T int16) from the group's transposed activations v.
// Sign nibbles (4 weights): entry 0 = -sum v_i, entry n = entry (n without its lowest set bit i)
// + 2 v_i. Ternary nibbles (2 codes): entry 0 = -sum v_i (both codes 0), entry n = entry (n - 1 at
// its lowest non-zero 2-bit digit j) + v_j. Every entry is an exact sum of at most 4 terms of
// magnitude <= 128 (sign) or 2 terms of magnitude <= 256 (ternary, code 3 counting 2 v_j).
HWY_INLINE void TokenLutTable(const std::int16_t* HWY_RESTRICT v, unsigned bits,
                              std::int16_t* HWY_RESTRICT table) {
  constexpr std::size_t T = detail::kTokenLutTokens;
  const std::size_t per = 4 / bits;
#if HWY_TARGET == HWY_SCALAR
  for (std::size_t t = 0; t < T; ++t) {
    int base = 0;
    for (std::size_t i = 0; i < per; ++i) base -= v[i * T + t];
    table[t] = static_cast<std::int16_t>(base);
  }
  for (unsigned n = 1; n < kTokenLutEntries; ++n) {
    const unsigned j = static_cast<unsigned>(std::countr_zero(n)) / bits;
    const unsigned prev = bits == 1 ? (n & (n - 1)) : n - (1u << (2 * j));
    const int mul = bits == 1 ? 2 : 1;
    for (std::size_t t = 0; t < T; ++t)
      table[n * T + t] = static_cast<std::int16_t>(table[prev * T + t] + mul * v[j * T + t]);
  }
#else
  const hn::CappedTag<std::int16_t, T> d;
  const std::size_t L = hn::Lanes(d);
  for (std::size_t o = 0; o < T; o += L) {
    auto base = hn::Zero(d);
    for (std::size_t i = 0; i < per; ++i) base = hn::Sub(base, hn::Load(d, v + i * T + o));
    hn::Store(base, d, table + o);
  }
  for (unsigned n = 1; n < kTokenLutEntries; ++n) {
    const unsigned j = static_cast<unsigned>(std::countr_zero(n)) / bits;
    const unsigned prev = bits == 1 ? (n & (n - 1)) : n - (1u << (2 * j));
    for (std::size_t o = 0; o < T; o += L) {
      auto add = hn::Load(d, v + j * T + o);
      if (bits == 1) add = hn::Add(add, add);
      hn::Store(hn::Add(hn::Load(d, table + prev * T + o), add), d, table + n * T + o);
    }
  }
#endif
}

// Rows of tiles [t0, t1) over pairs [p0, p0 + np): acc[row * 32 + i] (+)= the row's sum for token
// i (stored on the first block, added after). Tables: group 2p's, then group 2p + 1's, per pair.
HWY_INLINE void TokenLutRows(const detail::TokenLutGemmArgs& a, std::size_t t0, std::size_t t1,
                             std::size_t p0, std::size_t np, bool first) {
  constexpr std::size_t T = detail::kTokenLutTokens, E = kTokenLutEntries;
  for (std::size_t t = t0; t < t1; ++t) {
    const std::uint8_t* idx = a.index + (t * a.pairs + p0) * kLutTile;
#if HWY_TARGET == HWY_SCALAR
    for (std::size_t r = 0; r < kLutTile; ++r) {
      std::int32_t* out = a.acc + (t * kLutTile + r) * T;
      std::int16_t sum[T] = {};
      for (std::size_t p = 0; p < np; ++p) {
        const unsigned b = idx[p * kLutTile + r];
        const std::int16_t* lo = a.tables + (2 * p * E + (b & 15u)) * T;
        const std::int16_t* hi = a.tables + ((2 * p + 1) * E + (b >> 4)) * T;
        for (std::size_t i = 0; i < T; ++i)
          sum[i] = static_cast<std::int16_t>(sum[i] + lo[i] + hi[i]);
      }
      for (std::size_t i = 0; i < T; ++i) out[i] = (first ? 0 : out[i]) + sum[i];
    }
#else
    // Two rows per step: one 16-bit load holds both rows' bytes (rows r and r + 1 are adjacent in
    // the layout), and each nibble's table offset (n * 32 int16) is one shift and one and.
    const hn::CappedTag<std::int16_t, T> d;
    const hn::Half<decltype(d)> dh;
    const hn::Rebind<std::int32_t, decltype(dh)> d32;
    const std::size_t L = hn::Lanes(d), nv = T / L, H = L / 2;
    static_assert(T == 32 && kLutTile % 2 == 0, "offsets below are n * 32");
    // Pair p's low- and high-nibble table rows (tab: the pair's tables) for rows r (bits 0-7 of
    // one 16-bit load) and r + 1 (bits 8-15; little-endian targets).
    struct Rows {
      const std::int16_t *lo0, *hi0, *lo1, *hi1;
    };
    auto rows_of = [&](std::size_t r, std::size_t p, const std::int16_t* tab) {
      const std::uint8_t* b = idx + p * kLutTile + r;
      const unsigned w = b[0] | (unsigned{b[1]} << 8);
      return Rows{tab + ((w << 5) & 0x1E0u), tab + E * T + ((w << 1) & 0x1E0u),
                  tab + ((w >> 3) & 0x1E0u), tab + E * T + ((w >> 7) & 0x1E0u)};
    };
    // Row r + q's sums of tokens [v * L, (v + 1) * L) -> acc, widened to int32.
    auto store = [&](std::size_t r, std::size_t q, std::size_t v, hn::Vec<decltype(d)> s)
                     HWY_ATTR {
      std::int32_t* o = a.acc + (t * kLutTile + r + q) * T + v * L;
      auto lo = hn::PromoteTo(d32, hn::LowerHalf(dh, s));
      auto hi = hn::PromoteTo(d32, hn::UpperHalf(dh, s));
      if (!first) {
        lo = hn::Add(lo, hn::Load(d32, o));
        hi = hn::Add(hi, hn::Load(d32, o + H));
      }
      hn::Store(lo, d32, o);
      hn::Store(hi, d32, o + H);
    };
    for (std::size_t r = 0; r < kLutTile; r += 2) {
      // Low- and high-nibble chains of both rows keep four table reads in flight per step.
#if HWY_HAVE_SCALABLE
      // SVE's sizeless vectors cannot form arrays: one vector of tokens at a time.
      for (std::size_t v = 0; v < nv; ++v) {
        auto lo0 = hn::Zero(d), hi0 = lo0, lo1 = lo0, hi1 = lo0;
        const std::int16_t* tab = a.tables + v * L;
        for (std::size_t p = 0; p < np; ++p, tab += 2 * E * T) {
          const Rows o = rows_of(r, p, tab);
          lo0 = hn::Add(lo0, hn::Load(d, o.lo0));
          hi0 = hn::Add(hi0, hn::Load(d, o.hi0));
          lo1 = hn::Add(lo1, hn::Load(d, o.lo1));
          hi1 = hn::Add(hi1, hn::Load(d, o.hi1));
        }
        store(r, 0, v, hn::Add(lo0, hi0));
        store(r, 1, v, hn::Add(lo1, hi1));
      }
#else
      constexpr std::size_t kMaxVec = T / 8;  // vectors of at least 128 bits
      hn::Vec<decltype(d)> lo0[kMaxVec], hi0[kMaxVec], lo1[kMaxVec], hi1[kMaxVec];
      for (std::size_t v = 0; v < nv; ++v) lo0[v] = hi0[v] = lo1[v] = hi1[v] = hn::Zero(d);
      const std::int16_t* tab = a.tables;
      for (std::size_t p = 0; p < np; ++p, tab += 2 * E * T) {
        const Rows o = rows_of(r, p, tab);
        for (std::size_t v = 0; v < nv; ++v) {
          lo0[v] = hn::Add(lo0[v], hn::Load(d, o.lo0 + v * L));
          hi0[v] = hn::Add(hi0[v], hn::Load(d, o.hi0 + v * L));
          lo1[v] = hn::Add(lo1[v], hn::Load(d, o.lo1 + v * L));
          hi1[v] = hn::Add(hi1[v], hn::Load(d, o.hi1 + v * L));
        }
      }
      for (std::size_t v = 0; v < nv; ++v) {
        store(r, 0, v, hn::Add(lo0[v], hi0[v]));
        store(r, 1, v, hn::Add(lo1[v], hi1[v]));
      }
#endif
    }
#endif
  }
}

HWY_NOINLINE void TokenLutGemm(const detail::TokenLutGemmArgs& a) {
  constexpr std::size_t T = detail::kTokenLutTokens, P = detail::kTokenLutPairsPerBlock;
  const std::size_t per = 8 / a.bits;
  const std::size_t tasks = (a.tiles + kLutTilesPerTask - 1) / kLutTilesPerTask;
  for (std::size_t m0 = 0; m0 < a.m; m0 += T) {
    const std::size_t mc = std::min(T, a.m - m0);
    for (std::size_t p0 = 0; p0 < a.pairs; p0 += P) {
      const std::size_t np = std::min(P, a.pairs - p0);
      TokenLutTranspose(a, m0, mc, p0, np, per);
      // 32 small tables (a few hundred vector operations): on the calling thread.
      for (std::size_t g = 0; g < 2 * np; ++g)
        TokenLutTable(a.xt + g * (per / 2) * T, a.bits, a.tables + g * kTokenLutEntries * T);
      tbb::parallel_for(
          tbb::blocked_range<std::size_t>(0, tasks, 1),
          [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
            for (std::size_t blk = range.begin(); blk != range.end(); ++blk) {
              const std::size_t t0 = blk * kLutTilesPerTask;
              TokenLutRows(a, t0, std::min(a.tiles, t0 + kLutTilesPerTask), p0, np, p0 == 0);
            }
          },
          tbb::simple_partitioner());
    }
    // The epilogue, one tile and token at a time (the sums are token-major per row).
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, a.tiles, 1),
        [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
          HWY_ALIGN std::int32_t sums[kLutTile];
          for (std::size_t t = range.begin(); t != range.end(); ++t) {
            if (t * kLutTile >= a.ep.rows) continue;
            for (std::size_t i = 0; i < mc; ++i) {
              for (std::size_t r = 0; r < kLutTile; ++r) sums[r] = a.acc[(t * kLutTile + r) * T + i];
              RowEpilogue(TokenEpilogue(a.ep, m0 + i, 1, 0), t * kLutTile, kLutTile, sums);
            }
          }
        },
        tbb::simple_partitioner());
  }
}

// ---------------------------------------------------------------------------------------------
// INT8 GEMV: out[r] = sum_k w[r][k] * x[k]. Weights widened to int16, pairs multiplied and added
// into int32 (pmaddwd); |w * x| <= 16384 so two products fit, and K <= kMaxKInt8 keeps int32 exact.

// Rows per task: at least 32, and at least kInt8TaskBytes of weights, so that short rows (an
// expert's down projection, K = 256) do not pay a task's scheduling per few KiB. Any split gives
// the same sums (each row is one task's).
inline constexpr std::size_t kInt8TaskBytes = std::size_t{32} << 10;
HWY_INLINE std::size_t Int8TaskRows(std::size_t stride) {
  return std::max<std::size_t>(32, (kInt8TaskBytes / stride + 3) / 4 * 4);
}

// The GEMV's row tasks, every path's: rows(r0, r1) writes out[r0, r1), then the task applies the
// fused epilogue, if any, to those rows while their sums are in L1.
template <class Rows>
HWY_INLINE void Int8RowTasks(const detail::Int8GemvArgs& a, const Rows& rows) {
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, a.rows, Int8TaskRows(a.stride)),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        const std::size_t r0 = range.begin(), r1 = range.end();
        rows(r0, r1);
        if (a.ep.y != nullptr) RowEpilogue(a.ep, r0, r1 - r0, a.out + r0);
      },
      tbb::simple_partitioner());
}

#if HWY_TARGET == HWY_SCALAR
HWY_NOINLINE void Int8Gemv(const detail::Int8GemvArgs& a) {
  Int8RowTasks(a, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      std::int32_t acc = 0;
      for (std::size_t k = 0; k < a.stride; ++k) acc += a.w[r * a.stride + k] * a.x16[k];
      a.out[r] = acc;
    }
  });
}
#else
// A GEMV's weight rows are one contiguous stream. DRAM-resident matrices need it prefetched ahead
// of the loop (without, a 4096 x 4096 INT8 GEMV streamed two thirds of the read bandwidth): each
// group of 4 rows prefetches, into L2, the same columns of the group Int8PrefetchRows rows on (at
// least kInt8PrefetchBytes ahead), once per cache line.
inline constexpr std::size_t kInt8PrefetchBytes = 4096;
HWY_INLINE std::size_t Int8PrefetchRows(std::size_t stride) {
  return (kInt8PrefetchBytes + 4 * stride - 1) / (4 * stride) * 4;
}
HWY_INLINE void Int8PrefetchGroup(const detail::Int8GemvArgs& a, std::size_t r, std::size_t ahead,
                                  std::size_t k) {
  if (k % 64 != 0 || r + ahead + 4 > a.rows) return;
  const std::int8_t* p = a.w + (r + ahead) * a.stride + k;
  for (std::size_t j = 0; j < 4; ++j) PrefetchL2(p + j * a.stride);
}

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
  const std::size_t ahead = Int8PrefetchRows(stride);
  std::size_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const std::int8_t* w0 = a.w + r * stride;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (std::size_t k = 0; k < stride; k += 32) {
      Int8PrefetchGroup(a, r, ahead, k);
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

#if HWY_TARGET == HWY_AVX3_DL
// AVX-512 VNNI (vpdpbusd: four unsigned x signed byte products added into each int32 lane). Highway
// 1.0 has no op for it, and its AVX3_DL target string names AVX-VNNI but not AVX512-VNNI: the
// functions using it add the feature. Each is called (not inlined) from HWY_ATTR code.
#define PQUANT_VNNI_ATTR __attribute__((target(HWY_TARGET_STR ",avx512vnni")))
#define PQUANT_INT8_VNNI 1

// Offset trick (exact for any int8 weights, -128 included): the unsigned operand is x + 128 =
// x xor 0x80 in [0, 255], so sum_k (x_k + 128) w_k - 128 sum_k w_k = sum_k x_k w_k, with sum_k w_k
// from vpdpbusd of 0x01 bytes. One instruction adds at most 4 * 255 * 128 = 130560 in magnitude
// to a lane; the int32 lanes wrap modulo 2^32 (vpdpbusd does not saturate), so the difference is
// exact whenever the true value fits int32, which K <= kMaxKInt8 guarantees (|x w| <= 16384).
// Sum of the 16 int32 lanes modulo 2^32. The lanes wrap by design (above), so the sum is taken in
// uint32: Highway's int32 SumOfLanes on 512-bit vectors is _mm512_reduce_add_epi32, which GCC
// evaluates in signed int (undefined on wrap); its 256-bit one adds with vector instructions.
PQUANT_VNNI_ATTR HWY_INLINE std::int32_t WrappingLaneSum(__m512i v) {
  const hn::Full256<std::uint32_t> dh;
  const hn::Vec512<std::uint32_t> u{v};
  const auto h = hn::Add(hn::LowerHalf(dh, u), hn::UpperHalf(dh, u));
  return static_cast<std::int32_t>(hn::GetLane(hn::SumOfLanes(dh, h)));
}

PQUANT_VNNI_ATTR HWY_NOINLINE void Int8RowsVnni(const detail::Int8GemvArgs& a, std::size_t r0,
                                                std::size_t r1) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i ones = _mm512_set1_epi8(1);
  const std::size_t stride = a.stride;  // a multiple of 64 (kInt8RowAlign), zero-padded
  auto finish = [&](__m512i acc, __m512i wsum) PQUANT_VNNI_ATTR {
    const hn::Vec512<std::int32_t> s{acc}, c{wsum};
    return WrappingLaneSum(hn::Sub(s, hn::ShiftLeft<7>(c)).raw);
  };
  const std::size_t ahead = Int8PrefetchRows(stride);
  std::size_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const std::int8_t* w0 = a.w + r * stride;
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    __m512i c0 = s0, c1 = s0, c2 = s0, c3 = s0;
    for (std::size_t k = 0; k < stride; k += 64) {
      Int8PrefetchGroup(a, r, ahead, k);
      const __m512i xb = _mm512_xor_si512(_mm512_loadu_si512(a.x8 + k), bias);
      const __m512i v0 = _mm512_loadu_si512(w0 + k);
      const __m512i v1 = _mm512_loadu_si512(w0 + stride + k);
      const __m512i v2 = _mm512_loadu_si512(w0 + 2 * stride + k);
      const __m512i v3 = _mm512_loadu_si512(w0 + 3 * stride + k);
      s0 = _mm512_dpbusd_epi32(s0, xb, v0);
      s1 = _mm512_dpbusd_epi32(s1, xb, v1);
      s2 = _mm512_dpbusd_epi32(s2, xb, v2);
      s3 = _mm512_dpbusd_epi32(s3, xb, v3);
      c0 = _mm512_dpbusd_epi32(c0, ones, v0);
      c1 = _mm512_dpbusd_epi32(c1, ones, v1);
      c2 = _mm512_dpbusd_epi32(c2, ones, v2);
      c3 = _mm512_dpbusd_epi32(c3, ones, v3);
    }
    a.out[r] = finish(s0, c0);
    a.out[r + 1] = finish(s1, c1);
    a.out[r + 2] = finish(s2, c2);
    a.out[r + 3] = finish(s3, c3);
  }
  for (; r < r1; ++r) {
    __m512i s0 = _mm512_setzero_si512(), c0 = s0;
    for (std::size_t k = 0; k < stride; k += 64) {
      const __m512i v0 = _mm512_loadu_si512(a.w + r * stride + k);
      s0 = _mm512_dpbusd_epi32(s0, _mm512_xor_si512(_mm512_loadu_si512(a.x8 + k), bias), v0);
      c0 = _mm512_dpbusd_epi32(c0, ones, v0);
    }
    a.out[r] = finish(s0, c0);
  }
}
#else
#define PQUANT_INT8_VNNI 0
#endif

HWY_NOINLINE void Int8Gemv(const detail::Int8GemvArgs& a) {
#if PQUANT_INT8_VNNI
  if (a.x8 != nullptr && a.stride % 64 == 0) {
    Int8RowTasks(a, [&](std::size_t r0, std::size_t r1) HWY_ATTR { Int8RowsVnni(a, r0, r1); });
    return;
  }
#endif
#if PQUANT_INT8_SYMMETRIC
  if (a.symmetric && a.x8 != nullptr && a.xabs != nullptr) {
    Int8RowTasks(a,
                 [&](std::size_t r0, std::size_t r1) HWY_ATTR { Int8RowsSymmetric(a, r0, r1); });
    return;
  }
#endif
#undef PQUANT_INT8_SYMMETRIC
  const hn::ScalableTag<std::int16_t> d16;
  const hn::Rebind<std::int8_t, decltype(d16)> d8;
  const hn::Repartition<std::int32_t, decltype(d16)> d32;
  const std::size_t N = hn::Lanes(d16);
  const std::size_t stride = a.stride, ahead = Int8PrefetchRows(stride);
  Int8RowTasks(a, [&](std::size_t r0, std::size_t r1) HWY_ATTR {
    std::size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
      const std::int8_t* w0 = a.w + r * stride;
      auto s0 = hn::Zero(d32), s1 = hn::Zero(d32), s2 = hn::Zero(d32), s3 = hn::Zero(d32);
      auto t0 = hn::Zero(d32), t1 = hn::Zero(d32), t2 = hn::Zero(d32), t3 = hn::Zero(d32);
      for (std::size_t k = 0; k < stride; k += N) {
        Int8PrefetchGroup(a, r, ahead, k);
        const auto x = hn::Load(d16, a.x16 + k);
        s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + k)), x, s0,
                                           t0);
        s1 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + stride + k)),
                                           x, s1, t1);
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
    for (; r < r1; ++r) {
      const std::int8_t* w0 = a.w + r * stride;
      auto s0 = hn::Zero(d32), t0 = hn::Zero(d32);
      for (std::size_t k = 0; k < stride; k += N) {
        s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w0 + k)),
                                           hn::Load(d16, a.x16 + k), s0, t0);
      }
      a.out[r] = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s0, t0)));
    }
  });
}

#endif  // HWY_TARGET == HWY_SCALAR

// ---------------------------------------------------------------------------------------------
// INT8 GEMM (Int8GemmArgs): dot products of int8 rows, tasks of 32 weight rows x 32 tokens.

// Generic path: one (token, row) dot product at a time, values widened to int16 (pmaddwd).
HWY_INLINE void Int8GemmGeneric(const detail::Int8GemmArgs& a, std::size_t i0, std::size_t i1,
                                std::size_t j0, std::size_t j1) {
#if HWY_TARGET == HWY_SCALAR
  for (std::size_t i = i0; i < i1; ++i)
    for (std::size_t j = j0; j < j1; ++j) {
      std::int32_t acc = 0;
      for (std::size_t k = 0; k < a.kp; ++k) acc += a.x[i * a.ldx + k] * a.w[j * a.ldw + k];
      a.out[i * a.ldo + j] = acc;
    }
#else
  const hn::ScalableTag<std::int16_t> d16;
  const hn::Rebind<std::int8_t, decltype(d16)> d8;
  const hn::Repartition<std::int32_t, decltype(d16)> d32;
  const std::size_t N = hn::Lanes(d16);
  for (std::size_t i = i0; i < i1; ++i)
    for (std::size_t j = j0; j < j1; ++j) {
      const std::int8_t* x = a.x + i * a.ldx;
      const std::int8_t* w = a.w + j * a.ldw;
      auto s0 = hn::Zero(d32), s1 = hn::Zero(d32);
      std::size_t k = 0;
      for (; k + N <= a.kp; k += N)
        s0 = hn::ReorderWidenMulAccumulate(d32, hn::PromoteTo(d16, hn::LoadU(d8, w + k)),
                                           hn::PromoteTo(d16, hn::LoadU(d8, x + k)), s0, s1);
      std::int32_t acc = hn::GetLane(hn::SumOfLanes(d32, hn::Add(s0, s1)));
      for (; k < a.kp; ++k) acc += x[k] * w[k];
      a.out[i * a.ldo + j] = acc;
    }
#endif
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
// 2 tokens x 4 rows per step of 32 k: 8 x (psignb, pmaddubsw, pmaddwd, paddd), the eight int32
// vectors reduced with a phaddd tree. Exact for symmetric weights (see Int8GemmArgs).
HWY_INLINE void Int8GemmSymmetric(const detail::Int8GemmArgs& a, std::size_t i0, std::size_t i1,
                                  std::size_t j0, std::size_t j1) {
  const __m256i ones = _mm256_set1_epi16(1);
  std::size_t i = i0;
  for (; i + 2 <= i1; i += 2) {
    const std::int8_t* xs0 = a.x + i * a.ldx;
    const std::int8_t* xs1 = xs0 + a.ldx;
    std::size_t j = j0;
    for (; j + 4 <= j1; j += 4) {
      __m256i acc[8];
      for (auto& v : acc) v = _mm256_setzero_si256();
      const std::int8_t* w0 = a.w + j * a.ldw;
      for (std::size_t k = 0; k < a.kp; k += 32) {
        const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs0 + k));
        const __m256i s1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs1 + k));
        const __m256i u0 = _mm256_abs_epi8(s0);  // |-128| = 128 as uint8
        const __m256i u1 = _mm256_abs_epi8(s1);
        for (std::size_t r = 0; r < 4; ++r) {
          const __m256i wv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + r * a.ldw + k));
          acc[2 * r] = _mm256_add_epi32(
              acc[2 * r],
              _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(wv, s0)), ones));
          acc[2 * r + 1] = _mm256_add_epi32(
              acc[2 * r + 1],
              _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(wv, s1)), ones));
        }
      }
      // phaddd tree: lanes of the result are the sums of acc[0..7] in order.
      const __m256i h01 = _mm256_hadd_epi32(acc[0], acc[1]);
      const __m256i h23 = _mm256_hadd_epi32(acc[2], acc[3]);
      const __m256i h45 = _mm256_hadd_epi32(acc[4], acc[5]);
      const __m256i h67 = _mm256_hadd_epi32(acc[6], acc[7]);
      const __m256i g0 = _mm256_hadd_epi32(h01, h23);
      const __m256i g1 = _mm256_hadd_epi32(h45, h67);
      const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20),
                                           _mm256_permute2x128_si256(g0, g1, 0x31));
      HWY_ALIGN std::int32_t v[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(v), sum);
      for (std::size_t r = 0; r < 4; ++r) {
        a.out[i * a.ldo + j + r] = v[2 * r];
        a.out[(i + 1) * a.ldo + j + r] = v[2 * r + 1];
      }
    }
    if (j < j1) Int8GemmGeneric(a, i, i + 2, j, j1);
  }
  if (i < i1) Int8GemmGeneric(a, i, i1, j0, j1);
}
#define PQUANT_INT8_GEMM_SYMMETRIC 1
#else
#define PQUANT_INT8_GEMM_SYMMETRIC 0
#endif

#if PQUANT_INT8_VNNI
// VNNI micro-kernel: TM tokens x TN rows, every weight vector used by TM tokens and every
// activation vector by TN rows (vpdpbusd, offset trick and bounds of Int8RowsVnni); wsum[r] =
// sum_k w[r][k] of the block's rows, computed once per block. kp is a multiple of 64.
template <std::size_t TM, std::size_t TN>
PQUANT_VNNI_ATTR HWY_INLINE void Int8GemmVnniTile(const detail::Int8GemmArgs& a, std::size_t i,
                                                  std::size_t j, const std::int32_t* wsum) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc[TM][TN];
  for (std::size_t t = 0; t < TM; ++t)
    for (std::size_t r = 0; r < TN; ++r) acc[t][r] = _mm512_setzero_si512();
  for (std::size_t k = 0; k < a.kp; k += 64) {
    __m512i xb[TM], wv[TN];
    for (std::size_t t = 0; t < TM; ++t)
      xb[t] = _mm512_xor_si512(_mm512_loadu_si512(a.x + (i + t) * a.ldx + k), bias);
    for (std::size_t r = 0; r < TN; ++r) wv[r] = _mm512_loadu_si512(a.w + (j + r) * a.ldw + k);
    for (std::size_t t = 0; t < TM; ++t)
      for (std::size_t r = 0; r < TN; ++r) acc[t][r] = _mm512_dpbusd_epi32(acc[t][r], xb[t], wv[r]);
  }
  for (std::size_t t = 0; t < TM; ++t)
    for (std::size_t r = 0; r < TN; ++r) {
      const std::int32_t sum = WrappingLaneSum(acc[t][r]);
      // sum - 128 wsum modulo 2^32 (exact: the true value fits int32).
      a.out[(i + t) * a.ldo + j + r] = static_cast<std::int32_t>(
          static_cast<std::uint32_t>(sum) - (static_cast<std::uint32_t>(wsum[r]) << 7));
    }
}

template <std::size_t TM>
PQUANT_VNNI_ATTR HWY_INLINE void Int8GemmVnniRows(const detail::Int8GemmArgs& a, std::size_t i,
                                                  std::size_t j0, std::size_t j1,
                                                  const std::int32_t* wsum) {
  std::size_t j = j0;
  for (; j + 4 <= j1; j += 4) Int8GemmVnniTile<TM, 4>(a, i, j, wsum + (j - j0));
  for (; j < j1; ++j) Int8GemmVnniTile<TM, 1>(a, i, j, wsum + (j - j0));
}

// One block of the INT8 GEMM (up to 32 tokens x 32 rows) with VNNI: 4 tokens x 4 rows per
// micro-kernel step (16 vpdpbusd per 8 vector loads).
PQUANT_VNNI_ATTR HWY_NOINLINE void Int8GemmVnni(const detail::Int8GemmArgs& a, std::size_t i0,
                                                std::size_t i1, std::size_t j0, std::size_t j1) {
  const __m512i ones = _mm512_set1_epi8(1);
  std::int32_t wsum[32];
  for (std::size_t j = j0; j < j1; ++j) {
    __m512i c = _mm512_setzero_si512();
    for (std::size_t k = 0; k < a.kp; k += 64)
      c = _mm512_dpbusd_epi32(c, ones, _mm512_loadu_si512(a.w + j * a.ldw + k));
    wsum[j - j0] = WrappingLaneSum(c);
  }
  std::size_t i = i0;
  for (; i + 4 <= i1; i += 4) Int8GemmVnniRows<4>(a, i, j0, j1, wsum);
  for (; i < i1; ++i) Int8GemmVnniRows<1>(a, i, j0, j1, wsum);
}
#endif

HWY_NOINLINE void Int8Gemm(const detail::Int8GemmArgs& a) {
  constexpr std::size_t kBlock = 32;
  const std::size_t mb = (a.m + kBlock - 1) / kBlock, nb = (a.n + kBlock - 1) / kBlock;
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, mb * nb, 1),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        for (std::size_t b = range.begin(); b != range.end(); ++b) {
          const std::size_t i0 = b / nb * kBlock, j0 = b % nb * kBlock;
          const std::size_t i1 = std::min(a.m, i0 + kBlock), j1 = std::min(a.n, j0 + kBlock);
#if PQUANT_INT8_VNNI
          if (a.kp % 64 == 0) {  // always, for packed Int8Weights (rows padded to 64 bytes)
            Int8GemmVnni(a, i0, i1, j0, j1);
            continue;
          }
#endif
#if PQUANT_INT8_GEMM_SYMMETRIC
          if (a.symmetric) {
            Int8GemmSymmetric(a, i0, i1, j0, j1);
            continue;
          }
#endif
          Int8GemmGeneric(a, i0, i1, j0, j1);
        }
      },
      tbb::simple_partitioner());
}
#undef PQUANT_INT8_GEMM_SYMMETRIC
#undef PQUANT_INT8_VNNI
#ifdef PQUANT_VNNI_ATTR
#undef PQUANT_VNNI_ATTR
#endif

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

// SwiGLU, RMSNorm, AdamW and the finiteness check of a training step: their own file.
#include "pquant/kernels/elementwise-inl.h"

}  // namespace pquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // PQUANT_KERNELS_INL_H_
