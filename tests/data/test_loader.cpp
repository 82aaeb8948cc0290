// DataLoader (src/data/loader.h) on tiny shards whose tokens are a running counter (so a token
// identifies its position): window layout and shift of targets, ranks taking disjoint parts
// whose union is the global batch, seed determinism, epoch reshuffles, exact resume from a saved
// cursor (JSON), validation covering the split exactly once with padding, prefetch on/off
// equality, the keyed permutation being a bijection, and option errors.
#include <gtest/gtest.h>

#include "testing/test_helpers.h"
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "data/loader.h"
#include "data/shard.h"
#include "util/check.h"

using namespace sk;
using namespace sk::data;
namespace fs = std::filesystem;

using sk::testing::error_of;

namespace {

constexpr int64_t kT = 16;

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sk::testing::fresh_test_dir("sk_test_loader");
    // 3 shards: 1000, 777, 1501 tokens; token values count up across them.
    uint32_t next = 0;
    for (int64_t n : sizes_) {
      std::vector<uint32_t> t(static_cast<size_t>(n));
      for (auto& x : t) x = next++;
      paths_.push_back((dir_ / shard_file_name("t", "train", static_cast<int64_t>(paths_.size()))).string());
      write_shard(paths_.back(), t, 1);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  DataLoader make(DataLoader::Mode mode, int64_t B, int rank, int world, uint64_t seed, int prefetch) {
    DataLoaderOptions o;
    o.batch_size = B;
    o.seq_len = kT;
    o.rank = rank;
    o.world_size = world;
    o.seed = seed;
    o.prefetch = prefetch;
    return DataLoader(paths_, mode, o);
  }

  fs::path dir_;
  std::vector<int64_t> sizes_ = {1000, 777, 1501};
  std::vector<std::string> paths_;
};

std::vector<int32_t> values(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

bool same_batch(const Batch& a, const Batch& b) {
  return values(a.inputs) == values(b.inputs) && values(a.targets) == values(b.targets) && a.windows == b.windows &&
         a.next == b.next && a.epoch == b.epoch && a.num_targets == b.num_targets;
}


}  // namespace

TEST(WindowPermutation, is_a_bijection) {
  for (int64_t n : {1, 2, 3, 5, 64, 1000, 4097}) {
    for (uint64_t epoch : {0, 1}) {
      WindowPermutation p(n, 42, epoch);
      std::vector<char> seen(static_cast<size_t>(n), 0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = p(i);
        ASSERT_TRUE(v >= 0 && v < n);
        ASSERT_FALSE(seen[v]) << "n " << n << " value " << v << " twice";
        seen[v] = 1;
      }
    }
  }
  WindowPermutation a(1000, 1, 0), b(1000, 1, 1), c(1000, 2, 0);
  int same_ab = 0, same_ac = 0, fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    same_ab += a(i) == b(i);
    same_ac += a(i) == c(i);
    fixed += a(i) == i;
  }
  EXPECT_LT(same_ab, 20);
  EXPECT_LT(same_ac, 20);
  EXPECT_LT(fixed, 20);
}

TEST_F(LoaderTest, windows_and_shifted_targets) {
  auto dl = make(DataLoader::Mode::Train, 4, 0, 1, 7, 0);
  EXPECT_EQ(dl.num_windows(), 999 / kT + 776 / kT + 1500 / kT);
  EXPECT_EQ(dl.num_tokens(), 1000 + 777 + 1501);
  EXPECT_EQ(dl.batches_per_epoch(), dl.num_windows() / 4);
  const std::vector<int64_t> first = {0, 1000, 1777};  // first token value of each shard
  const std::vector<int64_t> prefix = {0, 999 / kT, 999 / kT + 776 / kT};
  for (int step = 0; step < 20; ++step) {
    Batch b = *dl.next();
    ASSERT_EQ(b.inputs.shape(), (Shape{4, kT}));
    ASSERT_EQ(b.targets.shape(), (Shape{4, kT}));
    EXPECT_EQ(b.inputs.dtype(), DType::I32);
    EXPECT_EQ(b.num_targets, 4 * kT);
    const auto in = values(b.inputs), tg = values(b.targets);
    for (int64_t r = 0; r < 4; ++r) {
      const int64_t w = b.windows[r];
      const size_t s = w >= prefix[2] ? 2 : w >= prefix[1] ? 1 : 0;
      const int64_t start = first[s] + (w - prefix[s]) * kT;
      for (int64_t j = 0; j < kT; ++j) {
        ASSERT_EQ(in[r * kT + j], start + j);
        ASSERT_EQ(tg[r * kT + j], start + j + 1);
      }
      ASSERT_LE(start + kT, first[s] + sizes_[s] - 1);  // inside its shard
    }
  }
}

TEST_F(LoaderTest, ranks_are_disjoint_and_cover_the_global_batch) {
  const int W = 4;
  const int64_t B = 3;
  auto global = make(DataLoader::Mode::Train, B * W, 0, 1, 99, 0);
  std::vector<std::unique_ptr<DataLoader>> ranks;
  for (int r = 0; r < W; ++r) {
    DataLoaderOptions o;
    o.batch_size = B;
    o.seq_len = kT;
    o.rank = r;
    o.world_size = W;
    o.seed = 99;
    o.prefetch = r % 2 ? 2 : 0;
    ranks.push_back(std::make_unique<DataLoader>(paths_, DataLoader::Mode::Train, o));
  }
  EXPECT_EQ(ranks[0]->batches_per_epoch(), global.batches_per_epoch());
  for (int step = 0; step < 2 * global.batches_per_epoch() + 3; ++step) {  // through two epoch ends
    const Batch g = *global.next();
    std::vector<int64_t> all;
    std::vector<int32_t> all_in;
    for (auto& r : ranks) {
      const Batch b = *r->next();
      EXPECT_EQ(b.next, g.next);
      EXPECT_EQ(b.epoch, g.epoch);
      all.insert(all.end(), b.windows.begin(), b.windows.end());
      const auto in = values(b.inputs);
      all_in.insert(all_in.end(), in.begin(), in.end());
    }
    EXPECT_EQ(all, g.windows) << "step " << step;  // rank r holds rows [r*B, (r+1)*B)
    EXPECT_EQ(all_in, values(g.inputs));
    EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), all.size());  // disjoint
  }
}

TEST_F(LoaderTest, same_seed_same_batches_different_seed_different_order) {
  auto a = make(DataLoader::Mode::Train, 4, 0, 1, 5, 0);
  auto b = make(DataLoader::Mode::Train, 4, 0, 1, 5, 3);
  auto c = make(DataLoader::Mode::Train, 4, 0, 1, 6, 0);
  int differ = 0;
  for (int i = 0; i < 30; ++i) {
    const Batch x = *a.next(), y = *b.next(), z = *c.next();
    EXPECT_TRUE(same_batch(x, y)) << "batch " << i;
    differ += x.windows != z.windows;
  }
  EXPECT_GT(differ, 25);
}

TEST_F(LoaderTest, epochs_reshuffle_and_visit_each_window_once) {
  // 203 windows, B = 7: 29 batches per epoch, all 203 windows each epoch.
  auto dl = make(DataLoader::Mode::Train, 7, 0, 1, 3, 2);
  ASSERT_EQ(dl.num_windows(), 203);
  ASSERT_EQ(dl.batches_per_epoch(), 29);
  std::vector<std::vector<int64_t>> order(3);
  for (int e = 0; e < 3; ++e) {
    for (int i = 0; i < 29; ++i) {
      const Batch b = *dl.next();
      EXPECT_EQ(b.epoch, e);
      EXPECT_EQ(b.index, i);
      order[e].insert(order[e].end(), b.windows.begin(), b.windows.end());
    }
    std::vector<int64_t> sorted = order[e];
    std::sort(sorted.begin(), sorted.end());
    for (int64_t w = 0; w < 203; ++w) ASSERT_EQ(sorted[w], w) << "epoch " << e;
    EXPECT_EQ(dl.cursor(), (LoaderCursor{e + 1, 0}));
  }
  EXPECT_NE(order[0], order[1]);
  EXPECT_NE(order[1], order[2]);
  // B = 10: 20 batches per epoch, 3 windows of each epoch's permutation left out.
  auto dl10 = make(DataLoader::Mode::Train, 10, 0, 1, 3, 0);
  EXPECT_EQ(dl10.batches_per_epoch(), 20);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(dl10.next()->epoch, 0);
  EXPECT_EQ(dl10.next()->epoch, 1);
}

TEST_F(LoaderTest, saved_cursor_resumes_exactly) {
  for (int prefetch : {0, 3}) {
    auto a = make(DataLoader::Mode::Train, 5, 1, 2, 11, prefetch);  // 20 batches per epoch
    for (int i = 0; i < 13; ++i) a.next();
    const std::string saved = a.state().dump();  // mid-epoch; the prefetch thread is ahead
    auto b = make(DataLoader::Mode::Train, 5, 1, 2, 11, 3 - prefetch);
    b.load_state(nlohmann::json::parse(saved));
    EXPECT_EQ(b.cursor(), a.cursor());
    for (int i = 0; i < 50; ++i) {  // crosses two epoch boundaries
      const Batch x = *a.next(), y = *b.next();
      ASSERT_TRUE(same_batch(x, y)) << "prefetch " << prefetch << " batch " << i;
    }
    // restore() rewinds a running loader too.
    const LoaderCursor c{1, 30};
    a.restore(c);
    b.restore(c);
    EXPECT_TRUE(same_batch(*a.next(), *b.next()));
  }
}

TEST_F(LoaderTest, state_mismatch_is_an_error) {
  auto a = make(DataLoader::Mode::Train, 4, 0, 1, 1, 0);
  auto b = make(DataLoader::Mode::Train, 4, 0, 1, 2, 0);
  std::string msg = error_of([&] { b.load_state(a.state()); });
  EXPECT_NE(msg.find("'seed'"), std::string::npos) << msg;
  auto j = a.state();
  j["num_windows"] = 5;
  msg = error_of([&] { a.load_state(j); });
  EXPECT_NE(msg.find("'num_windows'"), std::string::npos) << msg;
  j = a.state();
  j.erase("epoch");
  msg = error_of([&] { a.load_state(j); });
  EXPECT_NE(msg.find("'epoch'"), std::string::npos) << msg;
  msg = error_of([&] { a.restore({0, 100000}); });
  EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
}

TEST_F(LoaderTest, validation_covers_the_split_exactly_once) {
  const int W = 3;
  const int64_t B = 2;
  std::map<int32_t, int> target_count;
  int64_t total_targets = 0;
  int64_t batches = -1;
  for (int r = 0; r < W; ++r) {
    auto dl = make(DataLoader::Mode::Val, B, r, W, 0, r == 1 ? 2 : 0);
    // windows per shard: ceil(999/16) + ceil(776/16) + ceil(1500/16) = 63 + 49 + 94 = 206
    EXPECT_EQ(dl.num_windows(), 206);
    EXPECT_EQ(dl.batches_per_epoch(), (206 + 5) / 6);
    for (int pass = 0; pass < 2; ++pass) {
      int64_t n = 0;
      while (auto b = dl.next()) {
        const auto in = values(b->inputs), tg = values(b->targets);
        int64_t real = 0;
        for (size_t i = 0; i < tg.size(); ++i) {
          if (tg[i] == -1) continue;
          ++real;
          EXPECT_EQ(tg[i], in[i] + 1);
          if (pass == 0) target_count[tg[i]]++;
        }
        EXPECT_EQ(real, b->num_targets);
        if (pass == 0) total_targets += real;
        ++n;
      }
      EXPECT_FALSE(dl.next().has_value());  // stays at the end
      if (batches < 0) batches = n;
      EXPECT_EQ(n, batches) << "every rank runs the same number of batches";
      dl.reset();
    }
  }
  // Every token but the first of each shard is a target exactly once.
  EXPECT_EQ(total_targets, 1000 + 777 + 1501 - 3);
  for (int32_t v = 0; v < 1000 + 777 + 1501; ++v) {
    const bool first = v == 0 || v == 1000 || v == 1777;
    ASSERT_EQ(target_count.count(v) ? target_count[v] : 0, first ? 0 : 1) << "token " << v;
  }
}

TEST_F(LoaderTest, validation_padding_rows) {
  auto dl = make(DataLoader::Mode::Val, 4, 1, 2, 0, 0);  // 206 windows, global batch 8: 26 batches
  ASSERT_EQ(dl.batches_per_epoch(), 26);
  dl.restore({0, 25});  // last global batch: windows 200..205, then 2 padding rows
  const Batch b = *dl.next();
  EXPECT_EQ(b.windows, (std::vector<int64_t>{204, 205, -1, -1}));
  const auto tg = values(b.targets), in = values(b.inputs);
  for (int64_t j = 0; j < 2 * kT; ++j) {
    EXPECT_EQ(tg[2 * kT + j], -1);
    EXPECT_EQ(in[2 * kT + j], 0);
  }
  // window 205 is the last of shard 2: 1500 - 93*16 = 12 targets, then -1
  EXPECT_EQ(b.num_targets, kT + 12);
  EXPECT_EQ(tg[kT + 11], 1777 + 1500);
  EXPECT_EQ(tg[kT + 12], -1);
  EXPECT_FALSE(dl.next().has_value());
}

TEST_F(LoaderTest, prefetch_on_and_off_identical) {
  for (auto mode : {DataLoader::Mode::Train, DataLoader::Mode::Val}) {
    auto a = make(mode, 6, 0, 1, 21, 0);
    auto b = make(mode, 6, 0, 1, 21, 4);
    for (int i = 0; i < 40; ++i) {
      auto x = a.next(), y = b.next();
      ASSERT_EQ(x.has_value(), y.has_value());
      if (!x) break;
      ASSERT_TRUE(same_batch(*x, *y)) << "batch " << i;
    }
  }
  // Destroying a loader whose thread is blocked on a full queue returns promptly.
  auto c = make(DataLoader::Mode::Train, 6, 0, 1, 21, 8);
  c.next();
}

TEST_F(LoaderTest, bad_options) {
  EXPECT_NE(error_of([&] { make(DataLoader::Mode::Train, 4, 2, 2, 0, 0); }).find("rank 2 not in"), std::string::npos);
  std::string msg = error_of([&] { make(DataLoader::Mode::Train, 300, 0, 1, 0, 0); });
  EXPECT_NE(msg.find("fewer than one global batch"), std::string::npos) << msg;
  msg = error_of([&] { DataLoader({(dir_ / "missing.bin").string()}, DataLoader::Mode::Train, {}); });
  EXPECT_NE(msg.find("missing.bin"), std::string::npos) << msg;
  DataLoaderOptions o;
  o.seq_len = 5000;
  msg = error_of([&] { DataLoader(paths_, DataLoader::Mode::Train, o); });
  EXPECT_NE(msg.find("no window of 5001 tokens"), std::string::npos) << msg;
}
