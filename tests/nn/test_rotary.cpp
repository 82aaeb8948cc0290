// Rotary embeddings (src/nn/rotary.cpp): fp64 gradcheck (partial and full rotary), the
// pass-through dims, and the defining property: the dot product of a rotated query and key
// depends only on their position difference.
#include <gtest/gtest.h>

#include "nn/rotary.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, rotary) {
  Rng rng(101);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return nn::rotary(in[0], 4, 10000.0, 3); },
                   {rand_leaf({2, 2, 5, 6}, rng)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return nn::rotary(in[0], 8, 500.0); }, {rand_leaf({1, 1, 4, 8}, rng)});
}

TEST(Rotary, pass_through_and_relative_positions) {
  Rng rng(102);
  Tensor x = Tensor::randn({1, 1, 6, 8}, rng, DType::F64);
  std::vector<double> in = x.to_vector(), out = nn::rotary(x, 4).to_vector();
  for (int t = 0; t < 6; ++t)
    for (int d = 4; d < 8; ++d) EXPECT_EQ(out[t * 8 + d], in[t * 8 + d]);  // dims >= R untouched
  for (int d = 0; d < 8; ++d) EXPECT_NEAR(out[d], in[d], 1e-15);           // position 0: no rotation
  // <rot(q, m), rot(k, n)> is a function of m - n: compare (m, n) = (3, 1) with (5, 3).
  Tensor q = Tensor::randn({1, 1, 1, 8}, rng, DType::F64), k = Tensor::randn({1, 1, 1, 8}, rng, DType::F64);
  auto dot_at = [&](int64_t m, int64_t n) {
    std::vector<double> a = nn::rotary(q, 8, 10000.0, m).to_vector(), b = nn::rotary(k, 8, 10000.0, n).to_vector();
    double s = 0;
    for (int d = 0; d < 8; ++d) s += a[d] * b[d];
    return s;
  };
  EXPECT_NEAR(dot_at(3, 1), dot_at(5, 3), 1e-12);
  EXPECT_THROW(nn::rotary(x, 3), Error);
  EXPECT_THROW(nn::rotary(x, 10), Error);
}
