// Every op in the op table (src/ops/op_table.h) has a test named Gradcheck.<op> in this binary.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ops/op_table.h"

TEST(OpCoverage, every_op_has_a_gradcheck) {
  std::set<std::string> tests;
  const ::testing::UnitTest* ut = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < ut->total_test_suite_count(); ++i) {
    const ::testing::TestSuite* s = ut->GetTestSuite(i);
    for (int j = 0; j < s->total_test_count(); ++j) tests.insert(std::string(s->name()) + "." + s->GetTestInfo(j)->name());
  }
#define SK_EXPECT_GRADCHECK_TEST(name, cpu, cuda) \
  EXPECT_TRUE(tests.count("Gradcheck." #name)) << "op '" #name "' (" cpu ") has no Gradcheck." #name " test";
  SK_OP_TABLE(SK_EXPECT_GRADCHECK_TEST)
#undef SK_EXPECT_GRADCHECK_TEST
}
