// Gradcheck for the fused LayerNorm (src/ops/layernorm.cpp) with and without bias, values.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, layernorm) {
  Rng rng(21);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5); },
                   {rand_leaf({2, 3, 7}, rng), rand_leaf({7}, rng), rand_leaf({7}, rng)});
}

TEST(Gradcheck, layernorm_no_bias_one_channel_rows) {
  Rng rng(22);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::layernorm(in[0], in[1], Tensor(), 1e-5); },
                   {rand_leaf({5, 4}, rng), rand_leaf({4}, rng)});
}

TEST(LayerNorm, normalises_rows) {
  Rng rng(23);
  Tensor x = Tensor::randn({6, 33}, rng, DType::F64, Device::cpu(), 3.0, 5.0);
  Tensor y = ops::layernorm(x, Tensor::ones({33}, DType::F64), Tensor::zeros({33}, DType::F64), 1e-12);
  std::vector<double> v = y.to_vector();
  for (int r = 0; r < 6; ++r) {
    double m = 0, s = 0;
    for (int c = 0; c < 33; ++c) m += v[r * 33 + c];
    m /= 33;
    for (int c = 0; c < 33; ++c) s += (v[r * 33 + c] - m) * (v[r * 33 + c] - m);
    EXPECT_NEAR(m, 0, 1e-12);
    EXPECT_NEAR(s / 33, 1, 1e-9);
  }
}

TEST(BadInput, layernorm_weight_shape) {
  EXPECT_THROW(ops::layernorm(Tensor::zeros({2, 4}), Tensor::ones({5}), Tensor()), Error);
  EXPECT_THROW(ops::layernorm(Tensor::zeros({2, 4}), Tensor::ones({4}), Tensor::zeros({4}, DType::F64)), Error);
}
