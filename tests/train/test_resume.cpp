// Checkpoints and resume (src/train/checkpoint.cpp, trainer.cpp) on the CPU, in process: a run
// stopped at step 25 and resumed gives losses (train and validation) and metrics bit-identical to
// an uninterrupted run, also with gradient accumulation (and a validation at step 0) and from an explicit checkpoint path;
// only the last checkpoint.keep are kept and `latest` names the newest; a corrupt, truncated or
// incompatible checkpoint and a fresh run into a used directory fail with errors naming the file
// or key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/test_helpers.h"
#include "train/checkpoint.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;
namespace fs = std::filesystem;
using sk::testing::error_of;

namespace {

std::vector<double> slice(const std::vector<double>& v, size_t from, size_t to) {
  return std::vector<double>(v.begin() + from, v.begin() + to);
}

void expect_resume_exact(const std::vector<std::string>& extra) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_resume");
  std::vector<std::string> sets = {"checkpoint.every=20", "checkpoint.keep=5"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  config::RunConfig c = sk::testing::tiny_run(dir, sets);
  const train::TrainResult full = train::train(c);
  ASSERT_EQ(full.train_losses.size(), 60u);

  c.checkpoint.dir = (dir / "stopped").string();
  train::TrainOptions stop_at_25;
  stop_at_25.should_stop = [](int64_t step) { return step == 25; };
  const train::TrainResult first = train::train(c, stop_at_25);
  EXPECT_TRUE(first.stopped);
  EXPECT_EQ(first.last_step, 25);
  EXPECT_EQ(first.train_losses, slice(full.train_losses, 0, 25));
  EXPECT_EQ(first.last_checkpoint, (dir / "stopped" / "step_0000025").string());

  c.train.resume = "auto";
  const train::TrainResult second = train::train(c);
  EXPECT_EQ(second.first_step, 25);
  EXPECT_EQ(second.train_losses, slice(full.train_losses, 25, 60));  // bit-identical
  auto later = full.val_losses;  // steps 30 and 60 (and 0 with eval.at_start, before the stop)
  std::erase_if(later, [](const auto& p) { return p.first <= 25; });
  EXPECT_EQ(second.val_losses, later);
  // The metrics file of the stopped+resumed run has the same records (tokens/s aside).
  EXPECT_EQ(sk::testing::metrics_losses(dir / "stopped" / "metrics.jsonl"),
            sk::testing::metrics_losses(dir / "run" / "metrics.jsonl"));
  EXPECT_EQ(sk::testing::metrics_losses(dir / "stopped" / "metrics.jsonl", "val_loss"),
            sk::testing::metrics_losses(dir / "run" / "metrics.jsonl", "val_loss"));

  // From an explicit checkpoint of the uninterrupted run into a new directory.
  c.checkpoint.dir = (dir / "from40").string();
  c.train.resume = (dir / "run" / "step_0000040").string();
  const train::TrainResult third = train::train(c);
  EXPECT_EQ(third.train_losses, slice(full.train_losses, 40, 60));
  fs::remove_all(dir);
}

}  // namespace

TEST(Resume, stop_and_resume_is_bit_identical) { expect_resume_exact({}); }

TEST(Resume, stop_and_resume_is_bit_identical_with_grad_accum) {
  expect_resume_exact({"train.grad_accum=2", "train.batch_size=4", "optimizer.grad_clip=0.5", "eval.at_start=true"});
}

TEST(Resume, keeps_the_last_n_and_latest_names_the_newest) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_resume_keep");
  config::RunConfig c = sk::testing::tiny_run(dir, {"checkpoint.every=10", "checkpoint.keep=2", "eval.every=0"});
  train::train(c);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "run")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".lock", "latest", "metrics.jsonl", "step_0000050", "step_0000060"}));
  std::ifstream latest(dir / "run" / "latest");
  std::string l;
  std::getline(latest, l);
  EXPECT_EQ(l, "step_0000060");
  const train::Checkpoint ck = train::Checkpoint::open(dir / "run");
  EXPECT_EQ(ck.step(), 60);
  EXPECT_EQ(ck.dir(), dir / "run" / "step_0000060");
  // Resuming a finished run does nothing more.
  c.train.resume = "auto";
  const train::TrainResult again = train::train(c);
  EXPECT_EQ(again.first_step, 60);
  EXPECT_TRUE(again.train_losses.empty());
  fs::remove_all(dir);
}

TEST(Resume, bad_checkpoints_and_configs_are_named) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_resume_bad");
  config::RunConfig c = sk::testing::tiny_run(dir, {"checkpoint.every=30", "eval.every=0"});
  train::train(c);
  const fs::path step30 = dir / "run" / "step_0000030";

  // A fresh run into a directory that holds one.
  std::string e = error_of([&] { train::train(c); });
  EXPECT_NE(e.find("already holds a run"), std::string::npos) << e;
  EXPECT_NE(e.find("train.resume=auto"), std::string::npos) << e;

  // Incompatible model: the key and state.json are named.
  config::RunConfig other = c;
  other.model.n_embd = 16;
  other.checkpoint.dir = (dir / "other").string();
  other.train.resume = step30.string();
  e = error_of([&] { train::train(other); });
  EXPECT_NE(e.find("model.n_embd"), std::string::npos) << e;
  EXPECT_NE(e.find((step30 / "state.json").string()), std::string::npos) << e;

  // A flipped byte in the weights: sha256 mismatch naming the file.
  const fs::path copy = dir / "copy";
  fs::create_directories(copy);
  fs::copy(step30, copy / "step_0000030", fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const fs::path model = copy / "step_0000030" / "model.safetensors";
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  other = c;
  other.checkpoint.dir = (dir / "resumed").string();
  other.train.resume = (copy / "step_0000030").string();
  e = error_of([&] { train::train(other); });
  EXPECT_NE(e.find(model.string()), std::string::npos) << e;
  EXPECT_NE(e.find("sha256"), std::string::npos) << e;

  // Truncated optimizer state.
  const fs::path optim = copy / "step_0000030" / "optimizer.safetensors";
  fs::resize_file(optim, fs::file_size(optim) - 10);
  e = error_of([&] { train::Checkpoint::open(copy / "step_0000030"); });
  EXPECT_NE(e.find(optim.string()), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;

  // Unparsable state.json; a directory with no checkpoint.
  std::ofstream(copy / "step_0000030" / "state.json") << "{\"step\": ";
  e = error_of([&] { train::Checkpoint::open(copy / "step_0000030"); });
  EXPECT_NE(e.find("state.json is not valid JSON"), std::string::npos) << e;
  e = error_of([&] { train::Checkpoint::open(dir); });
  EXPECT_NE(e.find("no checkpoint in"), std::string::npos) << e;
  fs::remove_all(dir);
}
