// The training loop on CUDA (GPU only; skipped without a device): bf16 parameters and
// activations with fp32 AdamW masters, head dim 64 so attention runs in the fused flash kernels.
// On the synthetic corpus of train_test_util.h:
//   - the CUDA run's first loss equals the CPU f32 run's (same seed, same initial weights rounded
//     to bf16) within 2e-2 relative; its validation loss falls below half the first loss, and
//     ends within 0.1 + 10% of the CPU run's (bf16 rounding changes the trajectory, not where it
//     goes; a wrong kernel or a lost update does not get there);
//   - stop at step 25 + resume gives losses within 3e-2 relative of the uninterrupted CUDA run
//     at every step (not bit-identical: the flash backward accumulates dQ with float atomics, so
//     the summation order varies; a resume that lost the masters, moments or data cursor is off
//     by far more), and the checkpoint records precision bf16;
//   - train.dtype/train.device mismatches on resume and an absent device are errors naming the key;
//   - model.init_from on CUDA bf16 keeps the imported weights: the fp32 masters are taken from them
//     (a fine-tuning run at a tiny learning rate stays at the pretrained model's validation loss
//     instead of falling back to its random initialisation at the first step).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "testing/parity.h"
#include "testing/test_helpers.h"
#include "train/checkpoint.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {
const std::vector<std::string> kD64 = {"model.n_embd=128", "model.n_head=2", "optimizer.lr=0.003"};
}

TEST(CudaTrainer, bf16_loss_falls_and_tracks_the_cpu_run) {
  SK_REQUIRE_CUDA();
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer_cuda");
  config::RunConfig cpu = sk::testing::tiny_run(dir, kD64);
  const train::TrainResult a = train::train(cpu);
  config::RunConfig gpu = cpu;
  gpu.train.device = "cuda";
  gpu.train.dtype = "auto";
  gpu.checkpoint.dir = (dir / "gpu").string();
  const train::TrainResult b = train::train(gpu);
  ASSERT_EQ(b.train_losses.size(), a.train_losses.size());
  ASSERT_EQ(b.val_losses.size(), 2u);
  std::printf("[cuda train] first loss cpu %.5f cuda %.5f; final val cpu %.4f cuda %.4f\n", a.train_losses[0],
              b.train_losses[0], a.val_losses.back().second, b.val_losses.back().second);
  EXPECT_NEAR(b.train_losses[0], a.train_losses[0], 2e-2 * a.train_losses[0]);
  EXPECT_LT(b.val_losses.back().second, 0.5 * b.train_losses.front()) << "validation loss did not fall on CUDA";
  EXPECT_NEAR(b.val_losses.back().second, a.val_losses.back().second, 0.1 + 0.1 * a.val_losses.back().second);
  EXPECT_EQ(b.skipped_steps, 0);
  fs::remove_all(dir);
}

TEST(CudaTrainer, stop_and_resume_continues_closely) {
  SK_REQUIRE_CUDA();
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer_cuda_resume");
  std::vector<std::string> sets = kD64;
  sets.insert(sets.end(), {"train.device=cuda", "train.dtype=bf16", "checkpoint.every=20"});
  config::RunConfig c = sk::testing::tiny_run(dir, sets);
  const train::TrainResult full = train::train(c);
  ASSERT_EQ(full.train_losses.size(), 60u);

  c.checkpoint.dir = (dir / "stopped").string();
  train::TrainOptions stop_at_25;
  stop_at_25.should_stop = [](int64_t step) { return step == 25; };
  const train::TrainResult first = train::train(c, stop_at_25);
  ASSERT_TRUE(first.stopped);
  const train::Checkpoint ck = train::Checkpoint::open(first.last_checkpoint);
  EXPECT_EQ(ck.state().value("precision", ""), "bf16");
  c.train.resume = "auto";
  const train::TrainResult second = train::train(c);
  ASSERT_EQ(second.first_step, 25);
  ASSERT_EQ(second.train_losses.size(), 35u);
  double worst = 0;
  for (size_t i = 0; i < 35; ++i)
    worst = std::max(worst, std::abs(second.train_losses[i] - full.train_losses[25 + i]) / full.train_losses[25 + i]);
  std::printf("[cuda train] resume: worst relative loss difference over steps 26..60: %.2e\n", worst);
  EXPECT_LT(worst, 3e-2);

  // The same checkpoint in f32 (on CUDA) or on the CPU: refused, naming the keys.
  config::RunConfig f32 = c;
  f32.train.dtype = "f32";
  f32.checkpoint.dir = (dir / "f32").string();
  f32.train.resume = first.last_checkpoint;
  const std::string e1 = sk::testing::error_of([&] { train::train(f32); });
  EXPECT_NE(e1.find("train.dtype"), std::string::npos) << e1;
  EXPECT_NE(e1.find("bf16"), std::string::npos) << e1;
  fs::remove_all(dir);
}

TEST(CudaTrainer, absent_device_is_named) {
  SK_REQUIRE_CUDA();
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer_cuda_err");
  config::RunConfig c = sk::testing::tiny_run(dir, {"train.device=cuda:63"});
  const std::string e = sk::testing::error_of([&] { train::train(c); });
  EXPECT_NE(e.find("train.device"), std::string::npos) << e;
  EXPECT_NE(e.find("cuda:63"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(CudaTrainer, init_from_keeps_the_imported_weights_in_bf16) {
  SK_REQUIRE_CUDA();
  const auto dir = sk::testing::fresh_test_dir("sk_test_trainer_cuda_init_from");
  std::vector<std::string> sets = kD64;
  sets.insert(sets.end(), {"train.device=cuda", "train.dtype=bf16", "checkpoint.every=60"});
  const config::RunConfig pre = sk::testing::tiny_run(dir, sets);
  const train::TrainResult a = train::train(pre);
  const double pretrained = a.val_losses.back().second;
  train::Checkpoint::open(a.last_checkpoint).export_hf((dir / "hf").string());  // `sparsek export`
  std::vector<std::string> ft_sets = sets;
  ft_sets.insert(ft_sets.end(), {"model.init_from=hf:" + (dir / "hf").string(), "optimizer.lr=1e-6", "train.max_steps=4",
                                 "schedule.warmup_steps=0", "eval.every=4", "eval.at_start=true", "checkpoint.every=0"});
  config::RunConfig ft = sk::testing::tiny_run(dir, ft_sets);
  ft.checkpoint.dir = (dir / "ft").string();
  const train::TrainResult b = train::train(ft);
  ASSERT_EQ(b.val_losses.size(), 2u);
  std::printf("[cuda train] init_from: pretrained val %.4f, fine-tune step 0 %.4f, step 4 %.4f (first loss of the "
              "pretraining %.4f)\n", pretrained, b.val_losses[0].second, b.val_losses[1].second, a.train_losses.front());
  EXPECT_LT(pretrained, 0.5 * a.train_losses.front());
  EXPECT_NEAR(b.val_losses[0].second, pretrained, 2e-2 * pretrained + 1e-3) << "step 0 is not the imported model";
  EXPECT_NEAR(b.val_losses[1].second, b.val_losses[0].second, 2e-2 * b.val_losses[0].second + 1e-3)
      << "4 steps at lr 1e-6 moved the model: the optimizer wrote back weights that were not the imported ones";
  fs::remove_all(dir);
}
