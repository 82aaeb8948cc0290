// AdamW (src/optim/adamw.cpp) against the PyTorch AdamW formula written out in fp64 here, with
// weight decay on and off, a gradient scale, and bias correction over several steps; and the
// global gradient norm / clipping (src/optim/grad_clip.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "util/check.h"

using namespace sk;

namespace {
// One PyTorch-AdamW step on plain doubles.
void reference_step(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m,
                    std::vector<double>& v, int t, double lr, double b1, double b2, double eps, double wd, double gs) {
  for (size_t i = 0; i < p.size(); ++i) {
    double gi = g[i] * gs;
    p[i] *= 1 - lr * wd;
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
    p[i] -= lr / (1 - std::pow(b1, t)) * m[i] / denom;
  }
}
}  // namespace

TEST(AdamW, matches_reference_formula_over_steps) {
  Rng rng(3);
  const optim::AdamWConfig cfg{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  Tensor w = Tensor::randn({5}, rng, DType::F64).set_requires_grad();
  Tensor b = Tensor::randn({3}, rng, DType::F64).set_requires_grad();
  optim::AdamW opt(cfg);
  opt.add_param(w, true);
  opt.add_param(b, false);
  std::vector<double> pw = w.to_vector(), pb = b.to_vector(), mw(5), vw(5), mb(3), vb(3);
  for (int t = 1; t <= 4; ++t) {
    Tensor gw = Tensor::randn({5}, rng, DType::F64), gb = Tensor::randn({3}, rng, DType::F64);
    w.set_grad(gw);
    b.set_grad(gb);
    const double gs = 0.5;
    opt.step(-1.0, Tensor::full({}, gs, DType::F64));
    reference_step(pw, gw.to_vector(), mw, vw, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, gs);
    reference_step(pb, gb.to_vector(), mb, vb, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, 0.0, gs);
  }
  std::vector<double> gotw = w.to_vector(), gotb = b.to_vector();
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(gotw[i], pw[i], 1e-14);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(gotb[i], pb[i], 1e-14);
  EXPECT_EQ(opt.step_count(), 4);
}

TEST(AdamW, skips_params_without_grad_and_rejects_non_leaves) {
  Tensor w = Tensor::ones({2}).set_requires_grad();
  optim::AdamW opt({});
  opt.add_param(w);
  opt.step();
  EXPECT_EQ(w.to_vector(), (std::vector<double>{1, 1}));
  EXPECT_THROW(opt.add_param(ops::scale(w, 2)), Error);
  EXPECT_THROW(opt.add_param(Tensor::ones({2})), Error);  // no requires_grad
}

TEST(GradClip, norm_and_coefficient) {
  Tensor a = Tensor::from_vector({3, 0}, {2}, DType::F64).set_requires_grad();
  Tensor b = Tensor::from_vector({0}, {1}, DType::F64).set_requires_grad();
  a.set_grad(Tensor::from_vector({3, 4}, {2}, DType::F64));
  b.set_grad(Tensor::from_vector({12}, {1}, DType::F64));
  optim::GradNorm n = optim::global_grad_norm({a, b}, 6.5);
  EXPECT_NEAR(n.norm(), 13.0, 1e-12);
  EXPECT_NEAR(n.coefficient.item(), 0.5, 1e-7);
  optim::scale_grads_({a, b}, n.coefficient);
  EXPECT_NEAR(b.grad().item(), 6.0, 1e-6);
  EXPECT_NEAR(optim::global_grad_norm({a, b}, 100.0).coefficient.item(), 1.0, 0);
  EXPECT_THROW(optim::global_grad_norm({a}, 0.0), Error);
}
