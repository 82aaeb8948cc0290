// Gradcheck for embedding (scatter-add backward, repeated indices) and out-of-range indices
// (src/ops/embedding.cpp).
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "testing/gradcheck.h"

using namespace sk;
using sk::testing::rand_leaf;

TEST(Gradcheck, embedding) {
  Rng rng(41);
  Tensor idx = Tensor::from_ints({3, 0, 3, 5, 1, 3}, {2, 3}, DType::I64);  // repeated index 3
  EXPECT_GRADCHECK([idx](const std::vector<Tensor>& in) { return ops::embedding(in[0], idx); },
                   {rand_leaf({6, 4}, rng)});
}

TEST(Embedding, gathers_rows) {
  Tensor table = Tensor::from_vector({0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor out = ops::embedding(table, Tensor::from_ints({2, 0}, {2}));
  EXPECT_EQ(out.shape(), (Shape{2, 2}));
  EXPECT_EQ(out.to_vector(), (std::vector<double>{20, 21, 0, 1}));
}

TEST(BadInput, embedding_out_of_range_index) {
  Tensor table = Tensor::zeros({5, 2});
  EXPECT_THROW(ops::embedding(table, Tensor::from_ints({1, 5}, {2})), Error);
  EXPECT_THROW(ops::embedding(table, Tensor::from_ints({-1}, {1})), Error);
  try {
    ops::embedding(table, Tensor::from_ints({0, 7}, {2}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 7"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::embedding(table, Tensor::from_vector({1.0}, {1})), Error);  // float indices
}
