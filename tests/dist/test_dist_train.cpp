// Multi-process training on the CPU (TCP collectives) with real `sparsek train` processes, one
// per rank, given the torchrun variables (each test its own MASTER_PORT, so tests run in
// parallel), against in-process single-rank runs of the same tiny model and data
// (tests/train/train_test_util.h):
//  - the loader gives rank r of W the windows [r*B, (r+1)*B) of every global batch of W*B, so
//    2 ranks x batch 4 see exactly the batches of 1 rank x batch 8;
//  - 2 ranks x 4 follow 1 rank x 8 (losses, validation losses) within kRel; ZeRO-1 on 2 ranks is
//    bit-identical to plain data parallelism on 2 ranks; ZeRO-1 on 1 rank to plain 1 rank;
//  - checkpoints: plain 2 ranks -> 1 rank, 1 rank -> ZeRO-1 on 2 ranks, ZeRO-1 2 ranks (per-rank
//    optimizer shards + index) -> 1 rank plain and -> 1 rank ZeRO-1 continue within kRel of the
//    uninterrupted run; ZeRO-1 2 -> 2 continues bit-identically; ZeRO-1 on 3 ranks follows 1 rank
//    and its checkpoint resumes on 2 ranks (3 -> 2);
//  - a rank SIGKILLed mid-training: the other stops at once naming it (direct), and `sparsek
//    launch` exits 137 naming the killed rank.
//
// Tolerance kRel = 1e-5 (relative, on losses of about 0.9-3.5 over 20 steps): one rank computes the
// weight gradients of 8 sequences in one matmul, two ranks each of 4 and average them in f64 ->
// f32; the sums run in a different order, so gradients differ in the last f32 bits (~1e-7
// relative), and Adam (which divides by sqrt(v)) carries such differences on. Measured here: at
// most 1.1e-7 (printed by each test), so 1e-5 leaves room for other compilers and CPUs.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "data/loader.h"
#include "testing/test_helpers.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {

constexpr double kRel = 1e-5;

std::vector<std::string> base_sets() {
  return {"train.max_steps=20", "eval.every=10", "logging.every=5", "checkpoint.every=10", "checkpoint.keep=5",
          "optimizer.grad_clip=1.0", "dist.timeout_s=60"};
}

config::RunConfig tiny(const fs::path& dir, std::vector<std::string> extra) {
  std::vector<std::string> sets = base_sets();
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sk::testing::tiny_run(dir, sets);
}

// Runs `world` processes of `sparsek train` on config `c` (written to dir) with `sets`; returns
// each rank's result (rank 0 first).
std::vector<sk::testing::ChildResult> run_ranks(int world, int port, const config::RunConfig& c, const fs::path& dir,
                                                const std::string& tag, const std::vector<std::string>& sets,
                                                const std::vector<std::string>& env = {}) {
  const std::string cfg = sk::testing::write_config(c, dir / (tag + ".json"));
  std::vector<std::string> args = {"train", cfg};
  for (const std::string& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> e = {"RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(world),
                                  "LOCAL_RANK=" + std::to_string(r), "LOCAL_WORLD_SIZE=" + std::to_string(world),
                                  "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)};
    e.insert(e.end(), env.begin(), env.end());
    pids.push_back(sk::testing::spawn_sparsek(args, (dir / (tag + ".rank" + std::to_string(r) + ".log")).string(), e));
  }
  std::vector<sk::testing::ChildResult> out;
  for (int r = 0; r < world; ++r)
    out.push_back(sk::testing::wait_child(pids[size_t(r)], (dir / (tag + ".rank" + std::to_string(r) + ".log")).string()));
  return out;
}

void expect_ok(const std::vector<sk::testing::ChildResult>& rs) {
  for (size_t r = 0; r < rs.size(); ++r) EXPECT_TRUE(rs[r].exited(0)) << "rank " << r << ":\n" << rs[r].output;
}

std::vector<double> values(const std::vector<std::pair<int64_t, double>>& v, int64_t after = 0) {
  std::vector<double> out;
  for (const auto& [s, x] : v)
    if (s > after) out.push_back(x);
  return out;
}
std::vector<double> tail(const std::vector<double>& v, size_t from) { return {v.begin() + long(from), v.end()}; }

// Every a[i] within kRel of b[i]; prints the largest relative difference.
void expect_close(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double rel = std::abs(a[i] - b[i]) / std::max(1e-12, std::abs(b[i]));
    worst = std::max(worst, rel);
    EXPECT_LE(rel, kRel) << what << ": step " << i << ": " << a[i] << " vs " << b[i];
  }
  std::printf("%s: %zu values, largest relative difference %.3g\n", what.c_str(), a.size(), worst);
}

}  // namespace

TEST(DistTrain, each_rank_gets_its_part_of_the_same_global_batch) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_loader");
  const config::RunConfig c = tiny(dir, {});
  const auto shards = train::resolve_shards(c.data.train);
  data::DataLoaderOptions one;
  one.batch_size = 8;
  one.seq_len = 32;
  one.seed = 1;
  one.prefetch = 0;
  data::DataLoader whole(shards, data::DataLoader::Mode::Train, one);
  std::vector<std::unique_ptr<data::DataLoader>> parts;
  for (int r = 0; r < 2; ++r) {
    data::DataLoaderOptions o = one;
    o.batch_size = 4;
    o.rank = r;
    o.world_size = 2;
    parts.push_back(std::make_unique<data::DataLoader>(shards, data::DataLoader::Mode::Train, o));
  }
  for (int b = 0; b < 30; ++b) {  // past an epoch (23 global batches of 8 windows)
    const data::Batch w = *whole.next();
    const data::Batch p0 = *parts[0]->next(), p1 = *parts[1]->next();
    std::vector<int64_t> joined = p0.windows;
    joined.insert(joined.end(), p1.windows.begin(), p1.windows.end());
    EXPECT_EQ(joined, w.windows) << "global batch " << b;
    EXPECT_EQ(p0.next, w.next);
    EXPECT_EQ(p0.inputs.to_vector(), w.inputs.slice(0, 0, 4).contiguous().to_vector());
    EXPECT_EQ(p1.targets.to_vector(), w.targets.slice(0, 4, 8).contiguous().to_vector());
  }
  fs::remove_all(dir);
}

TEST(DistTrain, two_ranks_follow_one_rank_and_zero1_matches_plain) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_same_batch");
  config::RunConfig c = tiny(dir, {});
  const auto t0 = std::chrono::steady_clock::now();
  const train::TrainResult one = train::train(c);  // 1 rank x 8
  ASSERT_EQ(one.train_losses.size(), 20u);
  c.checkpoint.dir = (dir / "one_zero").string();
  c.dist.zero = 1;
  const train::TrainResult one_zero = train::train(c);  // ZeRO-1 on 1 rank
  EXPECT_EQ(one_zero.train_losses, one.train_losses);
  EXPECT_EQ(one_zero.val_losses, one.val_losses);
  c.dist.zero = 0;

  expect_ok(run_ranks(2, 29731, c, dir, "plain", {"train.batch_size=4", "checkpoint.dir=" + (dir / "plain").string()}));
  expect_ok(run_ranks(2, 29731, c, dir, "zero",
                      {"train.batch_size=4", "dist.zero=1", "checkpoint.dir=" + (dir / "zero").string()}));
  const auto plain = sk::testing::metrics_losses(dir / "plain" / "metrics.jsonl");
  const auto zero = sk::testing::metrics_losses(dir / "zero" / "metrics.jsonl");
  expect_close(values(plain), one.train_losses, "2 ranks x 4 vs 1 rank x 8, train loss");
  std::vector<double> one_val;
  for (const auto& [s, v] : one.val_losses) one_val.push_back(v);
  expect_close(values(sk::testing::metrics_losses(dir / "plain" / "metrics.jsonl", "val_loss")), one_val,
               "2 ranks x 4 vs 1 rank x 8, validation loss");
  EXPECT_EQ(zero, plain) << "ZeRO-1 on 2 ranks is not bit-identical to plain data parallelism on 2 ranks";
  EXPECT_EQ(sk::testing::metrics_losses(dir / "zero" / "metrics.jsonl", "val_loss"),
            sk::testing::metrics_losses(dir / "plain" / "metrics.jsonl", "val_loss"));
  std::printf("runtime %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  fs::remove_all(dir);
}

TEST(DistTrain, plain_checkpoints_resume_from_two_ranks_on_one_and_from_one_on_two_with_zero1) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_resume_plain");
  config::RunConfig c = tiny(dir, {});
  // 2 ranks x 4, 20 steps, checkpoints at 10 and 20 (rank 0 writes the single-process layout).
  expect_ok(run_ranks(2, 29741, c, dir, "two", {"train.batch_size=4", "checkpoint.dir=" + (dir / "two").string()}));
  const std::vector<double> two = values(sk::testing::metrics_losses(dir / "two" / "metrics.jsonl"));
  ASSERT_EQ(two.size(), 20u);
  EXPECT_TRUE(fs::exists(dir / "two" / "step_0000010" / "optimizer.safetensors"));
  // ... resumed on 1 rank x 8 from step 10.
  c.checkpoint.dir = (dir / "two_to_one").string();
  c.train.resume = (dir / "two" / "step_0000010").string();
  const train::TrainResult r21 = train::train(c);
  EXPECT_EQ(r21.first_step, 10);
  expect_close(r21.train_losses, tail(two, 10), "plain 2 ranks -> 1 rank, steps 11-20");

  // 1 rank x 8 uninterrupted, then resumed from its step 10 on 2 ranks x 4 with ZeRO-1.
  c.checkpoint.dir = (dir / "one").string();
  c.train.resume = "none";
  const train::TrainResult one = train::train(c);
  expect_ok(run_ranks(2, 29741, c, dir, "one_to_two",
                      {"train.batch_size=4", "dist.zero=1", "checkpoint.dir=" + (dir / "one_to_two").string(),
                       "train.resume=" + (dir / "one" / "step_0000010").string()}));
  expect_close(values(sk::testing::metrics_losses(dir / "one_to_two" / "metrics.jsonl"), 10), tail(one.train_losses, 10),
               "1 rank -> 2 ranks ZeRO-1, steps 11-20");
  // A global batch that differs is refused, naming the keys.
  c.checkpoint.dir = (dir / "bad").string();
  c.train.resume = (dir / "two" / "step_0000010").string();
  c.train.batch_size = 4;  // 1 x 4 != 2 x 4
  const std::string err = sk::testing::error_of([&] { train::train(c); });
  EXPECT_NE(err.find("the global batch (world size x train.batch_size) is 2 x 4 = 8 there but 1 x 4 = 4 here"),
            std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(DistTrain, zero1_checkpoints_are_sharded_and_resume_on_any_world_size) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_resume_zero");
  config::RunConfig c = tiny(dir, {});
  expect_ok(run_ranks(2, 29751, c, dir, "zero",
                      {"train.batch_size=4", "dist.zero=1", "checkpoint.dir=" + (dir / "zero").string()}));
  const std::vector<double> zero = values(sk::testing::metrics_losses(dir / "zero" / "metrics.jsonl"));
  ASSERT_EQ(zero.size(), 20u);
  const fs::path ck = dir / "zero" / "step_0000010";
  EXPECT_TRUE(fs::exists(ck / "optimizer.rank00000-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(ck / "optimizer.rank00001-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(ck / "optimizer-index.json"));
  EXPECT_FALSE(fs::exists(ck / "optimizer.safetensors"));
  for (const auto& e : fs::directory_iterator(dir / "zero"))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "left over: " << e.path();
  // -> 1 rank, plain AdamW (state re-assembled from the shards).
  c.checkpoint.dir = (dir / "to_one").string();
  c.train.resume = ck.string();
  const train::TrainResult to_one = train::train(c);
  expect_close(to_one.train_losses, tail(zero, 10), "ZeRO-1 2 ranks -> 1 rank plain, steps 11-20");
  // -> 1 rank, ZeRO-1 (re-sharded 2 -> 1).
  c.checkpoint.dir = (dir / "to_one_zero").string();
  c.dist.zero = 1;
  const train::TrainResult to_one_zero = train::train(c);
  EXPECT_EQ(to_one_zero.train_losses, to_one.train_losses);
  c.dist.zero = 0;
  // -> 2 ranks, ZeRO-1: the exact continuation.
  expect_ok(run_ranks(2, 29751, c, dir, "again",
                      {"train.batch_size=4", "dist.zero=1", "checkpoint.dir=" + (dir / "again").string(),
                       "train.resume=" + ck.string()}));
  EXPECT_EQ(values(sk::testing::metrics_losses(dir / "again" / "metrics.jsonl"), 10), tail(zero, 10));
  fs::remove_all(dir);
}

TEST(DistTrain, zero1_three_ranks_resume_on_two) {
  // Global batch 12: 3 ranks x 4 (ZeRO-1 shards of 3, parameters split three ways), resumed at
  // step 10 on 2 ranks x 6 (re-sharded 3 -> 2), against 1 rank x 12.
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_three");
  config::RunConfig c = tiny(dir, {"train.batch_size=12"});
  const train::TrainResult one = train::train(c);
  expect_ok(run_ranks(3, 29781, c, dir, "three",
                      {"train.batch_size=4", "dist.zero=1", "checkpoint.dir=" + (dir / "three").string()}));
  const std::vector<double> three = values(sk::testing::metrics_losses(dir / "three" / "metrics.jsonl"));
  expect_close(three, one.train_losses, "ZeRO-1 3 ranks x 4 vs 1 rank x 12");
  EXPECT_TRUE(fs::exists(dir / "three" / "step_0000010" / "optimizer.rank00002-of-00003.safetensors"));
  expect_ok(run_ranks(2, 29781, c, dir, "two",
                      {"train.batch_size=6", "dist.zero=1", "checkpoint.dir=" + (dir / "two").string(),
                       "train.resume=" + (dir / "three" / "step_0000010").string()}));
  expect_close(values(sk::testing::metrics_losses(dir / "two" / "metrics.jsonl"), 10), tail(three, 10),
               "ZeRO-1 3 ranks -> 2 ranks, steps 11-20");
  fs::remove_all(dir);
}

TEST(DistTrain, a_killed_rank_stops_the_other_naming_it) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_kill");
  config::RunConfig c = tiny(dir, {"train.max_steps=100000", "checkpoint.every=0", "eval.every=0"});
  const auto t0 = std::chrono::steady_clock::now();
  const auto rs = run_ranks(2, 29761, c, dir, "kill", {"train.batch_size=4", "dist.timeout_s=20"},
                            {"SPARSEK_TEST_DIST_KILL=1:3"});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(rs[1].killed_by(SIGKILL)) << rs[1].output;
  EXPECT_FALSE(rs[0].exited(0)) << rs[0].output;
  EXPECT_NE(rs[0].output.find("rank 1 closed its connection"), std::string::npos) << rs[0].output;
  EXPECT_LT(secs, 20) << "rank 0 did not stop within dist.timeout_s";
  std::printf("rank 0 stopped %.1f s after the start\n", secs);
  fs::remove_all(dir);
}

TEST(DistTrain, sparsek_launch_names_a_killed_rank) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_dist_launch_kill");
  config::RunConfig c = tiny(dir, {"train.max_steps=100000", "checkpoint.every=0", "eval.every=0", "train.batch_size=4",
                                   "dist.timeout_s=20"});
  const std::string cfg = sk::testing::write_config(c, dir / "c.json");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = sk::testing::run_sparsek({"launch", "--nproc", "2", "--master-port", "29771", cfg},
                                          (dir / "launch.log").string(), {"SPARSEK_TEST_DIST_KILL=1:3"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20);
  EXPECT_TRUE(r.exited(128 + 9)) << r.output;
  EXPECT_NE(r.output.find("launch: rank 1 (pid "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("was killed by signal 9"), std::string::npos) << r.output;
  fs::remove_all(dir);
}
