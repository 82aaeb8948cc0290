// Gradcheck and reference values for the fused softmax cross-entropy (src/ops/cross_entropy.cpp):
// mean/sum/none reductions, a padded vocabulary (valid_vocab < row length), ignore_index.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/ops.h"
#include "tensor/random.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, cross_entropy) {
  Rng rng(51);
  Tensor targets = Tensor::from_ints({2, 0, 4, 1}, {4});
  EXPECT_GRADCHECK([targets](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], targets); },
                   {rand_leaf({4, 5}, rng, 2.0)});
}

TEST(Gradcheck, cross_entropy_padded_vocab_ignore_index_none) {
  Rng rng(52);
  Tensor targets = Tensor::from_ints({2, -1, 4, 0, 3}, {5});
  ops::CrossEntropyOptions o;
  o.valid_vocab = 5;
  o.ignore_index = -1;
  o.reduction = ops::Reduction::None;
  EXPECT_GRADCHECK([targets, o](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], targets, o); },
                   {rand_leaf({5, 8}, rng, 2.0)});
}

TEST(CrossEntropy, matches_log_softmax_definition) {
  Tensor logits = Tensor::from_vector({1, 2, 3, 0.5, -1, 2, 9, 9}, {2, 4}, DType::F64);
  Tensor targets = Tensor::from_ints({2, 0}, {2});
  ops::CrossEntropyOptions o;
  o.valid_vocab = 3;  // the 4th column is padding
  o.reduction = ops::Reduction::None;
  std::vector<double> l = ops::cross_entropy(logits, targets, o).to_vector();
  EXPECT_NEAR(l[0], std::log(std::exp(1) + std::exp(2) + std::exp(3)) - 3, 1e-12);
  EXPECT_NEAR(l[1], std::log(std::exp(-1) + std::exp(2) + std::exp(9)) - (-1), 1e-12);
  o.reduction = ops::Reduction::Mean;
  EXPECT_NEAR(ops::cross_entropy(logits, targets, o).item(), (l[0] + l[1]) / 2, 1e-12);
}

TEST(CrossEntropy, mean_ignores_ignored_rows_and_padding_gets_zero_grad) {
  Rng rng(53);
  Tensor logits = Tensor::randn({3, 6}, rng, DType::F64).set_requires_grad();
  ops::CrossEntropyOptions o;
  o.valid_vocab = 4;
  Tensor loss = ops::cross_entropy(logits, Tensor::from_ints({1, -1, 3}, {3}), o);
  o.reduction = ops::Reduction::None;
  std::vector<double> rows = ops::cross_entropy(logits.detach(), Tensor::from_ints({1, -1, 3}, {3}), o).to_vector();
  EXPECT_EQ(rows[1], 0.0);
  EXPECT_NEAR(loss.item(), (rows[0] + rows[2]) / 2, 1e-12);
  loss.backward();
  std::vector<double> g = logits.grad().to_vector();
  for (int r = 0; r < 3; ++r)
    for (int c = 4; c < 6; ++c) EXPECT_EQ(g[r * 6 + c], 0.0);
  for (int c = 0; c < 6; ++c) EXPECT_EQ(g[6 + c], 0.0);  // ignored row
}

TEST(BadInput, cross_entropy_bad_targets) {
  Tensor logits = Tensor::zeros({2, 5});
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_ints({0, 5}, {2})), Error);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_ints({0, 1, 2}, {3})), Error);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_vector({0, 1}, {2})), Error);
  ops::CrossEntropyOptions o;
  o.valid_vocab = 3;
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_ints({0, 4}, {2}), o), Error);  // a padding column
}

// When nothing but the loss holds the logits (an intermediate result, as in the model), the
// backward writes their gradient into the logits' memory. The gradients must be the same as when
// the caller keeps the logits (then a fresh buffer is used and the kept logits stay untouched).
TEST(CrossEntropy, gradient_in_the_logits_memory_matches_a_fresh_buffer) {
  for (DType dt : {DType::F32, DType::F64}) {
    Rng rng(54);
    Tensor x = Tensor::randn({6, 5}, rng, dt).set_requires_grad();
    Tensor w = Tensor::randn({9, 5}, rng, dt).set_requires_grad();
    Tensor targets = Tensor::from_ints({1, 2, -100, 3, 0, 7}, {6});
    ops::CrossEntropyOptions o;
    o.valid_vocab = 8;  // the 9th column is padding (zero gradient)
    o.ignore_index = -100;
    // The logits are not kept (the temporary dies with the statement): reused for their gradient.
    Tensor loss = ops::cross_entropy(ops::linear(x, w, Tensor()), targets, o);
    loss.backward();
    const std::vector<double> gx_reused = x.grad().to_vector(), gw_reused = w.grad().to_vector();
    x.zero_grad();
    w.zero_grad();
    // The logits are kept: a fresh gradient buffer; the logits must not change.
    Tensor logits = ops::linear(x, w, Tensor());
    const std::vector<double> before = logits.to_vector();
    ops::cross_entropy(logits, targets, o).backward();
    EXPECT_EQ(logits.to_vector(), before) << dtype_name(dt);
    EXPECT_EQ(x.grad().to_vector(), gx_reused) << dtype_name(dt);
    EXPECT_EQ(w.grad().to_vector(), gw_reused) << dtype_name(dt);
  }
}
