// The fused MLP op (src/ops/mlp.cpp): fp64 gradcheck of every input, with both GELU forms and
// without biases, and its values equal to the composition linear -> gelu -> linear. (On the CPU
// the op is that composition; the CUDA epilogue path is checked against it in CudaParity.mlp_gelu.)
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, mlp_gelu) {
  for (ops::GeluApprox approx : {ops::GeluApprox::Tanh, ops::GeluApprox::Erf}) {
    Rng rng(61);
    auto f = [approx](const std::vector<Tensor>& in) { return ops::mlp_gelu(in[0], in[1], in[2], in[3], in[4], approx); };
    EXPECT_GRADCHECK(f, {rand_leaf({2, 3, 4}, rng), rand_leaf({6, 4}, rng, 0.5), rand_leaf({6}, rng),
                         rand_leaf({5, 6}, rng, 0.5), rand_leaf({5}, rng)});
  }
  Rng rng(62);
  auto no_bias = [](const std::vector<Tensor>& in) { return ops::mlp_gelu(in[0], in[1], Tensor(), in[2], Tensor()); };
  EXPECT_GRADCHECK(no_bias, {rand_leaf({3, 4}, rng), rand_leaf({6, 4}, rng, 0.5), rand_leaf({5, 6}, rng, 0.5)});
}

TEST(Mlp, equals_the_composition) {
  Rng rng(63);
  Tensor x = Tensor::randn({2, 3, 4}, rng, DType::F64), w1 = Tensor::randn({6, 4}, rng, DType::F64),
         b1 = Tensor::randn({6}, rng, DType::F64), w2 = Tensor::randn({5, 6}, rng, DType::F64),
         b2 = Tensor::randn({5}, rng, DType::F64);
  const Tensor y = ops::mlp_gelu(x, w1, b1, w2, b2);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(y.to_vector(), ops::linear(ops::gelu(ops::linear(x, w1, b1)), w2, b2).to_vector());
}
