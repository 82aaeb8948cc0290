// Every op in the op table (src/ops/op_table.h) has a CUDA parity test named CudaParity.<op> in
// this binary (runs without a GPU: it only reads the registered test names).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ops/op_table.h"
#include "testing/test_helpers.h"

TEST(OpCoverage, every_op_has_a_cuda_parity_test) {
  const std::set<std::string> tests = sk::testing::registered_test_names();
#define SK_EXPECT_PARITY_TEST(name, cpu, cuda) \
  EXPECT_TRUE(tests.count("CudaParity." #name)) << "op '" #name "' (" cuda ") has no CudaParity." #name " test";
  SK_OP_TABLE(SK_EXPECT_PARITY_TEST)
#undef SK_EXPECT_PARITY_TEST
}
