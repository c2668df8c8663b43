// Which SIMD targets the kernels were compiled for, which one runs, and forcing one (tests,
// benchmarks). Highway target bits (HWY_AVX2, HWY_SSE4, ...) are int64 values; see hwy/targets.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pquant/kernels/detail/hwy_config.hpp"  // before any Highway header
#include "hwy/targets.h"
#include "pquant/kernels/backend.hpp"

namespace pquant::kernels {

/// Targets that are both compiled into the kernels and supported by this CPU, best first.
inline std::vector<std::int64_t> available_targets() {
  const std::int64_t supported = hwy::SupportedTargets();
  // Highway 1.0's SupportedTargets() re-detects the CPU and leaves the dispatch choice without the
  // vector-length-specific targets it then returns (SVE2_128, SVE_256 on Arm): choose again from
  // the full set, as the first kernel call does, so that asking does not change the target.
  hwy::GetChosenTarget().Update(supported);
  std::vector<std::int64_t> out;
  for (std::int64_t t = supported & detail::compiled_targets(); t != 0; t &= t - 1)
    out.push_back(t & -t);
  return out;
}

/// Makes the following kernel calls run on `target` (one of available_targets()); 0 restores the
/// best target. Process-wide: not for use while kernels run on other threads.
inline void force_target(std::int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
}

/// The target the next kernel call will run on.
inline std::int64_t current_target() {
  return detail::current_target();
}

inline std::string target_name(std::int64_t target) {
  return hwy::TargetName(target);
}

}  // namespace pquant::kernels
