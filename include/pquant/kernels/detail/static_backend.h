// PQUANT_STATIC_DISPATCH: the kernels compiled inline for the one target the compiler flags
// allow (HWY_STATIC_TARGET, e.g. AVX2 with -march=x86-64-v3 -maes -mpclmul). Included by
// backend.hpp; no dispatch translation unit is needed.
#pragma once

#include <cstdint>

#include "pquant/kernels/detail/hwy_config.hpp"  // before any Highway header
#include "hwy/highway.h"
#include "pquant/kernels/kernels-inl.h"

namespace pquant::kernels::detail {
inline void gemm_f32(const GemmF32Args& args) {
  HWY_NAMESPACE::GemmF32(args);
}
inline void lut_tables(const LutTablesArgs& args) {
  HWY_NAMESPACE::LutTables(args);
}
inline void lut_gemv(const LutGemvArgs& args) {
  HWY_NAMESPACE::LutGemv(args);
}
inline void lut_gemm(const LutGemmArgs& args) {
  HWY_NAMESPACE::LutGemm(args);
}
inline void token_lut_gemm(const TokenLutGemmArgs& args) {
  HWY_NAMESPACE::TokenLutGemm(args);
}
inline void int8_gemv(const Int8GemvArgs& args) {
  HWY_NAMESPACE::Int8Gemv(args);
}
inline void int8_gemm(const Int8GemmArgs& args) {
  HWY_NAMESPACE::Int8Gemm(args);
}
inline void f32_gemv(const F32GemvArgs& args) {
  HWY_NAMESPACE::F32Gemv(args);
}
inline void swiglu_forward(const SwigluForwardArgs& args) {
  HWY_NAMESPACE::SwigluForward(args);
}
inline void swiglu_backward(const SwigluBackwardArgs& args) {
  HWY_NAMESPACE::SwigluBackward(args);
}
inline void rmsnorm_forward(const RmsNormForwardArgs& args) {
  HWY_NAMESPACE::RmsNormForward(args);
}
inline void rmsnorm_backward(const RmsNormBackwardArgs& args) {
  HWY_NAMESPACE::RmsNormBackward(args);
}
inline void adamw_update(const AdamWArgs& args) {
  HWY_NAMESPACE::AdamWUpdate(args);
}
inline bool any_non_finite(const NonFiniteArgs& args) {
  return HWY_NAMESPACE::AnyNonFinite(args);
}
inline bool int8_absmax_quantize(const Int8AbsMaxArgs& args) {
  return HWY_NAMESPACE::Int8AbsMaxQuantize(args);
}
inline bool rmsnorm_quantize(const RmsNormQuantizeArgs& args) {
  return HWY_NAMESPACE::RmsNormQuantize(args);
}
inline void causal_softmax(const CausalSoftmaxArgs& args) {
  HWY_NAMESPACE::CausalSoftmax(args);
}
inline void causal_softmax_backward(const CausalSoftmaxBackwardArgs& args) {
  HWY_NAMESPACE::CausalSoftmaxBackward(args);
}
inline std::int64_t compiled_targets() {
  return HWY_STATIC_TARGET;
}
inline std::int64_t current_target() {
  return HWY_STATIC_TARGET;
}
}  // namespace pquant::kernels::detail
