// Test utilities: fp64 finite-difference gradient check usable on any op.
//
// gradcheck(f, inputs) draws a fixed random cotangent R of f's output shape, runs backward(R)
// for the analytic gradients of every input that requires grad, and compares each element with
// the central difference (<f(x + e), R> - <f(x - e), R>) / 2e. Inputs must be f64 CPU leaves.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"
#include "util/check.h"

namespace sk::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
  uint64_t seed = 7;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0;
  std::string message;  // first mismatch: input, element, analytic and numeric values
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opts = {});

// Leaf f64 CPU tensor with normal(0, std) entries, requires_grad set.
Tensor rand_leaf(const Shape& shape, Rng& rng, double std = 1.0);

}  // namespace sk::testing

// EXPECT_GRADCHECK(f, inputs[, opts]): gradcheck with a readable failure message.
#define EXPECT_GRADCHECK(f, ...)                                  \
  do {                                                            \
    ::sk::testing::GradcheckResult sk_gc_ = ::sk::testing::gradcheck(f, __VA_ARGS__); \
    EXPECT_TRUE(sk_gc_.ok) << sk_gc_.message;                     \
  } while (0)
