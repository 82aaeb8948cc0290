// Gradchecks (fp64, CPU) and reference values for add, sub, mul, scale (src/ops/elementwise.cpp),
// plus the argument checks that must throw.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, add) {
  Rng rng(1);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); },
                   {rand_leaf({3, 5}, rng), rand_leaf({3, 5}, rng)});
}

TEST(Gradcheck, sub) {
  Rng rng(2);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::sub(in[0], in[1]); },
                   {rand_leaf({4, 3}, rng), rand_leaf({4, 3}, rng)});
}

TEST(Gradcheck, mul) {
  Rng rng(3);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mul(in[0], in[1]); },
                   {rand_leaf({2, 7}, rng), rand_leaf({2, 7}, rng)});
}

TEST(Gradcheck, scale) {
  Rng rng(4);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::scale(in[0], -2.5); }, {rand_leaf({17}, rng)});
}

TEST(Elementwise, values_f32) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3});
  Tensor b = Tensor::from_vector({4, 5, 6}, {3});
  EXPECT_EQ(ops::add(a, b).to_vector(), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(ops::sub(a, b).to_vector(), (std::vector<double>{-3, -3, -3}));
  EXPECT_EQ(ops::mul(a, b).to_vector(), (std::vector<double>{4, 10, 18}));
  EXPECT_EQ(ops::scale(a, 2).to_vector(), (std::vector<double>{2, 4, 6}));
}

TEST(Elementwise, works_on_non_contiguous_inputs) {
  Rng rng(5);
  Tensor a = Tensor::randn({3, 4}, rng, DType::F64);
  Tensor b = Tensor::randn({4, 3}, rng, DType::F64);
  Tensor got = ops::add(a, b.transpose(0, 1));
  Tensor want = ops::add(a, b.transpose(0, 1).contiguous());
  EXPECT_EQ(got.to_vector(), want.to_vector());
}

TEST(BadInput, elementwise_shape_dtype_mismatch_throw) {
  Tensor a = Tensor::zeros({2, 3});
  EXPECT_THROW(ops::add(a, Tensor::zeros({3, 2})), Error);
  EXPECT_THROW(ops::mul(a, Tensor::zeros({2, 3}, DType::F64)), Error);
  EXPECT_THROW(ops::add(a, Tensor()), Error);
  try {
    ops::add(a, Tensor::zeros({3, 2}));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(3, 2)"), std::string::npos) << e.what();
  }
}

TEST(BadInput, bf16_on_cpu_names_the_op) {
  Tensor a = Tensor::zeros({2}, DType::BF16);
  try {
    ops::add(a, a);
    FAIL() << "expected sk::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}
