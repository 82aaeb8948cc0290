// Chunk boundaries of the chunk-parallel selection pass (kernels/attention/sparsek/chunk_schedule.h):
// uniform and balanced schedules cover [0, T) with increasing boundaries; the uniform one is the
// kernel's old layout (chunks of L, spill storage L C (C - 1) / 2 + T keys per row); the balanced
// one stays within its chunk count, keeps every chunk's modelled cost n0_c + q L_c within the
// budget (chunks longer than the minimum), has the smallest such budget, and its slowest chunk is
// never costlier than the uniform schedule's with as many chunks. The results of the selection
// over balanced chunks are tested in test_selection_chunked.cpp (GPU model, bitwise).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention/sparsek/chunk_schedule.h"

namespace {

std::vector<int> boundaries(const SkChunkSchedule& s) {
  std::vector<int> b{0};
  for (int c = 0; c < s.chunks; ++c) b.push_back(sk_chunk_next(s, b.back()));
  return b;
}

int64_t cost(const SkChunkSchedule& s, int start, int end, int q) {
  return std::max(0, start - s.window) + int64_t(q) * (end - start);
}

void expect_cover(const SkChunkSchedule& s, const std::string& what) {
  const std::vector<int> b = boundaries(s);
  ASSERT_EQ(int(b.size()), s.chunks + 1) << what;
  EXPECT_EQ(b.back(), s.seq_len) << what;
  int64_t frac = 0;
  for (int c = 0; c < s.chunks; ++c) {
    EXPECT_LT(b[c], b[c + 1]) << what << " chunk " << c;
    EXPECT_EQ(sk_chunk_start(s, c), b[c]) << what << " chunk " << c;
    EXPECT_EQ(sk_chunk_frac_offset(s, c), frac) << what << " chunk " << c;
    frac += b[c + 1];
  }
  EXPECT_EQ(s.frac_keys, frac) << what;
  EXPECT_EQ(sk_chunk_count(s), s.chunks) << what;
}

TEST(ChunkSchedule, UniformIsTheOldLayout) {
  for (int T : {1, 7, 256, 1000, 16384})
    for (int L : {1, 3, 256, 700, 20000}) {
      const SkChunkSchedule s = sk_chunk_schedule_uniform(T, 512, L);
      const std::string what = "T " + std::to_string(T) + " L " + std::to_string(L);
      expect_cover(s, what);
      const int C = (T + L - 1) / L;
      EXPECT_EQ(s.chunks, C) << what;
      EXPECT_EQ(s.frac_keys, int64_t(L) * C * (C - 1) / 2 + T) << what;
      for (int c = 0; c < C; ++c) EXPECT_EQ(sk_chunk_start(s, c), c * L) << what;
    }
}

TEST(ChunkSchedule, BalancedKeepsEveryChunkWithinTheSmallestBudget) {
  int checked = 0;
  for (int T : {1, 100, 4096, 16384, 32768})
    for (int W : {0, 512})
      for (int q : {1, 8, 26, 100})
        for (int max_chunks : {1, 5, 22, 44, 300}) {
          const int min_len = 64;
          const SkChunkSchedule s = sk_chunk_schedule_balanced(T, W, min_len, q, max_chunks);
          const std::string what = "T " + std::to_string(T) + " W " + std::to_string(W) + " q " + std::to_string(q) +
                                   " max_chunks " + std::to_string(max_chunks);
          expect_cover(s, what);
          EXPECT_LE(s.chunks, max_chunks) << what;
          const std::vector<int> b = boundaries(s);
          int64_t slowest = 0;
          for (int c = 0; c < s.chunks; ++c) {
            const int len = b[c + 1] - b[c];
            // Every chunk but the last is at least the minimum; a chunk longer than the minimum
            // costs at most the budget plus the rounding of its length up to a whole query.
            if (c + 1 < s.chunks) EXPECT_GE(len, min_len) << what << " chunk " << c;
            if (len > min_len) EXPECT_LE(cost(s, b[c], b[c + 1], q), s.budget + q - 1) << what << " chunk " << c;
            if (c > 0 && c + 1 < s.chunks) EXPECT_LE(len, b[c] - b[c - 1]) << what << " chunk " << c << " grew";
            slowest = std::max(slowest, cost(s, b[c], b[c + 1], q));
          }
          // The smallest budget: one less needs more chunks than allowed.
          if (s.budget > 0) {
            SkChunkSchedule tighter = s;
            tighter.budget = s.budget - 1;
            EXPECT_GT(sk_chunk_count(tighter), max_chunks) << what;
          }
          // No worse than uniform chunks with the same count.
          const SkChunkSchedule u = sk_chunk_schedule_uniform(T, W, (T + s.chunks - 1) / s.chunks);
          const std::vector<int> ub = boundaries(u);
          int64_t uniform_slowest = 0;
          for (int c = 0; c < u.chunks; ++c) uniform_slowest = std::max(uniform_slowest, cost(u, ub[c], ub[c + 1], q));
          if (u.chunks <= max_chunks && (T + s.chunks - 1) / s.chunks >= min_len)
            EXPECT_LE(slowest, uniform_slowest + q) << what;
          ++checked;
        }
  EXPECT_EQ(checked, 5 * 2 * 4 * 5);
}

// The shape of the schedule at the benchmark's 32k rows (24 rows, 1,056 resident blocks: 44 per
// row) with q = 26: the first chunk is several times the last, and the slowest chunk's modelled
// cost is well under the uniform schedule's.
TEST(ChunkSchedule, BalancedShapeAtTheBenchShape) {
  const int T = 32768, W = 512, q = 26;
  const SkChunkSchedule s = sk_chunk_schedule_balanced(T, W, 64, q, 44);
  const std::vector<int> b = boundaries(s);
  const int first = b[1] - b[0], last_full = b[s.chunks - 1] - b[s.chunks - 2];
  EXPECT_GT(first, 3 * last_full) << "first " << first << " last " << last_full;
  const SkChunkSchedule u = sk_chunk_schedule_uniform(T, W, (T + 43) / 44);
  const int64_t uniform_last = cost(u, (u.chunks - 1) * u.len, T, q);
  EXPECT_LT(s.budget + q, uniform_last * 17 / 20) << "budget " << s.budget << " uniform slowest " << uniform_last;
}

}  // namespace
