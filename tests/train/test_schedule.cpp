// Learning-rate schedule (src/train/schedule.cpp): warmup ramp, cosine and linear endpoints and
// midpoints, constant, clamping past max_steps.
#include <gtest/gtest.h>

#include "train/schedule.h"

using sk::config::ScheduleConfig;
using sk::train::learning_rate;

TEST(Schedule, warmup_then_cosine_or_linear) {
  ScheduleConfig s;
  s.kind = "cosine";
  s.warmup_steps = 10;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(0, s, 1.0, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(9, s, 1.0, 110), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(10, s, 1.0, 110), 1.0);
  EXPECT_NEAR(learning_rate(60, s, 1.0, 110), 0.55, 1e-12);  // halfway: (peak + min) / 2
  EXPECT_NEAR(learning_rate(110, s, 1.0, 110), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate(500, s, 1.0, 110), 0.1, 1e-12);  // clamped
  s.kind = "linear";
  EXPECT_NEAR(learning_rate(35, s, 2.0, 110), 2.0 - 1.8 * 0.25, 1e-12);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(80, s, 3.0, 110), 3.0);
  s.warmup_steps = 0;
  s.kind = "cosine";
  EXPECT_DOUBLE_EQ(learning_rate(0, s, 1.0, 100), 1.0);
}
