// Learning-rate schedule (schedule.h).
#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "util/check.h"

namespace sk::train {

double learning_rate(int64_t step, const config::ScheduleConfig& s, double peak, int64_t max_steps) {
  SK_CHECK(step >= 0, "learning_rate: negative step ", step);
  if (s.warmup_steps > 0 && step < s.warmup_steps) return peak * double(step + 1) / double(s.warmup_steps);
  if (s.kind == "constant") return peak;
  const double min_lr = peak * s.min_lr_ratio;
  const double p = std::clamp(double(step - s.warmup_steps) / double(std::max<int64_t>(1, max_steps - s.warmup_steps)), 0.0, 1.0);
  if (s.kind == "linear") return peak - (peak - min_lr) * p;
  SK_CHECK(s.kind == "cosine", "schedule.kind \"", s.kind, "\" is not one of: cosine, linear, constant");
  return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * p));
}

}  // namespace sk::train
