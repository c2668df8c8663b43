// Runtime dispatch: the one translation unit that compiles pquant's SIMD kernels for every Highway
// target. In exactly one .cpp file of a program:
//
//   #define PQUANT_DISPATCH_IMPLEMENTATION
//   #include "pquant/kernels/dispatch.hpp"
//
// Every other file just includes the target-independent headers (pquant/kernels.hpp). The kernels
// then run on the best target the CPU supports (HWY_DYNAMIC_DISPATCH), with no -march flags needed.
// Build this TU with -DHWY_DISABLED_TARGETS=... to drop targets (compile time); see
// docs/kernels.md. Without PQUANT_DISPATCH_IMPLEMENTATION (or with PQUANT_STATIC_DISPATCH) this
// header is empty.
#pragma once

#if defined(PQUANT_DISPATCH_IMPLEMENTATION) && !defined(PQUANT_STATIC_DISPATCH)

#include <cstdint>

#include "pquant/kernels/detail/hwy_config.hpp"  // before any Highway header

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "pquant/kernels/kernels-inl.h"
#include "hwy/foreach_target.h"  // must precede highway.h
#include "hwy/highway.h"
#include "pquant/kernels/backend.hpp"
#include "pquant/kernels/kernels-inl.h"

#if HWY_ONCE
namespace pquant::kernels {
HWY_EXPORT(GemmF32);
HWY_EXPORT(LutTables);
HWY_EXPORT(LutGemv);
HWY_EXPORT(LutGemm);
HWY_EXPORT(TokenLutGemm);
HWY_EXPORT(Int8Gemv);
HWY_EXPORT(Int8Gemm);
HWY_EXPORT(F32Gemv);
HWY_EXPORT(SwigluForward);
HWY_EXPORT(SwigluBackward);
HWY_EXPORT(RmsNormForward);
HWY_EXPORT(RmsNormBackward);
HWY_EXPORT(AdamWUpdate);
HWY_EXPORT(AnyNonFinite);
HWY_EXPORT(Int8AbsMaxQuantize);
HWY_EXPORT(RmsNormQuantize);
HWY_EXPORT(CausalSoftmax);
HWY_EXPORT(CausalSoftmaxBackward);
HWY_EXPORT(CurrentTarget);

namespace detail {
void gemm_f32(const GemmF32Args& args) {
  HWY_DYNAMIC_DISPATCH(GemmF32)(args);
}
void lut_tables(const LutTablesArgs& args) {
  HWY_DYNAMIC_DISPATCH(LutTables)(args);
}
void lut_gemv(const LutGemvArgs& args) {
  HWY_DYNAMIC_DISPATCH(LutGemv)(args);
}
void lut_gemm(const LutGemmArgs& args) {
  HWY_DYNAMIC_DISPATCH(LutGemm)(args);
}
void token_lut_gemm(const TokenLutGemmArgs& args) {
  HWY_DYNAMIC_DISPATCH(TokenLutGemm)(args);
}
void int8_gemv(const Int8GemvArgs& args) {
  HWY_DYNAMIC_DISPATCH(Int8Gemv)(args);
}
void int8_gemm(const Int8GemmArgs& args) {
  HWY_DYNAMIC_DISPATCH(Int8Gemm)(args);
}
void f32_gemv(const F32GemvArgs& args) {
  HWY_DYNAMIC_DISPATCH(F32Gemv)(args);
}
void swiglu_forward(const SwigluForwardArgs& args) {
  HWY_DYNAMIC_DISPATCH(SwigluForward)(args);
}
void swiglu_backward(const SwigluBackwardArgs& args) {
  HWY_DYNAMIC_DISPATCH(SwigluBackward)(args);
}
void rmsnorm_forward(const RmsNormForwardArgs& args) {
  HWY_DYNAMIC_DISPATCH(RmsNormForward)(args);
}
void rmsnorm_backward(const RmsNormBackwardArgs& args) {
  HWY_DYNAMIC_DISPATCH(RmsNormBackward)(args);
}
void adamw_update(const AdamWArgs& args) {
  HWY_DYNAMIC_DISPATCH(AdamWUpdate)(args);
}
bool any_non_finite(const NonFiniteArgs& args) {
  return HWY_DYNAMIC_DISPATCH(AnyNonFinite)(args);
}
bool int8_absmax_quantize(const Int8AbsMaxArgs& args) {
  return HWY_DYNAMIC_DISPATCH(Int8AbsMaxQuantize)(args);
}
bool rmsnorm_quantize(const RmsNormQuantizeArgs& args) {
  return HWY_DYNAMIC_DISPATCH(RmsNormQuantize)(args);
}
void causal_softmax(const CausalSoftmaxArgs& args) {
  HWY_DYNAMIC_DISPATCH(CausalSoftmax)(args);
}
void causal_softmax_backward(const CausalSoftmaxBackwardArgs& args) {
  HWY_DYNAMIC_DISPATCH(CausalSoftmaxBackward)(args);
}
std::int64_t compiled_targets() {
  return HWY_TARGETS;
}
std::int64_t current_target() {
  return HWY_DYNAMIC_DISPATCH(CurrentTarget)();
}
}  // namespace detail
}  // namespace pquant::kernels
#endif  // HWY_ONCE

#endif  // PQUANT_DISPATCH_IMPLEMENTATION
