// Gradchecks for matmul (2-D, transposed views), batched matmul (with a broadcast right operand)
// and linear with/without bias (src/ops/matmul.cpp).
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, matmul) {
  Rng rng(61);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); },
                   {rand_leaf({3, 4}, rng), rand_leaf({4, 5}, rng)});
  // transposed views of both operands
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::matmul(in[0].transpose(0, 1), in[1].transpose(0, 1)); },
                   {rand_leaf({4, 3}, rng), rand_leaf({5, 4}, rng)});
}

TEST(Gradcheck, batched_matmul) {
  Rng rng(62);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); },
                   {rand_leaf({2, 3, 4}, rng), rand_leaf({2, 4, 2}, rng)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); },
                   {rand_leaf({2, 3, 4}, rng), rand_leaf({4, 2}, rng)});
}

TEST(Gradcheck, linear) {
  Rng rng(63);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::linear(in[0], in[1], in[2]); },
                   {rand_leaf({2, 3, 4}, rng), rand_leaf({5, 4}, rng), rand_leaf({5}, rng)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::linear(in[0], in[1], Tensor()); },
                   {rand_leaf({3, 4}, rng), rand_leaf({2, 4}, rng)});
}

TEST(Matmul, values) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector({1, 0, 0, 1, 1, 1}, {3, 2});
  EXPECT_EQ(ops::matmul(a, b).to_vector(), (std::vector<double>{4, 5, 10, 11}));
  Tensor w = Tensor::from_vector({1, 0, 0, 0, 1, 0}, {2, 3});
  EXPECT_EQ(ops::linear(a, w, Tensor::from_vector({10, 20}, {2})).to_vector(), (std::vector<double>{11, 22, 14, 25}));
}

TEST(BadInput, matmul_shapes) {
  EXPECT_THROW(ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2})), Error);
  EXPECT_THROW(ops::matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 2})), Error);
  EXPECT_THROW(ops::linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 2}), Tensor()), Error);
  EXPECT_THROW(ops::linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}), Tensor::zeros({3})), Error);
  try {
    ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2}));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("K = 3"), std::string::npos) << e.what();
  }
}
