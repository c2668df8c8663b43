// FP32 GEMM microkernel and driver, one expansion per Highway target. Textually included by
// kernels-inl.h inside its per-target namespace (no guard of its own: kernels-inl.h's toggle guard
// governs the expansion). Not included directly.
// ---------------------------------------------------------------------------------------------
// FP32 GEMM, BLIS-style: C blocks of kMC x kNC are independent tasks; within a task, for each
// kKC slice of K, A is packed into kMR-row panels and B into NR-column panels (NR = 2 vectors),
// and a kMR x NR register-blocked FMA microkernel runs over them. Every C element is owned by one
// task and summed in a fixed order (K slices in order), so results do not depend on threads.

inline constexpr std::size_t kMR = 6;
inline constexpr std::size_t kKC = 256;

template <class DF>
HWY_INLINE void GemmMicro(DF df, std::size_t kc, const float* HWY_RESTRICT ap,
                          const float* HWY_RESTRICT bp, float* c, std::size_t ldc, bool add,
                          std::size_t mr, std::size_t nr) {
  const std::size_t N = hn::Lanes(df);
  auto c00 = hn::Zero(df), c01 = hn::Zero(df), c10 = hn::Zero(df), c11 = hn::Zero(df);
  auto c20 = hn::Zero(df), c21 = hn::Zero(df), c30 = hn::Zero(df), c31 = hn::Zero(df);
  auto c40 = hn::Zero(df), c41 = hn::Zero(df), c50 = hn::Zero(df), c51 = hn::Zero(df);
  for (std::size_t k = 0; k < kc; ++k) {
    const auto b0 = hn::Load(df, bp + k * 2 * N);
    const auto b1 = hn::Load(df, bp + k * 2 * N + N);
    const float* a = ap + k * kMR;
    auto av = hn::Set(df, a[0]);
    c00 = hn::MulAdd(av, b0, c00);
    c01 = hn::MulAdd(av, b1, c01);
    av = hn::Set(df, a[1]);
    c10 = hn::MulAdd(av, b0, c10);
    c11 = hn::MulAdd(av, b1, c11);
    av = hn::Set(df, a[2]);
    c20 = hn::MulAdd(av, b0, c20);
    c21 = hn::MulAdd(av, b1, c21);
    av = hn::Set(df, a[3]);
    c30 = hn::MulAdd(av, b0, c30);
    c31 = hn::MulAdd(av, b1, c31);
    av = hn::Set(df, a[4]);
    c40 = hn::MulAdd(av, b0, c40);
    c41 = hn::MulAdd(av, b1, c41);
    av = hn::Set(df, a[5]);
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

// A(i, k) for i in [i0, i0 + mc), k in [k0, k0 + kc) -> kMR-row panels, zero-padded.
inline void GemmPackA(const detail::GemmF32Args& g, std::size_t i0, std::size_t mc, std::size_t k0,
                      std::size_t kc, float* HWY_RESTRICT ap) {
  const std::size_t panels = (mc + kMR - 1) / kMR;
  if (g.a_rs == 1) {  // columns of A contiguous (A = dY^T): copy kMR consecutive values per k
    for (std::size_t p = 0; p < panels; ++p) {
      float* dst = ap + p * kc * kMR;
      const std::size_t in = std::min(kMR, mc - p * kMR);
      for (std::size_t k = 0; k < kc; ++k) {
        const float* src = g.a + (k0 + k) * g.a_cs + i0 + p * kMR;
        for (std::size_t ii = 0; ii < kMR; ++ii) dst[k * kMR + ii] = ii < in ? src[ii] : 0.0f;
      }
    }
    return;
  }
  for (std::size_t p = 0; p < panels; ++p) {
    float* dst = ap + p * kc * kMR;
    for (std::size_t ii = 0; ii < kMR; ++ii) {
      const std::size_t i = p * kMR + ii;
      if (i >= mc) {
        for (std::size_t k = 0; k < kc; ++k) dst[k * kMR + ii] = 0.0f;
        continue;
      }
      const float* src = g.a + (i0 + i) * g.a_rs + k0 * g.a_cs;
      for (std::size_t k = 0; k < kc; ++k) dst[k * kMR + ii] = src[k * g.a_cs];
    }
  }
}

// B(k, j) for k in [k0, k0 + kc), j in [j0, j0 + nc) -> nr-column panels, zero-padded.
inline void GemmPackB(const detail::GemmF32Args& g, std::size_t k0, std::size_t kc, std::size_t j0,
                      std::size_t nc, std::size_t nr, float* HWY_RESTRICT bp) {
  const std::size_t panels = (nc + nr - 1) / nr;
  for (std::size_t p = 0; p < panels; ++p) {
    float* dst = bp + p * kc * nr;
    const std::size_t jn = std::min(nr, nc - p * nr);
    if (g.b_cs == 1) {  // rows of B contiguous: copy row by row
      for (std::size_t k = 0; k < kc; ++k) {
        const float* src = g.b + (k0 + k) * g.b_rs + j0 + p * nr;
        for (std::size_t jj = 0; jj < jn; ++jj) dst[k * nr + jj] = src[jj];
        for (std::size_t jj = jn; jj < nr; ++jj) dst[k * nr + jj] = 0.0f;
      }
    } else {  // columns of B contiguous (B = W^T): walk each column
      for (std::size_t jj = 0; jj < nr; ++jj) {
        if (jj >= jn) {
          for (std::size_t k = 0; k < kc; ++k) dst[k * nr + jj] = 0.0f;
          continue;
        }
        const float* src = g.b + k0 * g.b_rs + (j0 + p * nr + jj) * g.b_cs;
        for (std::size_t k = 0; k < kc; ++k) dst[k * nr + jj] = src[k * g.b_rs];
      }
    }
  }
}

HWY_NOINLINE void GemmF32(const detail::GemmF32Args& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    if (!g.accumulate)
      for (std::size_t i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, 0.0f);
    return;
  }
  const hn::ScalableTag<float> df;
  const std::size_t nr = 2 * hn::Lanes(df);
  // Blocks of C: shrink until there are enough tasks to keep two threads busy.
  std::size_t mc = 96, nc = 256;
  auto blocks = [&] { return ((g.m + mc - 1) / mc) * ((g.n + nc - 1) / nc); };
  // Blocks depend on the shape only (never on the thread count), so results are reproducible.
  // Each block repacks its B slice, so keep blocks big: shrink alternately down to 24 x 4 vectors.
  while (blocks() < 8 && (mc > 24 || nc > 2 * nr)) {
    if (mc > 24 && (mc >= nc / 4 || nc <= 2 * nr)) {
      mc /= 2;
    } else {
      nc /= 2;
    }
  }
  mc = std::max<std::size_t>(kMR, mc / kMR * kMR);
  nc = std::max(nr, nc / nr * nr);
  const std::size_t bm = (g.m + mc - 1) / mc, bn = (g.n + nc - 1) / nc;
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, bm * bn, 1),
      [&](const tbb::blocked_range<std::size_t>& range) HWY_ATTR {
        const std::size_t kc_max = std::min(kKC, g.k);
        float* ap = Scratch<float, 0>(((mc + kMR - 1) / kMR) * kMR * kc_max);
        float* bp = Scratch<float, 1>(((nc + nr - 1) / nr) * nr * kc_max);
        for (std::size_t blk = range.begin(); blk != range.end(); ++blk) {
          const std::size_t i0 = (blk / bn) * mc, j0 = (blk % bn) * nc;
          const std::size_t mcb = std::min(mc, g.m - i0), ncb = std::min(nc, g.n - j0);
          for (std::size_t k0 = 0; k0 < g.k; k0 += kKC) {
            const std::size_t kc = std::min(kKC, g.k - k0);
            const bool add = g.accumulate || k0 > 0;
            GemmPackB(g, k0, kc, j0, ncb, nr, bp);
            GemmPackA(g, i0, mcb, k0, kc, ap);
            for (std::size_t jp = 0; jp < ncb; jp += nr) {
              for (std::size_t ip = 0; ip < mcb; ip += kMR) {
                GemmMicro(df, kc, ap + (ip / kMR) * kc * kMR, bp + (jp / nr) * kc * nr,
                          g.c + (i0 + ip) * g.ldc + j0 + jp, g.ldc, add, std::min(kMR, mcb - ip),
                          std::min(nr, ncb - jp));
              }
            }
          }
        }
      },
      tbb::simple_partitioner());
}
