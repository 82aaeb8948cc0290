// Every op in the op table (src/ops/op_table.h) has a test named Gradcheck.<op> in this binary.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ops/op_table.h"
#include "testing/test_helpers.h"

TEST(OpCoverage, every_op_has_a_gradcheck) {
  const std::set<std::string> tests = sk::testing::registered_test_names();
#define SK_EXPECT_GRADCHECK_TEST(name, cpu, cuda) \
  EXPECT_TRUE(tests.count("Gradcheck." #name)) << "op '" #name "' (" cpu ") has no Gradcheck." #name " test";
  SK_OP_TABLE(SK_EXPECT_GRADCHECK_TEST)
#undef SK_EXPECT_GRADCHECK_TEST
}
