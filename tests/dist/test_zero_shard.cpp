// ZeRO-1 shard arithmetic (src/dist/zero_shard.h): contiguous, balanced, aligned shards that
// tile the flat parameter space; segments that cover every parameter exactly once; re-sharding a
// state saved with world N onto world M (M = 1 included) preserves every element.
#include <gtest/gtest.h>

#include <numeric>

#include "dist/zero_shard.h"
#include "tensor/random.h"
#include "util/check.h"

using namespace sk;

namespace {

std::vector<int64_t> random_numels(Rng& rng, int n) {
  std::vector<int64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(int64_t(rng.below(rng.uniform() < 0.2 ? 3 : 5000)));
  return v;
}

}  // namespace

TEST(ZeroShard, shards_tile_the_space_contiguously_balanced_and_aligned) {
  Rng rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const auto numels = random_numels(rng, 1 + int(rng.below(20)));
    const int world = 1 + int(rng.below(9));
    const int64_t align = std::vector<int64_t>{1, 8, 64, 128}[rng.below(4)];
    const dist::ShardLayout L(numels, world, align);
    SCOPED_TRACE(::testing::Message() << "trial " << trial << " world " << world << " align " << align);
    ASSERT_EQ(L.total(), std::accumulate(numels.begin(), numels.end(), int64_t(0)));
    EXPECT_EQ(L.shard_size() % align, 0);
    EXPECT_GE(L.padded_total(), L.total());
    EXPECT_LT(L.padded_total() - L.total(), int64_t(world) * align + L.shard_size());  // padding is small
    int64_t prev_end = 0, max_owned = 0, min_owned = L.total();
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(L.owned_begin(r), prev_end);
      EXPECT_EQ(L.owned_begin(r) % align == 0 || L.owned_begin(r) == L.total(), true);
      const int64_t owned = L.owned_end(r) - L.owned_begin(r);
      max_owned = std::max(max_owned, owned);
      if (L.owned_end(r) < L.total()) min_owned = std::min(min_owned, owned);
      prev_end = L.owned_end(r);
    }
    EXPECT_EQ(prev_end, L.total());
    EXPECT_LE(max_owned, L.shard_size());
    // Balanced: no rank owns more than ceil(total / world) rounded up to the alignment.
    EXPECT_LE(max_owned, ((L.total() + world - 1) / world + align - 1) / align * align + (L.total() == 0 ? align : 0));

    // Segments: every element of every parameter exactly once, in its owner's shard.
    std::vector<int> seen(size_t(L.total()), 0);
    for (int r = 0; r < world; ++r) {
      int64_t covered = 0;
      for (const auto& s : L.segments(r)) {
        ASSERT_GT(s.count, 0);
        ASSERT_LE(s.param_begin + s.count, numels[size_t(s.param)]);
        EXPECT_EQ(s.shard_begin, covered);  // segments are contiguous within the shard
        covered += s.count;
        for (int64_t k = 0; k < s.count; ++k) {
          const int64_t flat = L.param_offset(s.param) + s.param_begin + k;
          EXPECT_EQ(flat, L.owned_begin(r) + s.shard_begin + k);
          EXPECT_EQ(L.owner_of(flat), r);
          ++seen[size_t(flat)];
        }
      }
      EXPECT_EQ(covered, L.owned_end(r) - L.owned_begin(r));
    }
    for (size_t k = 0; k < seen.size(); ++k) ASSERT_EQ(seen[k], 1) << "flat index " << k;
  }
}

TEST(ZeroShard, a_parameter_split_between_ranks) {
  const dist::ShardLayout L({100, 30}, 2, 8);  // total 130: shards of 72
  EXPECT_EQ(L.shard_size(), 72);
  EXPECT_EQ(L.owned_end(0), 72);
  EXPECT_EQ(L.owned_end(1), 130);
  const auto s1 = L.segments(1);
  ASSERT_EQ(s1.size(), 2u);
  EXPECT_EQ(s1[0].param, 0);
  EXPECT_EQ(s1[0].param_begin, 72);
  EXPECT_EQ(s1[0].count, 28);
  EXPECT_EQ(s1[1].param, 1);
  EXPECT_EQ(s1[1].shard_begin, 28);
  EXPECT_EQ(s1[1].count, 30);
}

TEST(ZeroShard, reshard_from_n_to_m_ranks_keeps_every_element) {
  Rng rng(11);
  for (int trial = 0; trial < 100; ++trial) {
    const auto numels = random_numels(rng, 1 + int(rng.below(12)));
    const int n = 1 + int(rng.below(8)), m = 1 + int(rng.below(8));
    const dist::ShardLayout from(numels, n, 64), to(numels, m, trial % 2 ? 64 : 16);
    std::vector<float> flat(size_t(from.total()));
    for (auto& x : flat) x = float(rng.uniform());
    std::vector<std::vector<float>> shards(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) shards[r].assign(flat.begin() + from.owned_begin(r), flat.begin() + from.owned_end(r));
    const auto out = dist::reshard(shards, from, to);
    ASSERT_EQ(int(out.size()), m);
    std::vector<float> joined;
    for (const auto& s : out) joined.insert(joined.end(), s.begin(), s.end());
    ASSERT_EQ(joined, flat) << "trial " << trial << ": " << n << " -> " << m << " ranks";
    // And back again.
    const auto back = dist::reshard(out, to, from);
    ASSERT_EQ(back, shards);
  }
}

TEST(ZeroShard, bad_inputs_are_errors) {
  EXPECT_THROW(dist::ShardLayout({10}, 0), Error);
  EXPECT_THROW(dist::ShardLayout({10}, 2, 0), Error);
  const dist::ShardLayout a({100}, 2, 8), b({101}, 2, 8);
  std::vector<std::vector<float>> shards = {std::vector<float>(56), std::vector<float>(44)};
  EXPECT_THROW(dist::reshard(shards, a, b), Error);  // a different model
  shards[1].resize(43);
  try {
    dist::reshard(shards, a, a);
    FAIL() << "no error for a short shard";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
}
