// Gradcheck for softmax over the last dim (src/ops/softmax.cpp), and its stability.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, softmax) {
  Rng rng(31);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::softmax(in[0]); }, {rand_leaf({3, 6}, rng, 2.0)});
}

TEST(Softmax, rows_sum_to_one_and_large_logits_are_stable) {
  Tensor x = Tensor::from_vector({1000, 1001, 1002, -5, 0, 5}, {2, 3});
  std::vector<double> y = ops::softmax(x).to_vector();
  for (double v : y) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0, 1e-6);
  EXPECT_NEAR(y[3] + y[4] + y[5], 1.0, 1e-6);
  EXPECT_NEAR(y[2], 0.66524096, 1e-6);
}
