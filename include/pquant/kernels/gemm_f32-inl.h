// FP32 GEMM microkernel and driver, one expansion per Highway target. Textually included by
// kernels-inl.h inside its per-target namespace (no guard of its own: kernels-inl.h's toggle guard
// governs the expansion). Not included directly.
// ---------------------------------------------------------------------------------------------
// FP32 GEMM for the training shapes (M = thousands of tokens, N and K = 32..1024).
// B is packed ONCE per call into NR-column panels (NR = 2 vectors) per kKC slice of K, shared by
// every task, except in dY^T X (dW), where X is read in place; A with contiguous rows is read in
// place (a 6 x kKC micro-panel is at most 6 KiB and its elements are broadcast straight from
// memory); strided A (dY^T) is packed per task block and K slice into kMR-row micro-panels.
// Tasks are blocks of C rows (and column panels when M is small); a parallel pass per K slice runs
// a kMR x NR register-blocked FMA microkernel over every block's C tiles. Every C element is owned
// by one task and summed in a fixed order (K slices in order, each slice's k in order into a
// zeroed register, then added to C), which neither the blocking nor the thread count changes, so
// results do not depend on the thread count. Products below kGemmSerialWork multiply-adds
// (attention per head, the router) run on the calling thread.

inline constexpr std::size_t kMR = 6;
inline constexpr std::size_t kKC = ::pquant::kernels::kGemmF32KSlice;
inline constexpr std::size_t kPackAhead = 16;  // rows of A prefetched ahead while packing
inline constexpr std::size_t kGemmSerialWork = std::size_t{1} << 21;

// hwy/cache_control.h (hwy::Prefetch) cannot be included from inside this per-target namespace.
inline void GemmPrefetch(const float* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

// C[mr x nr] (= or +=) sum_k A(i, k) Bp(k, :). A(i, k) = a[i * a_rs + k * a_cs]; rows i >= mr
// read row 0 (valid memory) and are discarded. B(k, :) = 2N floats at bp + k * bk (a packed
// panel: bk = 2N; or B's own rows).
template <class DF>
HWY_INLINE void GemmMicro(DF df, std::size_t kc, const float* a, std::size_t a_rs, std::size_t a_cs,
                          const float* HWY_RESTRICT bp, std::size_t bk, float* c, std::size_t ldc,
                          bool add, std::size_t mr, std::size_t nr) {
  const std::size_t N = hn::Lanes(df);
  const float* a0 = a;
  const float* a1 = a + (mr > 1 ? a_rs : 0);
  const float* a2 = a + (mr > 2 ? 2 * a_rs : 0);
  const float* a3 = a + (mr > 3 ? 3 * a_rs : 0);
  const float* a4 = a + (mr > 4 ? 4 * a_rs : 0);
  const float* a5 = a + (mr > 5 ? 5 * a_rs : 0);
  // C rows are written (read too when adding) only after the k loop: start fetching them now, so
  // that outputs not in cache (the forward's fresh activations) do not stall the stores.
  for (std::size_t i = 0; i < mr; ++i) {
    GemmPrefetch(c + i * ldc);
    GemmPrefetch(c + i * ldc + nr - 1);
  }
  auto c00 = hn::Zero(df), c01 = hn::Zero(df), c10 = hn::Zero(df), c11 = hn::Zero(df);
  auto c20 = hn::Zero(df), c21 = hn::Zero(df), c30 = hn::Zero(df), c31 = hn::Zero(df);
  auto c40 = hn::Zero(df), c41 = hn::Zero(df), c50 = hn::Zero(df), c51 = hn::Zero(df);
  for (std::size_t k = 0, off = 0; k < kc; ++k, off += a_cs) {
    const auto b0 = hn::LoadU(df, bp + k * bk);
    const auto b1 = hn::LoadU(df, bp + k * bk + N);
    auto av = hn::Set(df, a0[off]);
    c00 = hn::MulAdd(av, b0, c00);
    c01 = hn::MulAdd(av, b1, c01);
    av = hn::Set(df, a1[off]);
    c10 = hn::MulAdd(av, b0, c10);
    c11 = hn::MulAdd(av, b1, c11);
    av = hn::Set(df, a2[off]);
    c20 = hn::MulAdd(av, b0, c20);
    c21 = hn::MulAdd(av, b1, c21);
    av = hn::Set(df, a3[off]);
    c30 = hn::MulAdd(av, b0, c30);
    c31 = hn::MulAdd(av, b1, c31);
    av = hn::Set(df, a4[off]);
    c40 = hn::MulAdd(av, b0, c40);
    c41 = hn::MulAdd(av, b1, c41);
    av = hn::Set(df, a5[off]);
    c50 = hn::MulAdd(av, b0, c50);
    c51 = hn::MulAdd(av, b1, c51);
  }
  if (mr == kMR && nr == 2 * N) {
    auto put = [&](std::size_t i, decltype(c00) v0, decltype(c00) v1) HWY_ATTR {
      float* row = c + i * ldc;
      if (add) {
        v0 = hn::Add(hn::LoadU(df, row), v0);
        v1 = hn::Add(hn::LoadU(df, row + N), v1);
      }
      hn::StoreU(v0, df, row);
      hn::StoreU(v1, df, row + N);
    };
    put(0, c00, c01);
    put(1, c10, c11);
    put(2, c20, c21);
    put(3, c30, c31);
    put(4, c40, c41);
    put(5, c50, c51);
    return;
  }
  HWY_ALIGN float tile[kMR * 2 * HWY_MAX_BYTES / sizeof(float)];
  const std::size_t w = 2 * N;
  hn::Store(c00, df, tile + 0 * w), hn::Store(c01, df, tile + 0 * w + N);
  hn::Store(c10, df, tile + 1 * w), hn::Store(c11, df, tile + 1 * w + N);
  hn::Store(c20, df, tile + 2 * w), hn::Store(c21, df, tile + 2 * w + N);
  hn::Store(c30, df, tile + 3 * w), hn::Store(c31, df, tile + 3 * w + N);
  hn::Store(c40, df, tile + 4 * w), hn::Store(c41, df, tile + 4 * w + N);
  hn::Store(c50, df, tile + 5 * w), hn::Store(c51, df, tile + 5 * w + N);
  for (std::size_t i = 0; i < mr; ++i)
    for (std::size_t j = 0; j < nr; ++j)
      c[i * ldc + j] = add ? c[i * ldc + j] + tile[i * w + j] : tile[i * w + j];
}

// One row of C (M = 1: a decoding query's scores and outputs), NP <= 4 column panels at once:
// C[0, 0 : ncols] (= or +=) sum_k A(0, k) B(k, :), panel q's B(k, :) at b + q * pstride + k * bk.
// Each element is the same chain as in GemmMicro (k in order into a zeroed register, then added to
// C), so results equal the kMR-row kernel's; it runs NP * 2 independent chains instead of 12 of
// which kMR - 1 rows would be discarded.
template <std::size_t NP, class DF>
HWY_INLINE void GemmMicroRow(DF df, std::size_t kc, const float* a, std::size_t a_cs,
                             const float* HWY_RESTRICT b, std::size_t bk, std::size_t pstride,
                             float* c, bool add, std::size_t ncols) {
  const std::size_t N = hn::Lanes(df);
  const float* b1 = b + (NP > 1 ? pstride : 0);
  const float* b2 = b + (NP > 2 ? 2 * pstride : 0);
  const float* b3 = b + (NP > 3 ? 3 * pstride : 0);
  auto c0 = hn::Zero(df), c1 = hn::Zero(df), c2 = hn::Zero(df), c3 = hn::Zero(df);
  auto c4 = hn::Zero(df), c5 = hn::Zero(df), c6 = hn::Zero(df), c7 = hn::Zero(df);
  for (std::size_t k = 0; k < kc; ++k) {
    const auto av = hn::Set(df, a[k * a_cs]);
    const std::size_t o = k * bk;
    c0 = hn::MulAdd(av, hn::LoadU(df, b + o), c0);
    c1 = hn::MulAdd(av, hn::LoadU(df, b + o + N), c1);
    if constexpr (NP > 1) {
      c2 = hn::MulAdd(av, hn::LoadU(df, b1 + o), c2);
      c3 = hn::MulAdd(av, hn::LoadU(df, b1 + o + N), c3);
    }
    if constexpr (NP > 2) {
      c4 = hn::MulAdd(av, hn::LoadU(df, b2 + o), c4);
      c5 = hn::MulAdd(av, hn::LoadU(df, b2 + o + N), c5);
    }
    if constexpr (NP > 3) {
      c6 = hn::MulAdd(av, hn::LoadU(df, b3 + o), c6);
      c7 = hn::MulAdd(av, hn::LoadU(df, b3 + o + N), c7);
    }
  }
  HWY_ALIGN float tile[8 * HWY_MAX_BYTES / sizeof(float)];
  hn::Store(c0, df, tile), hn::Store(c1, df, tile + N);
  hn::Store(c2, df, tile + 2 * N), hn::Store(c3, df, tile + 3 * N);
  hn::Store(c4, df, tile + 4 * N), hn::Store(c5, df, tile + 5 * N);
  hn::Store(c6, df, tile + 6 * N), hn::Store(c7, df, tile + 7 * N);
  std::size_t j = 0;
  for (; j + N <= ncols; j += N) {
    auto v = hn::Load(df, tile + j);
    if (add) v = hn::Add(hn::LoadU(df, c + j), v);
    hn::StoreU(v, df, c + j);
  }
  for (; j < ncols; ++j) c[j] = add ? c[j] + tile[j] : tile[j];
}

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// dst[r * ldd + c] = src[c * lds + r] for r, c < 8 (256-bit vectors: unpack within 128-bit halves,
// then 64-bit unpacks, then the halves exchanged).
HWY_INLINE void GemmTranspose8x8(const float* HWY_RESTRICT src, std::size_t lds,
                                 float* HWY_RESTRICT dst, std::size_t ldd) {
  const hn::FixedTag<float, 8> d;
  const hn::Repartition<double, decltype(d)> dd;
  using V = hn::Vec<decltype(d)>;
  V v[8];
  for (std::size_t c = 0; c < 8; ++c) v[c] = hn::LoadU(d, src + c * lds);
  V t[8], u[8];
  for (std::size_t c = 0; c < 8; c += 2) {
    t[c] = hn::InterleaveLower(d, v[c], v[c + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
    t[c + 1] = hn::InterleaveUpper(d, v[c], v[c + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
  }
  for (std::size_t h = 0; h < 8; h += 4)
    for (std::size_t q = 0; q < 2; ++q) {
      const auto lo = hn::BitCast(dd, t[h + q]), hi = hn::BitCast(dd, t[h + 2 + q]);
      u[h + 2 * q] = hn::BitCast(d, hn::InterleaveLower(dd, lo, hi));      // a0 b0 c0 d0 | a4..
      u[h + 2 * q + 1] = hn::BitCast(d, hn::InterleaveUpper(dd, lo, hi));  // a1 b1 c1 d1 | a5..
    }
  for (std::size_t r = 0; r < 4; ++r) {
    hn::StoreU(hn::ConcatLowerLower(d, u[4 + r], u[r]), d, dst + r * ldd);
    hn::StoreU(hn::ConcatUpperUpper(d, u[4 + r], u[r]), d, dst + (r + 4) * ldd);
  }
}
#endif

// B(k, j) for k in [k0, k0 + kc), j in [0, n) -> nr-column panels of kc x nr floats, zero-padded.
inline void GemmPackB(const detail::GemmF32Args& g, std::size_t k0, std::size_t kc, std::size_t nr,
                      float* HWY_RESTRICT bp) {
  const std::size_t panels = (g.n + nr - 1) / nr;
  for (std::size_t p = 0; p < panels; ++p) {
    float* dst = bp + p * kc * nr;
    const std::size_t j0 = p * nr, jn = std::min(nr, g.n - j0);
    if (g.b_cs == 1) {  // rows of B contiguous (B = W or X): copy row by row
      for (std::size_t k = 0; k < kc; ++k) {
        const float* src = g.b + (k0 + k) * g.b_rs + j0;
        if (jn == nr) {  // full panel: nr = 2 vectors
          const hn::ScalableTag<float> df;
          const std::size_t N = hn::Lanes(df);
          hn::Store(hn::LoadU(df, src), df, dst + k * nr);
          hn::Store(hn::LoadU(df, src + N), df, dst + k * nr + N);
          continue;
        }
        for (std::size_t jj = 0; jj < jn; ++jj) dst[k * nr + jj] = src[jj];
        for (std::size_t jj = jn; jj < nr; ++jj) dst[k * nr + jj] = 0.0f;
      }
    } else {  // columns of B contiguous (B = W^T): walk each column
      std::size_t jt = 0;
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      if (g.b_rs ==
          1) {  // 8 x 8 blocks through registers (the scalar walk costs 10-25% of S = Q K^T)
        const std::size_t k8 = kc & ~std::size_t{7};
        for (; jt + 8 <= jn; jt += 8)
          for (std::size_t k = 0; k < k8; k += 8)
            GemmTranspose8x8(g.b + (k0 + k) + (j0 + jt) * g.b_cs, g.b_cs, dst + k * nr + jt, nr);
        for (std::size_t jj = 0; jj < jt; ++jj)  // the K tail of those columns
          for (std::size_t k = k8; k < kc; ++k)
            dst[k * nr + jj] = g.b[(k0 + k) + (j0 + jj) * g.b_cs];
      }
#endif
      for (std::size_t jj = jt; jj < nr; ++jj) {
        if (jj >= jn) {
          for (std::size_t k = 0; k < kc; ++k) dst[k * nr + jj] = 0.0f;
          continue;
        }
        const float* src = g.b + k0 * g.b_rs + (j0 + jj) * g.b_cs;
        for (std::size_t k = 0; k < kc; ++k) dst[k * nr + jj] = src[k * g.b_rs];
      }
    }
  }
}

// A(i0 + i, k0 + k) for i < mc, k < kc -> kMR-row micro-panels, k-major: panel q holds
// ap[q * kc * kMR + k * kMR + ii] = A(i0 + q * kMR + ii, k0 + k), rows past mc zero.
inline void GemmPackA(const detail::GemmF32Args& g, std::size_t i0, std::size_t mc, std::size_t k0,
                      std::size_t kc, float* HWY_RESTRICT ap) {
  const std::size_t full = mc / kMR, panel = kc * kMR;
  for (std::size_t k = 0; k < kc; ++k) {
    const float* src = g.a + (k0 + k) * g.a_cs + i0 * g.a_rs;
    float* dst = ap + k * kMR;
    if (g.a_rs == 1) {          // A = dY^T: row k of dY, mc consecutive floats, read once
      if (k + kPackAhead < kc)  // rows of dY are far apart: the prefetchers do not run ahead
        for (std::size_t i = 0; i < mc; i += 16) GemmPrefetch(src + kPackAhead * g.a_cs + i);
      for (std::size_t q = 0; q < full; ++q)
        std::memcpy(dst + q * panel, src + q * kMR, kMR * sizeof(float));
    } else {
      for (std::size_t q = 0; q < full; ++q)
        for (std::size_t ii = 0; ii < kMR; ++ii) dst[q * panel + ii] = src[(q * kMR + ii) * g.a_rs];
    }
    if (full * kMR < mc) {
      for (std::size_t ii = 0; ii < kMR; ++ii) {
        const std::size_t i = full * kMR + ii;
        dst[full * panel + ii] = i < mc ? src[i * g.a_rs] : 0.0f;
      }
    }
  }
}

// The packed B of one call, shared by its tasks while the caller waits in parallel_for (and may
// run an unrelated task that calls GemmF32 too): a per-thread buffer leased for the call, or a
// fresh one when this thread's buffer is already leased by an outer call.
class GemmPackedB {
 public:
  explicit GemmPackedB(std::size_t count) {
    Slot& s = slot();
    if (!s.busy) {
      s.busy = true;
      slot_ = &s;
      if (s.capacity < count) {
        s.buffer = hwy::AllocateAligned<float>(count);
        s.capacity = count;
      }
      data_ = s.buffer.get();
    } else {
      own_ = hwy::AllocateAligned<float>(count);
      data_ = own_.get();
    }
  }
  ~GemmPackedB() {
    if (slot_ != nullptr) slot_->busy = false;
  }
  GemmPackedB(const GemmPackedB&) = delete;
  GemmPackedB& operator=(const GemmPackedB&) = delete;
  float* data() const { return data_; }

 private:
  struct Slot {
    hwy::AlignedFreeUniquePtr<float[]> buffer;
    std::size_t capacity = 0;
    bool busy = false;
  };
  static Slot& slot() {
    static thread_local Slot s;
    return s;
  }
  Slot* slot_ = nullptr;
  hwy::AlignedFreeUniquePtr<float[]> own_;
  float* data_ = nullptr;
};

HWY_NOINLINE void GemmF32(const detail::GemmF32Args& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    if (!g.accumulate)
      for (std::size_t i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, 0.0f);
    return;
  }
  const hn::ScalableTag<float> df;
  const std::size_t nr = 2 * hn::Lanes(df);
  const std::size_t panels = (g.n + nr - 1) / nr, npad = panels * nr;
  const std::size_t slices = (g.k + kKC - 1) / kKC;
  // A = dY^T (strided A) with B = X (contiguous rows, full panels): K is the token count and both
  // operands are activations read once per call. B is read in place: packing it would copy as much
  // data as the product reads, for a reuse of only M / kMR micro-tiles per panel (the copy cost
  // 4-13% of dY^T X at the training shapes). The same holds for the small serial products
  // (attention's O = P V and dQ = dS K read V and K rows in place, reused by a few micro-tiles
  // only; packing B took 13% of the per-head products' time). Otherwise B is packed once per call into nr-column panels per K slice,
  // shared by every task.
  const bool b_in_place =
      (g.a_cs != 1 || g.m * g.n * g.k < kGemmSerialWork) && g.b_cs == 1 && g.n % nr == 0;
  // Packed B: slice s (k0 = s * kKC) starts at k0 * npad, panel p of it at p * kc * nr.
  GemmPackedB packed(b_in_place ? 0 : npad * g.k);
  float* const bp = packed.data();
  auto pack_slice = [&](std::size_t s) HWY_ATTR {
    const std::size_t k0 = s * kKC;
    GemmPackB(g, k0, std::min(kKC, g.k - k0), nr, bp + k0 * npad);
  };
  // A with contiguous rows (X, dY) is read in place: the microkernel walks kMR rows, each a
  // sequential stream. Strided A (dY^T, P^T, dS^T) is packed per task block and K slice into
  // kMR-row micro-panels when at least 4 column panels reuse it: read in place, consecutive k lie a
  // row of dY apart, one cache line each, and at power-of-two strides those lines share a few L1
  // sets and evict each other between micro-tiles. With fewer panels it is broadcast in place.
  const bool pack_a = g.a_cs != 1 && panels >= 4;
  // C block [i0, i0 + mc) x panels [p0, p1), K slices [s0, s1) in order.
  auto run_block = [&](std::size_t i0, std::size_t mc, std::size_t p0, std::size_t p1,
                       std::size_t s0, std::size_t s1) HWY_ATTR {
    const std::size_t mpanels = (mc + kMR - 1) / kMR;
    float* ap = pack_a ? Scratch<float, 0>(mpanels * kMR * std::min(kKC, g.k)) : nullptr;
    for (std::size_t s = s0; s < s1; ++s) {
      const std::size_t k0 = s * kKC, kc = std::min(kKC, g.k - k0);
      const bool add = g.accumulate || s > 0;
      const float* a = g.a + k0 * g.a_cs + i0 * g.a_rs;
      std::size_t a_rs = g.a_rs, a_cs = g.a_cs, a_panel = kMR * g.a_rs;
      if (pack_a) {
        GemmPackA(g, i0, mc, k0, kc, ap);
        a = ap, a_rs = 1, a_cs = kMR, a_panel = kc * kMR;
      }
      if (mc == 1) {  // one row: up to 4 panels per pass (GemmMicroRow)
        const std::size_t bk = b_in_place ? g.b_rs : nr, pstride = b_in_place ? nr : kc * nr;
        for (std::size_t p = p0; p < p1; p += 4) {
          const std::size_t np = std::min<std::size_t>(4, p1 - p), j0 = p * nr;
          const std::size_t ncols = std::min(np * nr, g.n - j0);
          const float* b = b_in_place ? g.b + k0 * g.b_rs + j0 : bp + k0 * npad + p * kc * nr;
          float* c = g.c + i0 * g.ldc + j0;
          if (np == 4)
            GemmMicroRow<4>(df, kc, a, a_cs, b, bk, pstride, c, add, ncols);
          else if (np == 3)
            GemmMicroRow<3>(df, kc, a, a_cs, b, bk, pstride, c, add, ncols);
          else if (np == 2)
            GemmMicroRow<2>(df, kc, a, a_cs, b, bk, pstride, c, add, ncols);
          else
            GemmMicroRow<1>(df, kc, a, a_cs, b, bk, pstride, c, add, ncols);
        }
        continue;
      }
      for (std::size_t p = p0; p < p1; ++p) {
        const std::size_t j0 = p * nr, ncols = std::min(nr, g.n - j0);
        const float* b = b_in_place ? g.b + k0 * g.b_rs + j0 : bp + k0 * npad + p * kc * nr;
        const std::size_t bk = b_in_place ? g.b_rs : nr;
        for (std::size_t i = 0; i < mc; i += kMR)
          GemmMicro(df, kc, a + (i / kMR) * a_panel, a_rs, a_cs, b, bk, g.c + (i0 + i) * g.ldc + j0,
                    g.ldc, add, std::min(kMR, mc - i), ncols);
      }
    }
  };
  if (g.m * g.n * g.k < kGemmSerialWork) {
    if (!b_in_place)
      for (std::size_t s = 0; s < slices; ++s) pack_slice(s);
    run_block(0, g.m, 0, panels, 0, slices);
    return;
  }
  if (!b_in_place) tbb::parallel_for(std::size_t{0}, slices, pack_slice);
  // Blocks of C: 96 rows x all columns; fewer rows (down to 24), then column halves, until there
  // are >= 8 tasks for two threads. The blocking depends on the shape only (and does not change
  // any C element's summation order anyway).
  std::size_t mc = 16 * kMR, pc = panels;
  auto blocks = [&] { return ((g.m + mc - 1) / mc) * ((panels + pc - 1) / pc); };
  while (blocks() < 8 && (mc > 4 * kMR || pc > 1)) {
    if (mc > 4 * kMR)
      mc /= 2;
    else
      pc = (pc + 1) / 2;
  }
  const std::size_t bm = (g.m + mc - 1) / mc, bn = (panels + pc - 1) / pc;
  // One parallel pass per K slice: its rows of A and B (at most kKC x 384 floats each at the
  // training shapes) stay in L2 while every block consumes them, instead of each block streaming
  // all of K from L3 (dY^T X: 1.1-1.2x at K = 2048, more blocks than threads).
  for (std::size_t s = 0; s < slices; ++s)
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, bm * bn, 1),
        [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
          for (std::size_t blk = range.begin(); blk != range.end(); ++blk) {
            const std::size_t i0 = (blk / bn) * mc, p0 = (blk % bn) * pc;
            run_block(i0, std::min(mc, g.m - i0), p0, std::min(panels, p0 + pc), s, s + 1);
          }
        },
        tbb::simple_partitioner());
}
