// The training loop (src/train/trainer.cpp) on the CPU: on a small synthetic corpus (a repeating
// pattern with noise, written as real shards) the validation loss falls well below its start,
// and the same seed gives identical losses; config errors name the key or file.
#include <gtest/gtest.h>

#include <filesystem>

#include "config/run_config.h"
#include "data/shard.h"
#include "tensor/random.h"
#include "testing/test_helpers.h"
#include "train/trainer.h"

using namespace sk;

namespace {
config::RunConfig tiny_run(const std::filesystem::path& dir) {
  Rng rng(3);
  std::vector<uint32_t> train_tokens, val_tokens;
  for (int i = 0; i < 6000; ++i) train_tokens.push_back(rng.uniform() < 0.1 ? uint32_t(rng.below(32)) : uint32_t((i * 7) % 32));
  for (int i = 0; i < 800; ++i) val_tokens.push_back(uint32_t((i * 7) % 32));
  data::write_shard((dir / "syn_train_000000.bin").string(), train_tokens);
  data::write_shard((dir / "syn_val_000000.bin").string(), val_tokens);
  config::RunConfig c = config::load_run_config(
      "", {"model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.vocab_size=32", "model.pad_vocab_multiple=8",
           "model.block_size=32", "train.seq_len=32", "train.batch_size=8", "train.max_steps=60", "train.device=cpu",
           "optimizer.lr=0.01", "schedule.warmup_steps=5", "eval.every=30", "eval.max_batches=0", "logging.every=20",
           "logging.metrics_file=metrics.jsonl"});
  c.data.train = (dir / "syn_train_*.bin").string();
  c.data.val = (dir / "syn_val_*.bin").string();
  c.checkpoint.dir = (dir / "run").string();
  return c;
}
}  // namespace

TEST(Trainer, loss_falls_and_same_seed_same_losses) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer");
  config::RunConfig c = tiny_run(dir);
  train::TrainResult a = train::train(c);
  ASSERT_EQ(a.train_losses.size(), 60u);
  ASSERT_EQ(a.val_losses.size(), 2u);
  EXPECT_LT(a.val_losses.back().second, 0.5 * a.train_losses.front()) << "validation loss did not fall";
  EXPECT_LT(a.train_losses.back(), 0.5 * a.train_losses.front());
  train::TrainResult b = train::train(c);
  EXPECT_EQ(a.train_losses, b.train_losses);  // bit-identical on the CPU
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "metrics.jsonl"));
  std::filesystem::remove_all(dir);
}

TEST(Trainer, errors_name_the_problem) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer_err");
  config::RunConfig c = tiny_run(dir);
  c.data.train = (dir / "missing_*.bin").string();
  EXPECT_NE(sk::testing::error_of([&] { train::train(c); }).find("missing_*.bin"), std::string::npos);
  c = tiny_run(dir);
  c.train.device = "cuda";
  EXPECT_NE(sk::testing::error_of([&] { train::train(c); }).find("train.device"), std::string::npos);
  std::filesystem::remove_all(dir);
}
