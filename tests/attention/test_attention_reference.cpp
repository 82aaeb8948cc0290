// The CPU attention reference (src/attention/reference.cpp): fp64 gradchecks for full and
// sliding-window attention, window edge cases (1, > T), T = 1, and agreement with attention
// composed from generic ops (matmul, softmax) with an explicit mask.
#include <gtest/gtest.h>

#include <cmath>

#include "attention/reference.h"
#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::attention::CausalWindow;
using sk::testing::rand_leaf;

namespace {
sk::testing::TensorFn attn(int64_t window) {
  return [window](const std::vector<Tensor>& in) {
    return attention::attention_reference(in[0], in[1], in[2], CausalWindow{window});
  };
}

// softmax(s q k^T + mask) v for one (b, h), from generic ops; mask -1e30 outside the window.
std::vector<double> composed(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window) {
  const int64_t T = q.size(2), D = q.size(3);
  std::vector<double> out;
  for (int64_t bh = 0; bh < q.size(0) * q.size(1); ++bh) {
    Tensor Q = q.reshape({-1, T, D}).slice(0, bh, bh + 1).reshape({T, D});
    Tensor K = k.reshape({-1, T, D}).slice(0, bh, bh + 1).reshape({T, D});
    Tensor V = v.reshape({-1, T, D}).slice(0, bh, bh + 1).reshape({T, D});
    Tensor a = ops::scale(ops::matmul(Q, K.transpose(0, 1)), 1.0 / std::sqrt(double(D)));
    std::vector<double> m(T * T);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j) m[i * T + j] = (j <= i && j >= CausalWindow{window}.first_key(i)) ? 0 : -1e30;
    Tensor o = ops::matmul(ops::softmax(ops::add(a, Tensor::from_vector(m, {T, T}, DType::F64))), V);
    std::vector<double> ov = o.to_vector();
    out.insert(out.end(), ov.begin(), ov.end());
  }
  return out;
}
}  // namespace

TEST(Gradcheck, attention_full) {
  Rng rng(91);
  EXPECT_GRADCHECK(attn(0), {rand_leaf({2, 2, 5, 3}, rng), rand_leaf({2, 2, 5, 3}, rng), rand_leaf({2, 2, 5, 3}, rng)});
}

TEST(Gradcheck, attention_sliding_window) {
  Rng rng(92);
  for (int64_t w : {1, 2, 3, 9}) {
    SCOPED_TRACE("window " + std::to_string(w));
    EXPECT_GRADCHECK(attn(w), {rand_leaf({1, 2, 6, 4}, rng), rand_leaf({1, 2, 6, 4}, rng), rand_leaf({1, 2, 6, 4}, rng)});
  }
}

TEST(AttentionReference, matches_composed_ops) {
  Rng rng(93);
  Tensor q = Tensor::randn({2, 3, 7, 4}, rng, DType::F64), k = Tensor::randn({2, 3, 7, 4}, rng, DType::F64),
         v = Tensor::randn({2, 3, 7, 4}, rng, DType::F64);
  for (int64_t w : {0, 1, 3, 7, 100}) {
    std::vector<double> got = attention::attention_reference(q, k, v, CausalWindow{w}).to_vector();
    std::vector<double> want = composed(q, k, v, w);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12) << "window " << w << " at " << i;
  }
}

TEST(AttentionReference, window_one_returns_v_and_large_window_is_full) {
  Rng rng(94);
  Tensor q = Tensor::randn({1, 1, 5, 2}, rng, DType::F64), k = Tensor::randn({1, 1, 5, 2}, rng, DType::F64),
         v = Tensor::randn({1, 1, 5, 2}, rng, DType::F64);
  EXPECT_EQ(attention::attention_reference(q, k, v, CausalWindow{1}).to_vector(), v.to_vector());
  EXPECT_EQ(attention::attention_reference(q, k, v, CausalWindow{5}).to_vector(),
            attention::attention_reference(q, k, v, CausalWindow{0}).to_vector());
  EXPECT_EQ(attention::attention_reference(q, k, v, CausalWindow{6}).to_vector(),
            attention::attention_reference(q, k, v, CausalWindow{0}).to_vector());
  // T = 1: the only key is itself.
  Tensor q1 = q.slice(2, 0, 1), k1 = k.slice(2, 0, 1), v1 = v.slice(2, 0, 1);
  EXPECT_EQ(attention::attention_reference(q1, k1, v1, CausalWindow{0}).to_vector(), v1.to_vector());
}

TEST(BadInput, attention_shapes) {
  Tensor q = Tensor::zeros({1, 2, 4, 8});
  EXPECT_THROW(attention::attention_reference(q, Tensor::zeros({1, 2, 5, 8}), q, CausalWindow{0}), Error);
  EXPECT_THROW(attention::attention_reference(q.view({2, 4, 8}), q.view({2, 4, 8}), q.view({2, 4, 8}), CausalWindow{0}),
               Error);
  EXPECT_THROW(attention::attention_reference(q, q, q, CausalWindow{-1}), Error);
}
