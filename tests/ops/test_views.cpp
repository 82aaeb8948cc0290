// Gradchecks for the differentiable views and conversions (src/tensor/tensor.cpp):
// transpose + contiguous, slice, to(dtype), and reshape through a chain.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, transpose_contiguous) {
  Rng rng(81);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return in[0].transpose(0, 2).contiguous().view({-1}); },
                   {rand_leaf({2, 3, 4}, rng)});
}

TEST(Gradcheck, slice) {
  Rng rng(82);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mul(in[0].slice(1, 1, 3), in[0].slice(1, 2, 4)); },
                   {rand_leaf({3, 5}, rng)});
}

TEST(Gradcheck, to_dtype) {
  Rng rng(83);
  // f64 -> f32 -> f64: the gradient flows through both casts (f32 rounding of x is within eps).
  sk::testing::GradcheckOptions o;
  o.eps = 1e-3;
  o.atol = 1e-5;
  o.rtol = 1e-4;
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::scale(in[0].to(DType::F32), 3.0).to(DType::F64); },
                   {rand_leaf({6}, rng)}, o);
}

TEST(Gradcheck, reshape_chain) {
  Rng rng(84);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) {
                     return ops::gelu(in[0].reshape({3, 4}).transpose(0, 1).reshape({2, 6}));
                   },
                   {rand_leaf({12}, rng)});
}
