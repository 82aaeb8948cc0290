// The autograd engine (src/autograd/): leaf accumulation, shared subexpressions, no-grad scope,
// graph freeing, multi-output nodes (one backward for a fused op), errors, and that gradcheck
// itself catches a wrong backward.
#include <gtest/gtest.h>

#include "autograd/node.h"
#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;

TEST(Autograd, leaf_gradients_accumulate_across_backward_calls) {
  Tensor x = Tensor::from_vector({1, 2, 3}, {3}, DType::F64).set_requires_grad();
  ops::sum(ops::mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 4, 6}));
  ops::sum(x).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 5, 7}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, shared_subexpression_and_aliasing_gradients_are_independent) {
  Tensor a = Tensor::from_vector({1, 2}, {2}, DType::F64).set_requires_grad();
  Tensor b = Tensor::from_vector({3, 4}, {2}, DType::F64).set_requires_grad();
  Tensor s = ops::add(a, b);               // add's backward hands the same tensor to a and b
  ops::sum(ops::mul(s, s)).backward();     // d/da = 2 s
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{8, 12}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{8, 12}));
  EXPECT_NE(a.grad().data_ptr(), b.grad().data_ptr());  // never aliased
}

TEST(Autograd, no_grad_scope_records_nothing) {
  Tensor x = Tensor::ones({2}, DType::F64).set_requires_grad();
  Tensor y;
  {
    autograd::NoGradGuard g;
    EXPECT_FALSE(autograd::grad_enabled());
    y = ops::scale(x, 2.0);
  }
  EXPECT_TRUE(autograd::grad_enabled());
  EXPECT_FALSE(y.requires_grad());
  EXPECT_THROW(ops::sum(y).backward(), Error);
}

TEST(Autograd, backward_through_tensor_without_grad_throws) {
  Tensor x = Tensor::ones({3});
  try {
    ops::sum(x).backward();
    FAIL() << "expected sk::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not require grad"), std::string::npos) << e.what();
  }
}

TEST(Autograd, non_scalar_backward_needs_grad_output) {
  Tensor x = Tensor::ones({3}, DType::F64).set_requires_grad();
  EXPECT_THROW(ops::scale(x, 2).backward(), Error);
  ops::scale(x, 2).backward(Tensor::from_vector({1, 2, 3}, {3}, DType::F64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 4, 6}));
}

TEST(Autograd, graph_is_freed_after_backward) {
  Tensor x = Tensor::ones({2}, DType::F64).set_requires_grad();
  Tensor y = ops::sum(ops::gelu(x));
  y.backward();
  try {
    y.backward();
    FAIL() << "expected sk::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already freed"), std::string::npos) << e.what();
  }
}

TEST(Autograd, one_backward_for_a_multi_output_op) {
  // A fused op with two outputs (x + y, x * y) registering a single backward function.
  Tensor x = Tensor::from_vector({2}, {1}, DType::F64).set_requires_grad();
  Tensor y = Tensor::from_vector({5}, {1}, DType::F64).set_requires_grad();
  Tensor xd = x.detach(), yd = y.detach();
  Tensor s = ops::add(xd, yd), p = ops::mul(xd, yd);
  int calls = 0;
  autograd::record("sum_and_product", {x, y}, {s, p},
                   [&calls, xd, yd](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     ++calls;
                     return std::vector<Tensor>{ops::add(g[0], ops::mul(g[1], yd)), ops::add(g[0], ops::mul(g[1], xd))};
                   });
  ops::add(ops::scale(s, 3.0), p).backward(Tensor::ones({1}, DType::F64));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(x.grad().item(), 3 + 5);
  EXPECT_EQ(y.grad().item(), 3 + 2);
}

TEST(Autograd, gradcheck_detects_a_wrong_backward) {
  Rng rng(5);
  auto wrong = [](const std::vector<Tensor>& in) {
    Tensor xd = in[0].detach();
    Tensor out = ops::mul(xd, xd);
    autograd::record("wrong_square", {in[0]}, {out}, [xd](const std::vector<Tensor>& g, const std::vector<bool>&) {
      return std::vector<Tensor>{ops::mul(g[0], xd)};  // should be 2 x g
    });
    return out;
  };
  sk::testing::GradcheckResult r = sk::testing::gradcheck(wrong, {sk::testing::rand_leaf({4}, rng)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos);
}

// The gradient through reshape, on its viewing path (a strided slice split into heads) and its
// copying path (merging across a transpose).
TEST(Gradcheck, reshape_view_and_copy) {
  Rng rng(8);
  auto f = [](const std::vector<Tensor>& in) {
    Tensor head = in[0].slice(2, 1, 2).reshape({2, 3, 2, 4});   // view of a (2, 3, 3, 2, 4) slice
    Tensor merged = head.transpose(1, 2).reshape({2, 2, 12});   // copy
    return ops::mul(merged, merged);
  };
  EXPECT_GRADCHECK(f, {sk::testing::rand_leaf({2, 3, 3, 2, 4}, rng)});
}

TEST(Autograd, set_requires_grad_only_on_float_leaves) {
  EXPECT_THROW(Tensor::zeros({2}, DType::I32).set_requires_grad(), Error);
  Tensor x = Tensor::ones({2}).set_requires_grad();
  Tensor y = ops::scale(x, 2);
  EXPECT_THROW(y.set_requires_grad(false), Error);
}
