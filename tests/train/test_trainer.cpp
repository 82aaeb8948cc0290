// The training loop (src/train/trainer.cpp) on the CPU: on a small synthetic corpus (a repeating
// pattern with noise, written as real shards) the validation loss falls well below its start,
// and the same seed gives identical losses; config errors name the key or file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "testing/test_helpers.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;

TEST(Trainer, loss_falls_and_same_seed_same_losses) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer");
  config::RunConfig c = sk::testing::tiny_run(dir);
  train::TrainResult a = train::train(c);
  ASSERT_EQ(a.train_losses.size(), 60u);
  ASSERT_EQ(a.val_losses.size(), 2u);
  EXPECT_LT(a.val_losses.back().second, 0.5 * a.train_losses.front()) << "validation loss did not fall";
  EXPECT_LT(a.train_losses.back(), 0.5 * a.train_losses.front());
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "metrics.jsonl"));
  c.checkpoint.dir = (dir / "run2").string();
  c.eval.at_start = true;
  train::TrainResult b = train::train(c);
  EXPECT_EQ(a.train_losses, b.train_losses);  // bit-identical on the CPU
  ASSERT_EQ(b.val_losses.size(), 3u);         // with the validation before the first step
  EXPECT_EQ(b.val_losses[0].first, 0);
  EXPECT_NEAR(b.val_losses[0].second, std::log(32.0), 0.3);  // an untrained model: about uniform
  EXPECT_EQ(a.val_losses, std::vector(b.val_losses.begin() + 1, b.val_losses.end()));
  std::filesystem::remove_all(dir);
}

TEST(Trainer, errors_name_the_problem) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer_err");
  config::RunConfig c = sk::testing::tiny_run(dir);
  c.data.train = (dir / "missing_*.bin").string();
  EXPECT_NE(sk::testing::error_of([&] { train::train(c); }).find("missing_*.bin"), std::string::npos);
  c = sk::testing::tiny_run(dir);
  c.train.device = "cuda:63";  // absent here (no GPU, or a CPU-only build) and on any real machine
  EXPECT_NE(sk::testing::error_of([&] { train::train(c); }).find("train.device"), std::string::npos);
  c = sk::testing::tiny_run(dir);
  c.train.dtype = "bf16";  // bf16 is CUDA-only; device=cpu here
  const std::string e = sk::testing::error_of([&] { train::train(c); });
  EXPECT_NE(e.find("train.dtype"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}
