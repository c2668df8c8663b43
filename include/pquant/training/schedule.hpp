// Learning-rate / weight-decay schedules: the paper's two-phase schedule, cosine and constant.
//
// A schedule maps the 0-based step index s to the (lr, weight_decay) used by that step's update.
// All three share a linear warm-up: lr(s) = peak * (s + 1) / warmup for s < warmup.
// Schedules are runtime values (the CLI picks one), held by AnySchedule.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <numbers>
#include <string_view>
#include <utility>
#include <variant>

#include "pquant/core/error.hpp"

namespace pquant {

struct ScheduleValue {
  float lr = 0.f;
  float weight_decay = 0.f;
};

/// What the trainer needs from a schedule.
template <class S>
concept LrSchedule = requires(const S& s, std::size_t step) {
  { s.at(step) } -> std::same_as<ScheduleValue>;
  { s.total_steps } -> std::convertible_to<std::size_t>;
};

namespace detail {
inline void check_schedule(std::string_view fn, double peak, std::size_t warmup,
                           std::size_t total) {
  require<ValueError>(std::isfinite(peak) && peak > 0, fn,
                      ": 'peak_lr' must be finite and > 0, got ", peak);
  require<ValueError>(total > 0, fn, ": 'total_steps' must be > 0");
  require<ValueError>(warmup < total, fn, ": 'warmup_steps' (", warmup,
                      ") must be < 'total_steps' (", total, ")");
}
inline float lerp(double a, double b, double t) {
  return static_cast<float>(a + (b - a) * t);
}
}  // namespace detail

/// docs/method.md section 4: warm-up, then phase 1 decays linearly from peak_lr (at the end of the
/// warm-up) to phase1_end * peak_lr (at the midpoint) with weight decay `weight_decay`; phase 2
/// restarts at phase2_start * peak_lr and decays linearly to phase2_end * peak_lr at the end, with
/// weight decay 0. Ratios are ours (the paper gives no numbers at our scale): 0.5, 0.4, 0.0.
struct TwoPhaseSchedule {
  float peak_lr = 3e-3f;
  std::size_t warmup_steps = 0;
  std::size_t total_steps = 1;
  float weight_decay = 0.1f;  // phase 1 only
  float phase1_end = 0.5f;
  float phase2_start = 0.4f;
  float phase2_end = 0.0f;

  /// First step of phase 2.
  std::size_t midpoint() const { return total_steps / 2; }

  ScheduleValue at(std::size_t s) const {
    detail::check_schedule("TwoPhaseSchedule::at", peak_lr, warmup_steps, total_steps);
    const std::size_t mid = midpoint();
    if (s < warmup_steps && s < mid) {
      return {detail::lerp(0.0, peak_lr, double(s + 1) / double(warmup_steps)), weight_decay};
    }
    if (s < mid) {  // phase 1: t runs over [0, 1) from the end of warm-up to the midpoint
      const double t = double(s - warmup_steps) / double(mid - warmup_steps);
      return {detail::lerp(peak_lr, double(peak_lr) * phase1_end, t), weight_decay};
    }
    const double t = double(std::min(s, total_steps) - mid) / double(total_steps - mid);
    return {detail::lerp(double(peak_lr) * phase2_start, double(peak_lr) * phase2_end, t), 0.f};
  }
};

/// Warm-up, then cosine from peak_lr to min_lr at total_steps; constant weight decay.
struct CosineSchedule {
  float peak_lr = 3e-3f;
  std::size_t warmup_steps = 0;
  std::size_t total_steps = 1;
  float min_lr = 0.f;
  float weight_decay = 0.1f;

  ScheduleValue at(std::size_t s) const {
    detail::check_schedule("CosineSchedule::at", peak_lr, warmup_steps, total_steps);
    if (s < warmup_steps)
      return {detail::lerp(0.0, peak_lr, double(s + 1) / double(warmup_steps)), weight_decay};
    const double t =
        double(std::min(s, total_steps) - warmup_steps) / double(total_steps - warmup_steps);
    const double c = 0.5 * (1.0 + std::cos(std::numbers::pi * t));
    return {static_cast<float>(min_lr + (double(peak_lr) - min_lr) * c), weight_decay};
  }
};

/// Warm-up, then peak_lr for ever; constant weight decay.
struct ConstantSchedule {
  float peak_lr = 3e-3f;
  std::size_t warmup_steps = 0;
  std::size_t total_steps = 1;
  float weight_decay = 0.1f;

  ScheduleValue at(std::size_t s) const {
    detail::check_schedule("ConstantSchedule::at", peak_lr, warmup_steps, total_steps);
    if (s < warmup_steps)
      return {detail::lerp(0.0, peak_lr, double(s + 1) / double(warmup_steps)), weight_decay};
    return {peak_lr, weight_decay};
  }
};

static_assert(LrSchedule<TwoPhaseSchedule> && LrSchedule<CosineSchedule> &&
              LrSchedule<ConstantSchedule>);

/// One of the library's schedules, chosen at run time.
class AnySchedule {
 public:
  AnySchedule() = default;
  template <LrSchedule S>
  requires(!std::same_as<S, AnySchedule>) AnySchedule(S s) : s_(s) {}  // NOLINT: implicit by design

  ScheduleValue at(std::size_t step) const {
    return std::visit([&](const auto& s) { return s.at(step); }, s_);
  }
  std::size_t total_steps() const {
    return std::visit([](const auto& s) { return s.total_steps; }, s_);
  }
  std::string_view name() const {
    constexpr std::string_view names[] = {"two-phase", "cosine", "constant"};
    return names[s_.index()];
  }
  /// Calls f with the schedule held (a TwoPhaseSchedule, CosineSchedule or ConstantSchedule).
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), s_);
  }

 private:
  std::variant<TwoPhaseSchedule, CosineSchedule, ConstantSchedule> s_;
};

/// Builds a schedule by name ("two-phase", "cosine", "constant"); ValueError for other names.
/// phase2_end (TwoPhaseSchedule::phase2_end) applies to "two-phase" only: a nonzero value with
/// another name is a ValueError.
inline AnySchedule make_schedule(std::string_view name, float peak_lr, std::size_t warmup,
                                 std::size_t total, float weight_decay = 0.1f,
                                 float phase2_end = 0.0f) {
  if (name == "two-phase")
    return TwoPhaseSchedule{.peak_lr = peak_lr,
                            .warmup_steps = warmup,
                            .total_steps = total,
                            .weight_decay = weight_decay,
                            .phase2_end = phase2_end};
  require<ValueError>(phase2_end == 0.0f, "pquant: make_schedule: argument 'phase2_end' applies to "
                      "the two-phase schedule only, got ", phase2_end, " for '", name, "'");
  if (name == "cosine") return CosineSchedule{peak_lr, warmup, total, 0.f, weight_decay};
  if (name == "constant") return ConstantSchedule{peak_lr, warmup, total, weight_decay};
  throw ValueError(
      detail::concat("pquant: make_schedule: argument 'name' must be two-phase, cosine or "
                     "constant, got '",
                     name, "'"));
}

}  // namespace pquant
