// Highway configuration shared by every translation unit that compiles pquant's kernels (the
// runtime-dispatch unit, static-dispatch builds) or asks which targets exist. Included before any
// Highway header of pquant; it has no effect when the program included Highway first.
#pragma once

// Highway 1.0.x compiles its AVX3_DL target (AVX-512 VNNI, VBMI, VBMI2, VPOPCNTDQ, BITALG) only
// when HWY_WANT_AVX3_DL is defined before its first header (1.0.3 also stops with #error when the
// compiler flags enable those extensions without it). pquant's kernels use them (vpdpbusd), so the
// target is always compiled; Highway 1.1 and later compile it by default.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL 1
#endif
