// Gradchecks for GELU, tanh and erf forms (src/ops/gelu.cpp), and reference values.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, gelu_tanh) {
  Rng rng(11);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::gelu(in[0], ops::GeluApprox::Tanh); },
                   {rand_leaf({4, 9}, rng, 2.0)});
}

TEST(Gradcheck, gelu_erf) {
  Rng rng(12);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::gelu(in[0], ops::GeluApprox::Erf); },
                   {rand_leaf({4, 9}, rng, 2.0)});
}

TEST(Gelu, known_values) {
  Tensor x = Tensor::from_vector({-3, -1, 0, 0.5, 2}, {5}, DType::F64);
  std::vector<double> erf_y = ops::gelu(x, ops::GeluApprox::Erf).to_vector();
  std::vector<double> tanh_y = ops::gelu(x, ops::GeluApprox::Tanh).to_vector();
  const double xs[] = {-3, -1, 0, 0.5, 2};
  for (int i = 0; i < 5; ++i) {
    double e = 0.5 * xs[i] * (1 + std::erf(xs[i] / std::sqrt(2.0)));
    EXPECT_NEAR(erf_y[i], e, 1e-15);
    EXPECT_NEAR(tanh_y[i], e, 2e-3);  // the tanh form approximates the erf form to ~1e-3
  }
  EXPECT_NEAR(erf_y[1], -0.15865525393145707, 1e-15);  // GELU(-1) = -Phi(-1)
}
