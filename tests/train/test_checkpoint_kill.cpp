// A `sparsek train` process SIGKILLed while writing a checkpoint (src/train/checkpoint.cpp)
// leaves the previous checkpoint intact: it opens and verifies, and resuming from it finishes the
// run with losses bit-identical to an uninterrupted run. Deterministic kills at each phase of the
// write (SPARSEK_TEST_CHECKPOINT_KILL: half-written weights, weights written, everything written
// but not renamed, renamed but `latest` not updated), then kills at random moments of a run that
// saves every step. The child is build/sparsek (SPARSEK_BINARY), started with posix_spawn.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "model/gpt.h"
#include "testing/test_helpers.h"
#include "train/checkpoint.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {

// Opens the newest checkpoint of `run` and loads its weights and optimizer state into a fresh
// model of config `c` (every file verified); returns its step.
int64_t verify_latest(const config::RunConfig& c, const fs::path& run) {
  const train::Checkpoint ck = train::Checkpoint::open(run);
  Rng rng(0);
  model::Gpt gpt(c.model, c.attention, DType::F32, Device::cpu(), rng);
  const auto named = gpt.named_parameters();
  optim::AdamW opt({});
  for (const auto& [n, t] : named) opt.add_param(t);
  ck.load_weights(named);
  ck.load_optimizer(named, opt);
  return ck.step();
}

}  // namespace

TEST(CheckpointKill, killed_at_each_phase_of_a_write_the_previous_checkpoint_resumes) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_ckpt_kill");
  config::RunConfig c = sk::testing::tiny_run(dir, {"checkpoint.every=20", "eval.every=0"});
  const train::TrainResult full = train::train(c);  // uninterrupted, in process
  const auto full_losses = sk::testing::metrics_losses(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(full_losses.size(), 60u);

  for (const std::string phase : {"model-partial", "model", "state", "renamed"}) {
    SCOPED_TRACE(phase);
    const fs::path run = dir / ("killed-" + phase);
    c.checkpoint.dir = run.string();
    c.train.resume = "none";
    const std::string cfg = sk::testing::write_config(c, dir / ("cfg-" + phase + ".json"));
    const auto killed = sk::testing::run_sparsek({"train", cfg}, (dir / ("kill-" + phase + ".log")).string(),
                                                 {"SPARSEK_TEST_CHECKPOINT_KILL=40:" + phase});
    ASSERT_TRUE(killed.killed_by(SIGKILL)) << killed.output;
    // What the kill left: a temporary directory (before the rename) or a complete step_0000040
    // that `latest` does not name yet; either way the latest checkpoint is step 20 and it loads.
    EXPECT_EQ(fs::exists(run / "step_0000040"), phase == "renamed");
    EXPECT_EQ(verify_latest(c, run), 20);

    const auto resumed = sk::testing::run_sparsek({"train", cfg, "--set", "train.resume=auto"},
                                                  (dir / ("resume-" + phase + ".log")).string());
    ASSERT_TRUE(resumed.exited(0)) << resumed.output;
    EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
    EXPECT_EQ(sk::testing::metrics_losses(run / "metrics.jsonl"), full_losses);  // bit-identical
    EXPECT_EQ(verify_latest(c, run), 60);
    for (const auto& e : fs::directory_iterator(run))  // no leftover temporary directories
      EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
  }
  fs::remove_all(dir);
}

TEST(CheckpointKill, killed_at_random_moments_always_leaves_a_loadable_checkpoint) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_ckpt_kill_random");
  // Saving every step, so that most of the time is spent writing checkpoints.
  config::RunConfig c = sk::testing::tiny_run(dir, {"checkpoint.every=1", "checkpoint.keep=2", "eval.every=0",
                                                    "train.max_steps=150"});
  c.checkpoint.dir = (dir / "full").string();
  train::train(c);
  const auto full_losses = sk::testing::metrics_losses(dir / "full" / "metrics.jsonl");

  c.checkpoint.dir = (dir / "run").string();
  c.train.resume = "auto";
  const std::string cfg = sk::testing::write_config(c, dir / "cfg.json");
  Rng rng(2024);
  int64_t last = 0, kills = 0, mid_write = 0;
  for (int round = 0; round < 6 && last < 150; ++round) {
    const std::string log = (dir / ("round" + std::to_string(round) + ".log")).string();
    const pid_t pid = sk::testing::spawn_sparsek({"train", cfg}, log);
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng.below(250)));
    ::kill(pid, SIGKILL);
    const auto r = sk::testing::wait_child(pid, log);
    if (!r.killed_by(SIGKILL)) {  // finished first
      ASSERT_TRUE(r.exited(0)) << r.output;
      last = 150;
      break;
    }
    ++kills;
    if (!fs::exists(dir / "run")) continue;  // killed before the run directory was made
    for (const auto& e : fs::directory_iterator(dir / "run"))
      mid_write += e.path().filename().string().rfind(".tmp-", 0) == 0;
    if (!train::latest_checkpoint(dir / "run")) continue;  // killed before the first save
    const int64_t step = verify_latest(c, dir / "run");
    EXPECT_GE(step, last);  // progress is never lost
    last = step;
  }
  std::printf("[ info ] %lld kills, %lld of them during a checkpoint write; reached step %lld\n", (long long)kills,
              (long long)mid_write, (long long)last);
  const auto done = sk::testing::run_sparsek({"train", cfg}, (dir / "final.log").string());
  ASSERT_TRUE(done.exited(0)) << done.output;
  EXPECT_EQ(sk::testing::metrics_losses(dir / "run" / "metrics.jsonl"), full_losses);
  fs::remove_all(dir);
}
