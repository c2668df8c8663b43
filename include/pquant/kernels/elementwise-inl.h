// Element-wise kernels of a training step (SwiGLU, RMSNorm, AdamW, the finiteness check, the
// attention's causal softmax rows), one expansion per Highway target. Textually included by
// kernels-inl.h inside its per-target namespace (no guard of its own: kernels-inl.h's toggle guard
// governs the expansion). Not included directly. Argument structs and the exact arithmetic:
// backend.hpp; docs/training.md.
//
// Every kernel performs the scalar reference's operations in the same order, each rounded once
// (no fused multiply-add), so the results are the same on every target and equal to the scalar
// code (layers/fast_exp.hpp, activations.hpp, rms_norm.hpp, adamw.hpp) built without FMA
// contraction. Row sums keep the reference's order (Sum16Lanes: sum_in_16_lanes' 16 lanes). Tails
// shorter than a vector are loaded zero-padded and stored partially, so they take the same path.
// ---------------------------------------------------------------------------------------------

// A product that the compiler must not fuse with the following add (GCC contracts a * b + c into
// an FMA on FMA targets even across intrinsics): an empty asm makes the product opaque. Targets
// without FMA need nothing.
template <class V>
HWY_INLINE V Rounded(V v) {
#if (HWY_COMPILER_GCC || HWY_COMPILER_CLANG) && HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#if HWY_TARGET <= HWY_AVX3
  asm("" : "+v"(v.raw));
#else
  asm("" : "+x"(v.raw));
#endif
#elif (HWY_COMPILER_GCC || HWY_COMPILER_CLANG) && HWY_ARCH_ARM && HWY_TARGET == HWY_NEON
  asm("" : "+w"(v.raw));
#endif
  return v;
}

// fast_exp (layers/fast_exp.hpp) lane-wise: the same clamp on the bit pattern, Cody-Waite
// reduction and Cephes polynomial, operation for operation.
template <class DF, class VF>
HWY_INLINE VF FastExp(DF df, VF x) {
  const hn::RebindToSigned<DF> di;
  const auto k_lo = hn::Set(di, static_cast<std::int32_t>(0xC2AE999Au));  // bits of -87.3f
  const auto k_hi = hn::Set(di, static_cast<std::int32_t>(0x42B00000));   // bits of 88.0f
  auto i = hn::BitCast(di, x);
  const auto below = hn::And(hn::Lt(i, hn::Zero(di)), hn::Gt(i, k_lo));
  const auto above = hn::Gt(i, k_hi);
  i = hn::IfThenElse(below, k_lo, hn::IfThenElse(above, k_hi, i));
  x = hn::BitCast(df, i);
  const auto magic = hn::Set(df, 12582912.0f);
  const auto n =
      hn::Sub(hn::Add(Rounded(hn::Mul(x, hn::Set(df, 1.44269504088896341f))), magic), magic);
  const auto r = hn::Sub(hn::Sub(x, Rounded(hn::Mul(n, hn::Set(df, 0.693359375f)))),
                         Rounded(hn::Mul(n, hn::Set(df, -2.12194440e-4f))));
  auto p = hn::Set(df, 1.9875691500e-4f);
  p = hn::Add(Rounded(hn::Mul(p, r)), hn::Set(df, 1.3981999507e-3f));
  p = hn::Add(Rounded(hn::Mul(p, r)), hn::Set(df, 8.3334519073e-3f));
  p = hn::Add(Rounded(hn::Mul(p, r)), hn::Set(df, 4.1665795894e-2f));
  p = hn::Add(Rounded(hn::Mul(p, r)), hn::Set(df, 1.6666665459e-1f));
  p = hn::Add(Rounded(hn::Mul(p, r)), hn::Set(df, 5.0000001201e-1f));
  const auto e = hn::Add(hn::Add(Rounded(hn::Mul(hn::Mul(p, r), r)), r), hn::Set(df, 1.0f));
  const auto bits = hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  return Rounded(hn::Mul(e, hn::BitCast(df, bits)));
}

// fast_sigmoid lane-wise: e = exp(-|v|), then 1 / (1 + e) where the sign bit of v is clear and
// e * (1 / (1 + e)) where it is set, exactly as the scalar function.
template <class DF, class VF>
HWY_INLINE VF FastSigmoid(DF df, VF v) {
  const hn::RebindToSigned<DF> di;
  const auto one = hn::Set(df, 1.0f);
  const auto e = FastExp(df, hn::Neg(hn::Abs(v)));
  const auto pos = hn::Div(one, hn::Add(one, e));
  const auto neg = hn::Mul(e, pos);
  const auto negative = hn::RebindMask(df, hn::Lt(hn::BitCast(di, v), hn::Zero(di)));
  return Rounded(hn::IfThenElse(negative, neg, pos));
}

// body(c, count) over a row of `cols` floats: count = N for whole vectors, then once with the
// tail count (< N) when cols % N != 0 (the body loads it zero-padded and stores `count` lanes).
template <class DF, class Body>
HWY_INLINE void ForRowVectors(DF df, std::size_t cols, Body&& body) {
  const std::size_t N = hn::Lanes(df);
  std::size_t c = 0;
  for (; c + N <= cols; c += N) body(c, N);
  if (c < cols) body(c, cols - c);
}

// Loads `count` (<= N) floats at p, zero-padded to a full vector. AVX2 and AVX-512 have masked
// loads and stores that never touch the masked-off memory; other targets go through a buffer.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadPadded(DF df, const float* p, std::size_t count) {
  if constexpr (hn::MaxLanes(DF()) == 1) return hn::LoadU(df, p);  // count is 1
  if (count == hn::Lanes(df)) return hn::LoadU(df, p);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  return hn::MaskedLoad(hn::FirstN(df, count), df, p);
#else
  HWY_ALIGN float buf[hn::MaxLanes(df)] = {};
  std::memcpy(buf, p, count * sizeof(float));
  return hn::Load(df, buf);
#endif
}

// Stores the first `count` (<= N) lanes of v at p (the memory past them is not written).
template <class DF>
HWY_INLINE void StorePartial(DF df, hn::Vec<DF> v, float* p, std::size_t count) {
  if constexpr (hn::MaxLanes(DF()) == 1) return hn::StoreU(v, df, p);  // count is 1
  if (count == hn::Lanes(df)) return hn::StoreU(v, df, p);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  hn::BlendedStore(v, hn::FirstN(df, count), df, p);
#else
  HWY_ALIGN float buf[hn::MaxLanes(df)];
  hn::Store(v, df, buf);
  std::memcpy(p, buf, count * sizeof(float));
#endif
}

HWY_NOINLINE void SwigluForward(const detail::SwigluForwardArgs& a) {
  const hn::ScalableTag<float> df;
  for (std::size_t i = 0; i < a.rows; ++i) {
    const float* g_row = a.gate + i * a.ldg;
    const float* u_row = a.up + i * a.ldu;
    float* h_row = a.h + i * a.ldh;
    ForRowVectors(df, a.cols, [&](std::size_t c, std::size_t count) HWY_ATTR {
      const auto g = LoadPadded(df, g_row + c, count);
      const auto u = LoadPadded(df, u_row + c, count);
      const auto h = hn::Mul(hn::Mul(g, FastSigmoid(df, g)), u);
      StorePartial(df, h, h_row + c, count);
    });
  }
}

HWY_NOINLINE void SwigluBackward(const detail::SwigluBackwardArgs& a) {
  const hn::ScalableTag<float> df;
  const auto one = hn::Set(df, 1.0f);
  for (std::size_t i = 0; i < a.rows; ++i) {
    const float* dh_row = a.dh + i * a.ldd;
    const float* g_row = a.gate + i * a.ldg;
    const float* u_row = a.up + i * a.ldu;
    float* dg_row = a.dgate + i * a.lddg;
    float* du_row = a.dup + i * a.lddu;
    ForRowVectors(df, a.cols, [&](std::size_t c, std::size_t count) HWY_ATTR {
      const auto dh = LoadPadded(df, dh_row + c, count);
      const auto g = LoadPadded(df, g_row + c, count);
      const auto u = LoadPadded(df, u_row + c, count);
      const auto s = FastSigmoid(df, g);
      const auto du = hn::Mul(hn::Mul(dh, g), s);
      const auto slope = hn::Add(one, Rounded(hn::Mul(g, hn::Sub(one, s))));
      const auto dg = hn::Mul(hn::Mul(hn::Mul(dh, u), s), slope);
      StorePartial(df, du, du_row + c, count);
      StorePartial(df, dg, dg_row + c, count);
    });
  }
}

// sum_in_16_lanes (layers/rms_norm.hpp) of the terms of columns [0, cols): term c goes to lane
// c % 16, lanes are 16 / N vectors of a 16-lane-capped tag (independent chains, so one row is not
// a latency-bound chain), then the halves are added pairwise. term(d, c, count) returns the terms
// of columns [c, c + count) as a vector of d, zero in lanes >= count; 1- and 2-lane targets (no
// FMA to avoid there) take scalar(c), the reference's loop.
template <class VTerm, class STerm>
HWY_INLINE float Sum16Lanes(std::size_t cols, VTerm&& term, STerm&& scalar) {
  const hn::CappedTag<float, 16> d;
  const std::size_t N = hn::Lanes(d);
  HWY_ALIGN float lane[16] = {};
  // Rounded: the terms' last product is not fused into the accumulating add.
  auto at = [&](std::size_t c) HWY_ATTR { return Rounded(term(d, c, std::min(N, cols - c))); };
  if (N >= 4 && 16 % N == 0) {
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (std::size_t c0 = 0; c0 < cols; c0 += 16) {
      a0 = hn::Add(a0, at(c0));
      if (N <= 8 && c0 + N < cols) a1 = hn::Add(a1, at(c0 + N));
      if (N == 4 && c0 + 2 * N < cols) a2 = hn::Add(a2, at(c0 + 2 * N));
      if (N == 4 && c0 + 3 * N < cols) a3 = hn::Add(a3, at(c0 + 3 * N));
    }
    hn::Store(a0, d, lane);
    if (N <= 8) hn::Store(a1, d, lane + N);
    if (N == 4) {
      hn::Store(a2, d, lane + 2 * N);
      hn::Store(a3, d, lane + 3 * N);
    }
  } else {
    for (std::size_t c = 0; c < cols; ++c) lane[c % 16] += scalar(c);
  }
  for (std::size_t w = 8; w > 0; w /= 2)
    for (std::size_t i = 0; i < w; ++i) lane[i] += lane[i + w];
  return lane[0];
}

// A row's sum of squares (sum_of_squares).
HWY_INLINE float SumOfSquares(const float* x, std::size_t cols) {
  return Sum16Lanes(
      cols,
      [x](auto d, std::size_t c, std::size_t count) HWY_ATTR {
        const auto v = LoadPadded(d, x + c, count);
        return hn::Mul(v, v);
      },
      [x](std::size_t c) { return x[c] * x[c]; });
}

// RMSNorm of rows [i0, i0 + count), count <= 8 (RmsNormForwardArgs' arithmetic).
HWY_INLINE void RmsNormBlock(const float* x, std::size_t ldx, const float* gain, float eps,
                             float* y, std::size_t ldy, float* inv_rms, std::size_t i0,
                             std::size_t count, std::size_t cols) {
  const hn::ScalableTag<float> df;
  float ss[8];
  for (std::size_t j = 0; j < count; ++j) ss[j] = SumOfSquares(x + (i0 + j) * ldx, cols);
  for (std::size_t j = 0; j < count; ++j) {
    const std::size_t i = i0 + j;
    const float* x_row = x + i * ldx;
    float* y_row = y + i * ldy;
    const float r = 1.0f / std::sqrt(ss[j] / static_cast<float>(cols) + eps);
    inv_rms[i] = r;
    const auto vr = hn::Set(df, r);
    ForRowVectors(df, cols, [&](std::size_t c, std::size_t n) HWY_ATTR {
      const auto v =
          hn::Mul(hn::Mul(LoadPadded(df, x_row + c, n), vr), LoadPadded(df, gain + c, n));
      StorePartial(df, v, y_row + c, n);
    });
  }
}

HWY_NOINLINE void RmsNormForward(const detail::RmsNormForwardArgs& a) {
  for (std::size_t i0 = 0; i0 < a.rows; i0 += 8)
    RmsNormBlock(a.x, a.ldx, a.gain, a.eps, a.y, a.ldy, a.inv_rms, i0,
                 std::min<std::size_t>(8, a.rows - i0), a.cols);
}

HWY_NOINLINE void RmsNormBackward(const detail::RmsNormBackwardArgs& a) {
  const hn::ScalableTag<float> df;
  for (std::size_t i = 0; i < a.rows; ++i) {
    const float* dy_row = a.dy + i * a.lddy;
    const float* x_row = a.x + i * a.ldx;
    const float r = a.inv_rms[i];
    // The row's gain gradient (rows in order for every column, as the reference).
    const auto vr = hn::Set(df, r);
    ForRowVectors(df, a.cols, [&](std::size_t c, std::size_t n) HWY_ATTR {
      const auto term = Rounded(
          hn::Mul(hn::Mul(LoadPadded(df, dy_row + c, n), LoadPadded(df, x_row + c, n)), vr));
      StorePartial(df, hn::Add(LoadPadded(df, a.dgain + c, n), term), a.dgain + c, n);
    });
    if (a.dx == nullptr) continue;
    const float dot = Sum16Lanes(
        a.cols,
        [&](auto d, std::size_t c, std::size_t n) HWY_ATTR {
          return hn::Mul(hn::Mul(LoadPadded(d, a.gain + c, n), LoadPadded(d, dy_row + c, n)),
                         LoadPadded(d, x_row + c, n));
        },
        [&](std::size_t c) { return a.gain[c] * dy_row[c] * x_row[c]; });
    float* dx_row = a.dx + i * a.lddx;
    const float k = r * r * r * dot / static_cast<float>(a.cols);
    const auto vk = hn::Set(df, k);
    ForRowVectors(df, a.cols, [&](std::size_t c, std::size_t n) HWY_ATTR {
      const auto first =
          hn::Mul(hn::Mul(vr, LoadPadded(df, a.gain + c, n)), LoadPadded(df, dy_row + c, n));
      const auto second = hn::Mul(vk, LoadPadded(df, x_row + c, n));
      StorePartial(df, hn::Sub(Rounded(first), Rounded(second)), dx_row + c, n);
    });
  }
}

HWY_NOINLINE void AdamWUpdate(const detail::AdamWArgs& a) {
  const hn::ScalableTag<float> df;
  const auto b1 = hn::Set(df, a.b1), b2 = hn::Set(df, a.b2);
  const auto c1 = hn::Set(df, 1.0f - a.b1), c2 = hn::Set(df, 1.0f - a.b2);
  const auto eps = hn::Set(df, a.eps), step = hn::Set(df, a.step_size);
  const auto inv_sqrt_bc2 = hn::Set(df, a.inv_sqrt_bc2), decay = hn::Set(df, a.decay);
  ForRowVectors(df, a.n, [&](std::size_t i, std::size_t count) HWY_ATTR {
    const auto g = LoadPadded(df, a.g + i, count);
    const auto m =
        hn::Add(Rounded(hn::Mul(b1, LoadPadded(df, a.m + i, count))), Rounded(hn::Mul(c1, g)));
    const auto v = hn::Add(Rounded(hn::Mul(b2, LoadPadded(df, a.v + i, count))),
                           Rounded(hn::Mul(hn::Mul(c2, g), g)));
    const auto denom = hn::Add(Rounded(hn::Mul(hn::Sqrt(v), inv_sqrt_bc2)), eps);
    const auto p = hn::Sub(Rounded(hn::Mul(LoadPadded(df, a.p + i, count), decay)),
                           Rounded(hn::Mul(step, hn::Div(m, denom))));
    StorePartial(df, m, a.m + i, count);
    StorePartial(df, v, a.v + i, count);
    StorePartial(df, p, a.p + i, count);
  });
}

HWY_NOINLINE bool AnyNonFinite(const detail::NonFiniteArgs& a) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const auto exponent = hn::Set(du, 0x7f800000u);
  auto bad = hn::Zero(du);
  for (std::size_t i = 0; i < a.rows; ++i) {
    const float* row = a.x + i * a.ld;
    ForRowVectors(df, a.cols, [&](std::size_t c, std::size_t count) HWY_ATTR {
      const auto e = hn::And(hn::BitCast(du, LoadPadded(df, row + c, count)), exponent);
      bad = hn::Or(bad, hn::VecFromMask(du, hn::Eq(e, exponent)));
    });
  }
  return !hn::AllFalse(du, hn::MaskFromVec(bad));
}

// One row of Int8AbsMaxArgs: false (nothing written) when x holds a NaN or +-Inf.
HWY_INLINE bool QuantizeRow(const float* x, std::size_t cols, std::int8_t* q, float* gain,
                            float* xq) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<std::int8_t, decltype(di)> dq;
  const std::size_t N = hn::Lanes(df);
  const auto exponent = hn::Set(du, 0x7f800000u);
  const auto lo = hn::Set(df, -128.0f), hi = hn::Set(df, 127.0f);
  const auto round = hn::Set(df, 12582912.0f);
  auto absmax = hn::Zero(df);
  auto bad = hn::Zero(du);
  ForRowVectors(df, cols, [&](std::size_t c, std::size_t count) HWY_ATTR {
    const auto v = hn::Abs(LoadPadded(df, x + c, count));
    bad = hn::Or(bad, hn::VecFromMask(du, hn::Eq(hn::And(hn::BitCast(du, v), exponent), exponent)));
    absmax = hn::Max(absmax, v);
  });
  if (!hn::AllFalse(du, hn::MaskFromVec(bad))) return false;
  float g = 127.0f / std::fmax(hn::GetLane(hn::MaxOfLanes(df, absmax)), 1e-5f);
  if (std::isinf(127.0f / g)) g = std::nextafter(g, std::numeric_limits<float>::infinity());
  *gain = g;
  const auto vg = hn::Set(df, g);
  ForRowVectors(df, cols, [&](std::size_t c, std::size_t count) HWY_ATTR {
    const auto v = hn::Min(hn::Max(hn::Mul(LoadPadded(df, x + c, count), vg), lo), hi);
    const auto qi = hn::ConvertTo(di, hn::Sub(hn::Add(v, round), round));  // integral: exact
    const auto q8 = hn::DemoteTo(dq, qi);
    // dq has df's lanes; MaxLanes(dq) is not an upper bound of them everywhere (Highway 1.0.3
    // gives 1 on SVE2_128, where Lanes(dq) is 4), so the sizes come from df.
    if constexpr (hn::MaxLanes(df) == 1) {
      hn::StoreU(q8, dq, q + c);  // count is 1
    } else if (count == N) {
      hn::StoreU(q8, dq, q + c);
    } else {
      HWY_ALIGN std::int8_t buf[hn::MaxLanes(df)];
      hn::Store(q8, dq, buf);
      std::memcpy(q + c, buf, count);
    }
    if (xq != nullptr) StorePartial(df, hn::Div(hn::ConvertTo(df, qi), vg), xq + c, count);
  });
  return true;
}

// Int8AbsMaxPerToken::quantize (quantizers/activation_quantizer.hpp) per element: the absmax (a
// max: any order gives the same value), the gain in scalar code, then clamp, round half to even by
// adding and subtracting 1.5 * 2^23, and q / gain with an IEEE division.
HWY_NOINLINE bool Int8AbsMaxQuantize(const detail::Int8AbsMaxArgs& a) {
  for (std::size_t t = 0; t < a.rows; ++t)
    if (!QuantizeRow(a.x + t * a.ldx, a.cols, a.q + t * a.ldq, a.gain + t,
                     a.xq != nullptr ? a.xq + t * a.ldxq : nullptr))
      return false;
  return true;
}

// Residual add, RMSNorm and quantization per block of 8 rows, each step on rows its previous step
// just wrote (in cache), instead of three passes over the whole matrix.
HWY_NOINLINE bool RmsNormQuantize(const detail::RmsNormQuantizeArgs& a) {
  const hn::ScalableTag<float> df;
  for (std::size_t i0 = 0; i0 < a.rows; i0 += 8) {
    const std::size_t count = std::min<std::size_t>(8, a.rows - i0);
    if (a.res != nullptr)
      for (std::size_t i = i0; i < i0 + count; ++i) {
        float* x_row = a.x + i * a.ldx;
        const float* r_row = a.res + i * a.ldr;
        ForRowVectors(df, a.cols, [&](std::size_t c, std::size_t n) HWY_ATTR {
          StorePartial(df, hn::Add(LoadPadded(df, x_row + c, n), LoadPadded(df, r_row + c, n)),
                       x_row + c, n);
        });
      }
    if (a.gain != nullptr)
      RmsNormBlock(a.x, a.ldx, a.gain, a.eps, a.y, a.ldy, a.inv_rms, i0, count, a.cols);
    if (a.q == nullptr) continue;
    const float* src = a.gain != nullptr ? a.y : a.x;
    const std::size_t lds = a.gain != nullptr ? a.ldy : a.ldx;
    for (std::size_t i = i0; i < i0 + count; ++i)
      if (!QuantizeRow(src + i * lds, a.cols, a.q + i * a.ldq, a.qgain + i,
                       a.xq != nullptr ? a.xq + i * a.ldxq : nullptr)) {
        // The remaining rows' norms, as documented (every row of x, y, inv_rms written).
        for (std::size_t j0 = i0 + 8; j0 < a.rows; j0 += 8) {
          const std::size_t n = std::min<std::size_t>(8, a.rows - j0);
          if (a.res != nullptr)
            for (std::size_t j = j0; j < j0 + n; ++j)
              for (std::size_t c = 0; c < a.cols; ++c) a.x[j * a.ldx + c] += a.res[j * a.ldr + c];
          if (a.gain != nullptr)
            RmsNormBlock(a.x, a.ldx, a.gain, a.eps, a.y, a.ldy, a.inv_rms, j0, n, a.cols);
        }
        return false;
      }
  }
  return true;
}

// Causal softmax rows: causal_softmax_row_f32 (layers/attention.hpp) operation for operation, in
// vectors of up to 16 lanes. The sum's 8 lanes (lane j adds s = j mod 8 in s order) are the two
// halves of each 16-lane vector added in turn when the target has 16 lanes, one vector of 8 on
// 256-bit targets, and 8 / N vectors on narrower ones (a small array: SVE's sizeless vectors
// cannot form arrays).
HWY_NOINLINE void CausalSoftmax(const detail::CausalSoftmaxArgs& a) {
  const hn::CappedTag<float, 16> d;
  const hn::RebindToSigned<decltype(d)> di;
  const std::size_t N = hn::Lanes(d);
  HWY_DASSERT(N == 16 || 8 % N == 0);
  const auto scale = hn::Set(d, a.scale);
  const auto magnitude = hn::Set(di, 0x7fffffff);
  for (std::size_t i = 0; i < a.rows; ++i) {
    float* row = a.p + i * a.ld;
    const std::size_t n = a.first + i + 1;
    // Keys [n, seq) belong to the row and are zeroed at the end: a vector that starts before n
    // is read and written whole when it fits in the row (its lanes >= n are masked out of the max
    // and the sum), so only a row's last vector may need the padded path.
    auto load = [&](std::size_t c, std::size_t count) HWY_ATTR {
      return c + N <= a.seq ? hn::LoadU(d, row + c) : LoadPadded(d, row + c, count);
    };
    auto store = [&](hn::Vec<decltype(d)> v, std::size_t c, std::size_t count) HWY_ATTR {
      if (c + N <= a.seq)
        hn::StoreU(v, d, row + c);
      else
        StorePartial(d, v, row + c, count);
    };
    // v = p * scale and the max of the order-preserving keys (bits ^ ((bits >> 31) & 0x7fffffff)).
    auto best = hn::Set(di, std::numeric_limits<std::int32_t>::min());
    ForRowVectors(d, n, [&](std::size_t c, std::size_t count) HWY_ATTR {
      const auto v = hn::Mul(load(c, count), scale);
      store(v, c, count);
      const auto bits = hn::BitCast(di, v);
      const auto key = hn::Xor(bits, hn::And(hn::ShiftRight<31>(bits), magnitude));
      best = hn::IfThenElse(hn::FirstN(di, count), hn::Max(best, key), best);
    });
    const std::int32_t key = hn::GetLane(hn::MaxOfLanes(di, best));
    const float mx = std::bit_cast<float>(key ^ ((key >> 31) & 0x7fffffff));
    const auto vmx = hn::Set(d, mx);
    // e = fast_exp(v - mx), masked to the row, summed into the 8 lanes.
    auto exp_at = [&](std::size_t c, std::size_t count) HWY_ATTR {
      const auto e = FastExp(d, hn::Sub(load(c, count), vmx));
      store(e, c, count);
      return hn::IfThenElseZero(hn::FirstN(d, count), e);
    };
    HWY_ALIGN float lane[16] = {};
    bool summed = false;
#if HWY_TARGET != HWY_SCALAR  // (no halves of a 1-lane vector)
    if constexpr (hn::MaxLanes(d) >= 16) {
      if (N == 16) {
        const hn::Half<decltype(d)> dh;
        auto sum = hn::Zero(dh);
        for (std::size_t c = 0; c < n; c += 16) {
          const std::size_t count = std::min<std::size_t>(16, n - c);
          const auto e = exp_at(c, count);
          sum = hn::Add(sum, hn::LowerHalf(dh, e));
          if (count > 8) sum = hn::Add(sum, hn::UpperHalf(dh, e));
        }
        hn::Store(sum, dh, lane);
        summed = true;
      }
    }
#endif
    if (!summed)
      for (std::size_t s = 0; s < n; s += 8)
        for (std::size_t j = 0; j < 8 && s + j < n; j += N) {
          const std::size_t at = s + j;
          hn::StoreU(hn::Add(hn::LoadU(d, lane + j), exp_at(at, std::min(N, n - at))), d,
                     lane + j);
        }
    const float z =
        ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    const auto inv = hn::Set(d, 1.0f / z);
    ForRowVectors(d, n, [&](std::size_t c, std::size_t count) HWY_ATTR {
      store(hn::Mul(load(c, count), inv), c, count);
    });
    std::memset(row + n, 0, (a.seq - n) * sizeof(float));
  }
}

// Its backward: the row sum in sum_in_16_lanes' order (s order into 16 lanes), then the
// element-wise dS; causal_softmax_backward_row_f32 operation for operation.
HWY_NOINLINE void CausalSoftmaxBackward(const detail::CausalSoftmaxBackwardArgs& a) {
  const hn::ScalableTag<float> df;
  const auto scale = hn::Set(df, a.scale);
  for (std::size_t i = 0; i < a.rows; ++i) {
    const std::size_t n = a.first + i + 1;  // this row's length
    float* ds_row = a.ds + i * a.ld;
    const float* p_row = a.p + i * a.ld;
    const float total = Sum16Lanes(
        n,
        [&](auto d, std::size_t c, std::size_t m)
            HWY_ATTR { return hn::Mul(LoadPadded(d, ds_row + c, m), LoadPadded(d, p_row + c, m)); },
        [&](std::size_t c) { return ds_row[c] * p_row[c]; });
    const auto sum = hn::Set(df, total);
    ForRowVectors(df, n, [&](std::size_t c, std::size_t m) HWY_ATTR {
      const auto d = hn::Sub(LoadPadded(df, ds_row + c, m), sum);
      StorePartial(df, hn::Mul(hn::Mul(LoadPadded(df, p_row + c, m), d), scale), ds_row + c, m);
    });
    std::memset(ds_row + n, 0, (a.seq - n) * sizeof(float));
  }
}
