// The local launcher (src/dist/launcher.h) with /bin/sh children: every rank gets its world
// variables and NCCL_NVLS_ENABLE=0; a rank that SIGKILLs itself makes the launcher terminate the
// others (which would otherwise sleep for a minute) and report that rank; a rank exiting non-zero
// is named with its status.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dist/launcher.h"
#include "testing/test_helpers.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {
std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST(Launcher, every_rank_gets_its_world_variables) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_launch_env");
  dist::LaunchOptions o;
  o.nproc = 3;
  o.master_port = 31234;
  o.argv = {"/bin/sh", "-c",
            "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT $NCCL_NVLS_ENABLE\" > " +
                dir.string() + "/rank$RANK"};
  const dist::LaunchResult r = dist::launch(o);
  EXPECT_EQ(r.exit_code, 0) << r.message;
  EXPECT_EQ(r.failed_rank, -1);
  for (int k = 0; k < 3; ++k)
    EXPECT_EQ(read(dir / ("rank" + std::to_string(k))),
              std::to_string(k) + " 3 " + std::to_string(k) + " 3 127.0.0.1 31234 0\n");
  fs::remove_all(dir);
}

TEST(Launcher, a_rank_killed_by_a_signal_terminates_the_others_and_is_named) {
  dist::LaunchOptions o;
  o.nproc = 3;
  o.grace_seconds = 5;
  o.argv = {"/bin/sh", "-c", "if [ \"$RANK\" = 1 ]; then sleep 0.2; kill -9 $$; fi; exec sleep 60"};
  const auto t0 = std::chrono::steady_clock::now();
  const dist::LaunchResult r = dist::launch(o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 10) << "the surviving ranks were not terminated";
  EXPECT_EQ(r.failed_rank, 1);
  EXPECT_EQ(r.exit_code, 128 + 9);
  EXPECT_NE(r.message.find("rank 1"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("killed by signal 9"), std::string::npos) << r.message;
}

TEST(Launcher, a_survivor_ignoring_sigterm_is_killed_after_the_grace_period) {
  dist::LaunchOptions o;
  o.nproc = 2;
  o.grace_seconds = 0.5;
  o.argv = {"/bin/sh", "-c", "if [ \"$RANK\" = 0 ]; then sleep 0.2; exit 3; fi; trap '' TERM; sleep 60"};
  const auto t0 = std::chrono::steady_clock::now();
  const dist::LaunchResult r = dist::launch(o);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10);
  EXPECT_EQ(r.failed_rank, 0);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.message.find("rank 0"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("exited with status 3"), std::string::npos) << r.message;
}

// `sparsek launch --nproc 2` end to end on the CPU: both ranks start `sparsek train`, which fails
// (no data at the configured path); the launcher exits with that status and names the failing
// rank. (Training across ranks on the CPU: tests/dist/test_dist_train.cpp.)
TEST(Launcher, sparsek_launch_names_the_failing_rank) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_launch_cli");
  const std::string log = (dir / "launch.log").string();
  const std::string cmd = std::string(SPARSEK_BINARY) + " launch --nproc 2 --master-port 29877 " + SPARSEK_SOURCE_DIR +
                          "/configs/quickstart-cpu.json --set train.device=cpu --set data.train=" + dir.string() +
                          "/none_*.bin --set checkpoint.dir=" + (dir / "run").string() + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string out = read(log);
  EXPECT_NE(out.find("launch: rank "), std::string::npos) << out;
  EXPECT_NE(out.find("exited with status 2"), std::string::npos) << out;
  EXPECT_NE(out.find("no shard file matches"), std::string::npos) << out;
  fs::remove_all(dir);
}
