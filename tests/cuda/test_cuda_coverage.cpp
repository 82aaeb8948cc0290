// Every op in the op table (src/ops/op_table.h) has a CUDA parity test named CudaParity.<op> in
// this binary (runs without a GPU: it only reads the registered test names).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ops/op_table.h"

TEST(OpCoverage, every_op_has_a_cuda_parity_test) {
  std::set<std::string> tests;
  const ::testing::UnitTest* ut = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < ut->total_test_suite_count(); ++i) {
    const ::testing::TestSuite* s = ut->GetTestSuite(i);
    for (int j = 0; j < s->total_test_count(); ++j) tests.insert(std::string(s->name()) + "." + s->GetTestInfo(j)->name());
  }
#define SK_EXPECT_PARITY_TEST(name, cpu, cuda) \
  EXPECT_TRUE(tests.count("CudaParity." #name)) << "op '" #name "' (" cuda ") has no CudaParity." #name " test";
  SK_OP_TABLE(SK_EXPECT_PARITY_TEST)
#undef SK_EXPECT_PARITY_TEST
}
