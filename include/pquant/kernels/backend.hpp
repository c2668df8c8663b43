// The boundary between pquant's target-independent entry points and the per-target SIMD kernels.
//
// The entry points (gemv.hpp, gemm.hpp) check their arguments and call the functions declared here.
// Who defines them is the user's choice, made once per program (docs/kernels.md):
//   - runtime dispatch (default): exactly one translation unit defines
//   PQUANT_DISPATCH_IMPLEMENTATION
//     and includes "pquant/kernels/dispatch.hpp"; it compiles every kernel for every Highway target
//     and picks the best one the CPU has at run time (pquant's own tests link
//     pquant_dispatch_impl);
//   - static dispatch: define PQUANT_STATIC_DISPATCH for the whole program; the functions become
//     inline and are compiled for the one target the compiler flags allow (HWY_STATIC_TARGET).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(PQUANT_STATIC_DISPATCH)
#define PQUANT_KERNEL_API inline
#else
#define PQUANT_KERNEL_API
#endif

namespace pquant::kernels {

/// The K slice of the FP32 GEMM (gemm_f32-inl.h): every output of a product whose reduction fits
/// one slice is one FMA chain in k order, whatever path reads the operands (callers that rely on
/// that, such as the engine's in-place decode attention, static_assert against it).
inline constexpr std::size_t kGemmF32KSlice = 256;

}  // namespace pquant::kernels

namespace pquant::kernels::detail {

/// C[M x N] (=, or += when accumulate) A[M x K] * B[K x N] with general strides:
/// A(i, k) = a[i * a_rs + k * a_cs], B(k, j) = b[k * b_rs + j * b_cs], C(i, j) = c[i * ldc + j].
struct GemmF32Args {
  const float* a;
  std::size_t a_rs, a_cs;
  const float* b;
  std::size_t b_rs, b_cs;
  float* c;
  std::size_t ldc;
  std::size_t m, n, k;
  bool accumulate;
};

/// The epilogue a GEMV kernel fuses into its parallel loop when y != nullptr, applied to each
/// task's rows as soon as their sums are done: acc = mul * out[r] + offset (modulo 2^32),
/// y[r] = epilogue_value(acc, row_scale[r] (or [0], or 1 when row_scale_size == 0), token_scale,
/// residual ? residual[r] : 0) for r < rows (epilogue.hpp's formula, bit for bit).
struct RowEpilogueArgs {
  float* y = nullptr;
  std::size_t rows = 0;
  std::int32_t mul = 1;
  std::int64_t offset = 0;
  const float* row_scale = nullptr;
  std::size_t row_scale_size = 0;
  float token_scale = 1.0f;
  const float* residual = nullptr;
};

/// out[r] = sum_g (16 TH_g[i] + TL_g[i]), i = index(r, g), for every padded row r < tiles *
/// kLutTile (layout in kernel_weights.hpp; pairs is even). tables: per group g, 16 bytes TL_g then
/// 16 bytes TH_g + 32 (both uint8): the table of a 4-bit group split by activation nibble, x = 16
/// xh + xl with xl = x & 15 in [0, 15] and xh = x >> 4 in [-8, 7]. Callers guarantee 0 <= TL <= 60
/// and -32 <= TH <= 28, so the stored bytes are in [0, 60]: four groups sum exactly in 8 bits
/// (<= 240), are widened into uint16 as TL + 16 (TH + 32) (<= 4080 per four groups, 16 steps <=
/// 65280 <= 65535), into uint32 every kLutGroupsPerBlock groups, and the bias 512 per group is
/// subtracted at the end. The 32-bit sums wrap modulo 2^32: exact whenever the caller's final
/// result fits int32 (K limits in epilogue.hpp).
struct LutGemvArgs {
  const std::uint8_t* index;
  std::size_t tiles, pairs;
  const std::uint8_t* tables;
  std::int32_t* out;
  RowEpilogueArgs ep = {};  // optional, fused into the parallel loop (per tile)
  // Optional scratch of pairs * kLutWideBytesPerPair bytes for the wide tables of targets with
  // 64-entry byte lookups (AVX3_DL), used when `group` (weights per 4-bit index) is 2 or 4, whose
  // codes never straddle bit 6 of a byte (kernels-inl.h, LutWideTables). They split a group's
  // entry into the sums of its codes, so code 0 must add nothing to any entry (true for the sign,
  // ternary and codebook bucket j >= 1 tables).
  std::uint8_t* wide = nullptr;
  std::size_t group = 0;
};
inline constexpr std::size_t kLutWideBytesPerPair = 144;
inline constexpr std::size_t kLutGroupsPerBlock = 64;  // 16 steps * 4080 = 65280 <= 65535
// Groups per pass of a task's tiles over the tables: 4 KiB of tables per token stay in L1, and each
// tile's index stream advances 2 KiB per pass (longer passes measured slower on DRAM-resident
// weights: the four streams of a task are read less evenly).
inline constexpr std::size_t kLutGroupsPerVisit = 2 * kLutGroupsPerBlock;

/// The epilogue of a LUT GEMM over several activation vectors: token i's output row is at
/// y + i * ldy (`rows` values), with LutGemvArgs' epilogue for row_scale, token_scale[i] (or [0]
/// when token_scale_size == 1) and residual + i * ldr (or none when residual is null).
struct BatchEpilogueArgs {
  float* y;
  std::size_t ldy, rows;
  const float* row_scale;
  std::size_t row_scale_size;
  const float* token_scale;
  std::size_t token_scale_size;
  const float* residual;
  std::size_t ldr;
};

/// The LUT GEMV for m activation vectors at once (prefill, QAT): token i's tables start at
/// tables + i * table_stride; its sums go through LutGemvArgs' epilogue with mul, offset[i] and
/// ep's scales and residual for token i.
struct LutGemmArgs {
  const std::uint8_t* index;
  std::size_t tiles, pairs;
  const std::uint8_t* tables;
  std::size_t table_stride, m;
  std::int32_t mul;
  const std::int64_t* offset;
  BatchEpilogueArgs ep;
  // Optional: m * pairs * kLutWideBytesPerPair bytes of scratch for each token's wide tables (token
  // i's at wide + i * pairs * kLutWideBytesPerPair) and the weights per 4-bit index, as in
  // LutGemvArgs.
  std::uint8_t* wide = nullptr;
  std::size_t group = 0;
};

/// The token-major LUT GEMM (prefill, QAT forward with many tokens): Y[M x N] = epilogue(S),
/// S[i][r] = sum_k w(r, k) x[i * ldx + k] exactly, for weights in the LUT layout (kernel_weights.hpp)
/// read one byte at a time: with bits == 1 the byte of (row r, pair p) holds the signs of weights
/// 8p..8p+7 (bit i set: +1, clear: -1), with bits == 2 the ternary codes c of weights 4p..4p+3
/// (weight c - 1). Tokens are taken kTokenLutTokens at a time; per 4-bit group (half a byte) the
/// kernel builds a table of 16 entries, entry n holding the int16 dot products of nibble n's weights
/// with the group's activations of every token of the chunk (|entry| <= 4 * 128 = 512), and a row
/// adds two entries (vectors of all the chunk's tokens) per byte. The 2 * kTokenLutPairsPerBlock
/// entries of a block are added in int16 (<= 32 * 512 = 16384 in magnitude), then widened into
/// int32 (exact within the K limits). The epilogue is LutGemmArgs' with mul = 1 and offset 0.
/// Arguments are checked by the caller.
struct TokenLutGemmArgs {
  const std::uint8_t* index;
  std::size_t tiles, pairs;
  unsigned bits;  // 1 (sign) or 2 (ternary)
  const std::int8_t* x;
  std::size_t ldx, m, k;
  BatchEpilogueArgs ep;
  // Scratch of the caller (not shared with other calls): kTokenLutPairsPerBlock * 8 *
  // kTokenLutTokens int16 (activations), kTokenLutPairsPerBlock * 32 * kTokenLutTokens int16
  // (tables, 32 KiB), tiles * kLutTile * kTokenLutTokens int32 (sums).
  std::int16_t* xt;
  std::int16_t* tables;
  std::int32_t* acc;
};
inline constexpr std::size_t kTokenLutTokens = 32;         // tokens per table entry (int16 lanes)
inline constexpr std::size_t kTokenLutPairsPerBlock = 16;  // 32 * 512 <= 32767
/// gemm_w1a8 / gemm_w2a8 run whole chunks of kTokenLutTokens tokens on the token-major kernel, and a
/// last chunk of at least kTokenLutMinTokens tokens too (padded: its cost is that of a whole chunk,
/// about 30 tokens of the per-token LUT GEMM on AVX3_DL); fewer go through the per-token LUT GEMM.
inline constexpr std::size_t kTokenLutMinTokens = 30;

/// The split tables of a LUT GEMV (layout in LutGemvArgs) for one activation vector: for group
/// g < groups with activations v_i = x[g * group + i] (0 at or past k), i < group <= 4,
///   TL_g[idx] = sum_{t < 4} low(v_{select[16 t + idx]}),  TH_g[idx] = sum_t high(v_{select[...]}),
/// low(v) = v & 15 in [0, 15], high(v) = v >> 4 (arithmetic) in [-8, 7], so v = 16 high + low; a
/// selector byte >= 0x80 selects nothing. Four terms keep TL <= 60 and TH in [-32, 28] (the
/// kernel's bounds); TH is stored + 32. The selectors encode the format: term t of a 1-bit table
/// selects v_t when bit t of idx is set; a ternary code 2 selects its activation twice. Also sum =
/// sum_{k} x[k].
struct LutTablesArgs {
  const std::int8_t* x;
  std::size_t k, group, groups;
  const std::uint8_t* select;   // 4 x 16 selector bytes
  std::uint8_t* tables;         // groups x 32 bytes (TL then TH + 32)
  std::int64_t* sum = nullptr;  // optional
};

/// out[r] = sum_k w[r * stride + k] * x16[k], k < stride (rows zero-padded, x16 zero-padded).
/// When `symmetric` (no weight is -128; the absmax quantizer never produces it), x86 targets use
/// |x| (uint8) x sign(w, x) (int8) pairs (pmaddubsw; |pair sum| <= 2 * 128 * 127 = 32512, no
/// saturation) with x8 and xabs (zero-padded like x16); otherwise weights are widened to int16.
struct Int8GemvArgs {
  const std::int8_t* w;
  std::size_t rows, stride;
  const std::int16_t* x16;
  std::int32_t* out;
  bool symmetric = false;
  const std::int8_t* x8 = nullptr;
  const std::uint8_t* xabs = nullptr;
  RowEpilogueArgs ep = {};  // optional, fused into the parallel loop (per task of rows)
};

/// out[i * ldo + j] = sum_k x[i * ldx + k] * w[j * ldw + k] for i < m, j < n, k < kp (kp a
/// multiple of 32). When `symmetric` (no weight is -128), x86 targets with AVX2 multiply |x|
/// (uint8) by sign(w, x) (int8) with pmaddubsw (|pair| <= 2 * 128 * 127 = 32512, no saturation) and
/// add pairs into int32 with pmaddwd; otherwise values are widened to int16. kp <= kMaxKInt8 keeps
/// the int32 sums exact.
struct Int8GemmArgs {
  const std::int8_t* x;
  std::size_t ldx;
  const std::int8_t* w;
  std::size_t ldw;
  std::size_t m, n, kp;
  std::int32_t* out;
  std::size_t ldo;
  bool symmetric;
};

/// y[r] = sum_k w[r * stride + k] * x[k], k < cols.
struct F32GemvArgs {
  const float* w;
  std::size_t rows, cols, stride;
  const float* x;
  float* y;
};

// Element-wise work of a training step (elementwise-inl.h; entry points in elementwise.hpp). Rows
// are contiguous runs of `cols` floats at the given row strides (ld*, in floats). Each kernel is
// the scalar reference's operation sequence with no fused multiply-add (docs/training.md), so the
// results do not depend on the target and equal the references bit for bit.

/// h = silu(gate) * up = (gate * sigmoid(gate)) * up, sigmoid = fast_sigmoid (layers/fast_exp.hpp).
struct SwigluForwardArgs {
  const float* gate;
  std::size_t ldg;
  const float* up;
  std::size_t ldu;
  float* h;
  std::size_t ldh;
  std::size_t rows, cols;
};

/// With s = sigmoid(g): dup = (dh * g) * s, dgate = ((dh * up) * s) * (1 + g * (1 - s)).
struct SwigluBackwardArgs {
  const float* dh;
  std::size_t ldd;
  const float* gate;
  std::size_t ldg;
  const float* up;
  std::size_t ldu;
  float* dgate;
  std::size_t lddg;
  float* dup;
  std::size_t lddu;
  std::size_t rows, cols;
};

/// Per row: ss = sum of x * x in sum_in_16_lanes' order (layers/rms_norm.hpp: 16 partial sums,
/// term c into c % 16 in increasing c, then added pairwise at distance 8, 4, 2, 1), r = 1 /
/// sqrt(ss / cols + eps), inv_rms[i] = r, y = (x * r) * gain.
struct RmsNormForwardArgs {
  const float* x;
  std::size_t ldx;
  const float* gain;
  float eps;
  float* y;
  std::size_t ldy;
  float* inv_rms;
  std::size_t rows, cols;
};

/// Per row i (in order), r = inv_rms[i]: dgain[c] += (dy * x) * r, and when dx != nullptr,
/// dot = sum of (gain * dy) * x in sum_in_16_lanes' order (layers/rms_norm.hpp),
/// k = (((r * r) * r) * dot) / cols, dx = ((r * gain) * dy) - k * x.
struct RmsNormBackwardArgs {
  const float* dy;
  std::size_t lddy;
  const float* x;
  std::size_t ldx;
  const float* gain;
  const float* inv_rms;
  float* dx;  // may be nullptr
  std::size_t lddx;
  float* dgain;
  std::size_t rows, cols;
};

/// For i < n: m = b1 * m + (1 - b1) * g; v = b2 * v + ((1 - b2) * g) * g;
/// p = p * decay - step_size * (m / (sqrt(v) * inv_sqrt_bc2 + eps)) (training/adamw.hpp).
struct AdamWArgs {
  float* p;
  const float* g;
  float* m;
  float* v;
  std::size_t n;
  float b1, b2, eps, step_size, inv_sqrt_bc2, decay;
};

/// Causal softmax of rows i < rows of p (row stride ld), row i being query t = first + i with keys
/// s <= t (n = t + 1 <= seq): v = p * scale; mx = max v (on order-preserving int keys);
/// e = fast_exp(v - mx); z = 8 lane sums (lane j adds s = j mod 8 in order) combined as
/// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); p = e * (1 / z); p[s] = 0 for n <= s < seq.
/// (layers/attention.hpp, causal_softmax_row_f32, is the scalar reference.)
struct CausalSoftmaxArgs {
  float* p;
  std::size_t ld, first, rows, seq;
  float scale;
};

/// Its backward on the same rows: sum = sum_{s <= t} dp * p in sum_in_16_lanes' order;
/// ds = (p * (dp - sum)) * scale for s <= t, 0 above (ds overwrites dp, stride ld for both).
struct CausalSoftmaxBackwardArgs {
  float* ds;
  const float* p;
  std::size_t ld, first, rows, seq;
  float scale;
};

/// True when some x[i * ld + c] (i < rows, c < cols) is NaN or +-Inf (exponent bits all ones).
struct NonFiniteArgs {
  const float* x;
  std::size_t ld, rows, cols;
};

/// Per-token INT8 absmax quantization, Int8AbsMaxPerToken's arithmetic (quantizers/
/// activation_quantizer.hpp) element for element. Per row t: absmax_t = max_i |x_ti|,
/// gain_t = 127 / max(absmax_t, 1e-5) (one ulp up when 127 / gain_t would overflow),
/// q_ti = clamp(x_ti * gain_t, -128, 127) rounded half to even, and, when xq is not null,
/// xq_ti = q_ti / gain_t. The max is exact in any order and every other step is per element, so
/// every target gives the scalar quantizer's bits. Returns false at the first row holding a NaN
/// or +-Inf (rows before it are written, it and later rows are not).
struct Int8AbsMaxArgs {
  const float* x;
  std::size_t ldx;
  std::int8_t* q;
  std::size_t ldq;
  float* gain;
  float* xq;  // optional
  std::size_t ldxq, rows, cols;
};

/// The input side of a projection in one pass over each block of rows: x += res (when res is
/// not null; one rounded add per element), then y = RMSNorm(x) * gain with RmsNormForwardArgs'
/// arithmetic (when gain is not null; otherwise the quantizer reads x), then Int8AbsMaxArgs'
/// quantization of that into q, qgain and xq (when q is not null; xq optional). Each step's
/// results are those of its own kernel. Returns false at the first row whose quantizer input holds
/// a NaN or +-Inf (x, y and inv_rms of every row are written; q, qgain, xq as Int8AbsMaxArgs).
struct RmsNormQuantizeArgs {
  float* x;
  std::size_t ldx;
  const float* res;  // optional
  std::size_t ldr;
  const float* gain;  // optional
  float eps;
  float* y;
  std::size_t ldy;
  float* inv_rms;
  std::int8_t* q;  // optional
  std::size_t ldq;
  float* qgain;
  float* xq;  // optional
  std::size_t ldxq, rows, cols;
};

PQUANT_KERNEL_API void gemm_f32(const GemmF32Args& args);
PQUANT_KERNEL_API void lut_tables(const LutTablesArgs& args);
PQUANT_KERNEL_API void lut_gemv(const LutGemvArgs& args);
PQUANT_KERNEL_API void lut_gemm(const LutGemmArgs& args);
PQUANT_KERNEL_API void token_lut_gemm(const TokenLutGemmArgs& args);
PQUANT_KERNEL_API void int8_gemv(const Int8GemvArgs& args);
PQUANT_KERNEL_API void int8_gemm(const Int8GemmArgs& args);
PQUANT_KERNEL_API void f32_gemv(const F32GemvArgs& args);
PQUANT_KERNEL_API void swiglu_forward(const SwigluForwardArgs& args);
PQUANT_KERNEL_API void swiglu_backward(const SwigluBackwardArgs& args);
PQUANT_KERNEL_API void rmsnorm_forward(const RmsNormForwardArgs& args);
PQUANT_KERNEL_API void rmsnorm_backward(const RmsNormBackwardArgs& args);
PQUANT_KERNEL_API void adamw_update(const AdamWArgs& args);
PQUANT_KERNEL_API bool any_non_finite(const NonFiniteArgs& args);
PQUANT_KERNEL_API bool int8_absmax_quantize(const Int8AbsMaxArgs& args);
PQUANT_KERNEL_API bool rmsnorm_quantize(const RmsNormQuantizeArgs& args);
PQUANT_KERNEL_API void causal_softmax(const CausalSoftmaxArgs& args);
PQUANT_KERNEL_API void causal_softmax_backward(const CausalSoftmaxBackwardArgs& args);
/// Bitfield of the Highway targets compiled into the kernels (HWY_TARGETS of the dispatch unit).
PQUANT_KERNEL_API std::int64_t compiled_targets();
/// The Highway target the next kernel call will run on.
PQUANT_KERNEL_API std::int64_t current_target();

}  // namespace pquant::kernels::detail

#if defined(PQUANT_STATIC_DISPATCH)
#include "pquant/kernels/detail/static_backend.h"
#endif
