// util::env_choice (src/util/env.h): the default when unset or empty, the index of a listed value,
// and the error naming the variable and its choices for anything else.
#include <gtest/gtest.h>

#include <string>

#include "testing/scoped_env.h"
#include "util/check.h"
#include "util/env.h"

using sk::testing::ScopedEnv;
using sk::util::env_choice;

TEST(EnvChoice, unset_and_empty_give_the_first_choice) {
  {
    ScopedEnv e("SPARSEK_TEST_ENV_CHOICE", nullptr);
    EXPECT_EQ(env_choice("SPARSEK_TEST_ENV_CHOICE", {"auto", "mma", "wgmma"}), 0);
  }
  ScopedEnv e("SPARSEK_TEST_ENV_CHOICE", "");
  EXPECT_EQ(env_choice("SPARSEK_TEST_ENV_CHOICE", {"auto", "mma", "wgmma"}), 0);
}

TEST(EnvChoice, a_listed_value_gives_its_index) {
  ScopedEnv e("SPARSEK_TEST_ENV_CHOICE", "wgmma");
  EXPECT_EQ(env_choice("SPARSEK_TEST_ENV_CHOICE", {"auto", "mma", "wgmma"}), 2);
  EXPECT_EQ(env_choice("SPARSEK_TEST_ENV_CHOICE", {"wgmma", "mma"}), 0);
}

TEST(EnvChoice, another_value_is_refused_with_the_choices) {
  ScopedEnv e("SPARSEK_TEST_ENV_CHOICE", "wgmm");
  try {
    env_choice("SPARSEK_TEST_ENV_CHOICE", {"auto", "mma", "wgmma"});
    FAIL() << "expected an error";
  } catch (const sk::Error& err) {
    EXPECT_NE(std::string(err.what()).find("SPARSEK_TEST_ENV_CHOICE must be auto, mma or wgmma, got 'wgmm'"),
              std::string::npos)
        << err.what();
  }
}
