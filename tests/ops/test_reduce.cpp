// Gradchecks for sum, mean, sum_rows (src/ops/reduce.cpp).
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, sum) {
  Rng rng(71);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::sum(in[0]); }, {rand_leaf({3, 4}, rng)});
}

TEST(Gradcheck, mean) {
  Rng rng(72);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mean(in[0]); }, {rand_leaf({2, 5}, rng)});
}

TEST(Gradcheck, sum_rows) {
  Rng rng(73);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::sum_rows(in[0]); }, {rand_leaf({2, 3, 4}, rng)});
}

TEST(Reduce, values) {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(ops::sum(x).item(), 21);
  EXPECT_EQ(ops::mean(x).item(), 3.5);
  EXPECT_EQ(ops::sum_rows(x).to_vector(), (std::vector<double>{5, 7, 9}));
}
