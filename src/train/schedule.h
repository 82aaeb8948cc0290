// Learning-rate schedule: linear warmup from 0 to the peak over warmup_steps, then cosine or
// linear decay to min_lr_ratio * peak at max_steps (constant: stays at the peak).
//   lr(step), step counted from 0 for the first optimizer step:
//     step < warmup:  peak * (step + 1) / warmup
//     after:          progress p = (step - warmup) / max(1, max_steps - warmup), clamped to [0, 1]
//                     cosine: min + (peak - min) * (1 + cos(pi p)) / 2;  linear: peak - (peak - min) p
// Tests: tests/train/test_schedule.cpp.
#pragma once
#include <cstdint>

#include "config/run_config.h"

namespace sk::train {

double learning_rate(int64_t step, const config::ScheduleConfig& schedule, double peak_lr, int64_t max_steps);

}  // namespace sk::train
