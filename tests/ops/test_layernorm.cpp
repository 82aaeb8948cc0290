// Gradcheck for the fused LayerNorm (src/ops/layernorm.cpp) with and without bias, values; the
// fused residual add + LayerNorm (add_layernorm) against add then layernorm.
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

// Both outputs carry gradient: 0.7 * sum + y (scale keeps the two paths apart).
TEST(Gradcheck, add_layernorm) {
  Rng rng(24);
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        const ops::AddLayerNorm o = ops::add_layernorm(in[0], in[1], in[2], in[3], 1e-5);
        return ops::add(ops::scale(o.sum, 0.7), o.y);
      },
      {rand_leaf({2, 3, 7}, rng), rand_leaf({2, 3, 7}, rng), rand_leaf({7}, rng), rand_leaf({7}, rng)});
}

TEST(Gradcheck, add_layernorm_final_no_bias) {
  Rng rng(25);
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return ops::add_layernorm(in[0], in[1], in[2], Tensor(), 1e-5, /*sum_is_output=*/false).y;
      },
      {rand_leaf({5, 4}, rng), rand_leaf({5, 4}, rng), rand_leaf({4}, rng)});
}

// The fused op is add then layernorm, bit for bit (f32 and f64): values and every gradient.
TEST(AddLayerNorm, equals_add_then_layernorm) {
  for (DType dt : {DType::F32, DType::F64}) {
    Rng rng(26);
    auto leaf = [&](Shape s, double mean) {
      Tensor t = Tensor::randn(s, rng, dt, Device::cpu(), mean, 1.0);
      t.set_requires_grad();
      return t;
    };
    Tensor x = leaf({3, 5, 33}, 2.0), r = leaf({3, 5, 33}, -1.0), w = leaf({33}, 1.0), b = leaf({33}, 0.0);
    Tensor x2 = x.detach(), r2 = r.detach(), w2 = w.detach(), b2 = b.detach();
    for (Tensor* t : {&x2, &r2, &w2, &b2}) t->set_requires_grad();
    const ops::AddLayerNorm f = ops::add_layernorm(x, r, w, b, 1e-5);
    const Tensor s2 = ops::add(x2, r2);
    const Tensor y2 = ops::layernorm(s2, w2, b2, 1e-5);
    EXPECT_EQ(f.sum.to_vector(), s2.to_vector());
    EXPECT_EQ(f.y.to_vector(), y2.to_vector());
    const Tensor cs = Tensor::randn({3, 5, 33}, rng, dt), cy = Tensor::randn({3, 5, 33}, rng, dt);
    ops::add(ops::sum(ops::mul(f.sum, cs)), ops::sum(ops::mul(f.y, cy))).backward();
    ops::add(ops::sum(ops::mul(s2, cs)), ops::sum(ops::mul(y2, cy))).backward();
    EXPECT_EQ(x.grad().to_vector(), x2.grad().to_vector()) << dtype_name(dt);
    EXPECT_EQ(r.grad().to_vector(), r2.grad().to_vector()) << dtype_name(dt);
    EXPECT_EQ(w.grad().to_vector(), w2.grad().to_vector()) << dtype_name(dt);
    EXPECT_EQ(b.grad().to_vector(), b2.grad().to_vector()) << dtype_name(dt);
  }
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

TEST(BadInput, add_layernorm_residual_shape) {
  try {
    ops::add_layernorm(Tensor::zeros({2, 4}), Tensor::zeros({2, 5}), Tensor::ones({4}), Tensor());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("residual"), std::string::npos) << e.what();
  }
}

TEST(BadInput, layernorm_weight_shape) {
  EXPECT_THROW(ops::layernorm(Tensor::zeros({2, 4}), Tensor::ones({5}), Tensor()), Error);
  EXPECT_THROW(ops::layernorm(Tensor::zeros({2, 4}), Tensor::ones({4}), Tensor::zeros({4}, DType::F64)), Error);
}
