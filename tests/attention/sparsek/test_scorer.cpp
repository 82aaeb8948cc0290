// The SparseK scoring network (src/attention/sparsek/scorer.cpp): the "recent" initialisation
// selects the most recent keys, the position slope and offset, fp64 gradchecks of the scorer alone
// and of scorer -> SparseK attention (the score weights receive non-zero gradients).
#include <gtest/gtest.h>

#include <cmath>

#include "attention/sparsek/scorer.h"
#include "attention/sparsek/sparsek_reference.h"
#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using namespace sk::attention::sparsek;
using sk::testing::rand_leaf;

TEST(SparsekScorer, recent_init_selects_the_most_recent_keys) {
  Rng rng(631);
  const int64_t B = 2, T = 20, C = 8, H = 3, k = 4;
  SparsekScorer s = SparsekScorer::create(C, H, 1e-3, ScoreInit::Recent, DType::F64, Device::cpu(), rng);
  Tensor u = s.forward(Tensor::randn({B, T, C}, rng, DType::F64));
  ASSERT_EQ(u.shape(), (Shape{B, H, T}));
  std::vector<double> uv = u.to_vector();
  for (int64_t r = 0; r < B * H; ++r)
    for (int64_t j = 0; j < T; ++j) ASSERT_DOUBLE_EQ(uv[r * T + j], 1e-3 * double(j));
  for (int64_t w : {0, 5}) {
    CausalSelection sel = causal_selection(uv.data(), T, k, w);
    for (int64_t i = 0; i < T; ++i) {
      std::vector<int64_t> want;
      for (int64_t j = std::max<int64_t>(0, i - w - k + 1); j <= i - w; ++j) want.push_back(j);
      EXPECT_EQ(sel.selected_keys(i), want) << "query " << i << " window " << w;
    }
  }
  // Offset positions (decoding) continue the slope.
  std::vector<double> u5 = s.forward(Tensor::randn({1, 2, C}, rng, DType::F64), 5).to_vector();
  EXPECT_DOUBLE_EQ(u5[1], 6e-3);
}

TEST(SparsekScorer, normal_init_and_shared_selection_shapes) {
  Rng rng(632);
  SparsekScorer s = SparsekScorer::create(64, 1, 0.0, ScoreInit::Normal, DType::F32, Device::cpu(), rng);
  std::vector<double> w = s.weight.to_vector();
  double ss = 0;
  for (double x : w) ss += x * x;
  EXPECT_NEAR(std::sqrt(ss / double(w.size())), 0.02, 0.006);
  EXPECT_EQ(s.forward(Tensor::randn({3, 5, 64}, rng)).shape(), (Shape{3, 1, 5}));
  EXPECT_THROW(s.forward(Tensor::randn({3, 5, 63}, rng)), Error);
  EXPECT_THROW(parse_score_init("zeros"), Error);
}

TEST(Gradcheck, sparsek_scorer) {
  Rng rng(633);
  Tensor x = rand_leaf({2, 5, 4}, rng), w = rand_leaf({3, 4}, rng), b = rand_leaf({3}, rng);
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        SparsekScorer s{in[1], in[2], 0.01};
        return s.forward(in[0]);
      },
      {x, w, b});
}

TEST(Gradcheck, sparsek_scorer_through_attention) {
  // x -> scores -> SparseK attention (gate_values, w = 2): gradients reach the score weights.
  Rng rng(634);
  const int64_t B = 1, T = 9, C = 4, H = 2, D = 2;
  Tensor x = rand_leaf({B, T, C}, rng), w = rand_leaf({H, C}, rng, 0.5), b = rand_leaf({H}, rng, 0.1);
  Tensor q = rand_leaf({B, H, T, D}, rng), k = rand_leaf({B, H, T, D}, rng), v = rand_leaf({B, H, T, D}, rng);
  auto f = [](const std::vector<Tensor>& in) {
    SparsekScorer s{in[1], in[2], 0.05};
    return sparsek_attention_reference(in[3], in[4], in[5], s.forward(in[0]), {3, 2, MaskMode::GateValues});
  };
  EXPECT_GRADCHECK(f, {x, w, b, q, k, v});
  Tensor loss = ops::sum(f({x, w, b, q, k, v}));
  loss.backward();
  double norm = 0;
  for (double g : w.grad().to_vector()) norm += g * g;
  EXPECT_GT(norm, 1e-8) << "the score weights must receive a gradient";
}
