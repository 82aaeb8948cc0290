// Chunked causal selection with verified canonical starts (selection_chunked.h): the result must be
// BITWISE identical to causal_selection (tau by bit pattern, every key's five range indices) for any
// chunk length, whatever the scores; the statistics say how often a chunk's canonical start equalled
// the walked state (the chunk-parallel GPU pass is only fast when it does).
// Score kinds: f32 values N(0, 1) + 1e-3 j (what the GPU pass gets), integers (ties, roots exactly
// on breakpoints), f64 N(0, 1) + 1e-3 j, all equal, f32 near zero (tiny ulps).
// SparsekSelectionChunked.DISABLED_prints_stats prints them on long sequences (not CI).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "attention/sparsek/selection.h"
#include "attention/sparsek/selection_chunked.h"
#include "tensor/random.h"

namespace sk::attention::sparsek {
namespace {

std::vector<double> scores(int kind, int64_t T, Rng& rng) {
  std::vector<double> u(static_cast<size_t>(T));
  for (int64_t j = 0; j < T; ++j) {
    switch (kind) {
      case 0: u[j] = double(float(rng.normal() + 1e-3 * double(j))); break;
      case 1: u[j] = std::round(2.0 * rng.normal()); break;
      case 2: u[j] = rng.normal() + 1e-3 * double(j); break;
      case 3: u[j] = 0.5; break;
      default: u[j] = double(float(0.01 * rng.normal())); break;
    }
  }
  return u;
}

const char* kind_name(int kind) {
  static const char* names[] = {"f32 N(0,1)+1e-3j", "integers", "f64 N(0,1)+1e-3j", "all equal", "f32 0.01 N(0,1)"};
  return names[kind];
}

void expect_identical(const CausalSelection& a, const CausalSelection& b, const std::string& what) {
  ASSERT_EQ(a.tau.size(), b.tau.size()) << what;
  for (size_t i = 0; i < a.tau.size(); ++i)
    ASSERT_EQ(std::memcmp(&a.tau[i], &b.tau[i], sizeof(double)), 0)
        << what << ": tau differs at query " << i << ": " << a.tau[i] << " vs " << b.tau[i];
  for (size_t j = 0; j < a.keys.size(); ++j) {
    const KeyRanges &x = a.keys[j], &y = b.keys[j];
    ASSERT_TRUE(x.enter == y.enter && x.frac_from == y.frac_from && x.dead_from == y.dead_from &&
                x.sel_from == y.sel_from && x.sel_to == y.sel_to)
        << what << ": ranges differ at key " << j << ": (" << x.enter << ", " << x.frac_from << ", " << x.dead_from
        << ", " << x.sel_from << ", " << x.sel_to << ") vs (" << y.enter << ", " << y.frac_from << ", " << y.dead_from
        << ", " << y.sel_from << ", " << y.sel_to << ")";
  }
}

TEST(SparsekSelectionChunked, BitwiseEqualToTheSequentialWalk) {
  Rng rng(2027);
  int64_t cases = 0, chunks = 0, verified = 0;
  for (int kind = 0; kind < 5; ++kind)
    for (int64_t T : {1, 2, 7, 17, 60, 300})
      for (int64_t k : {1, 3, 8, 70})
        for (int64_t w : {0, 1, 3, 80})
          for (int64_t L : {1, 4, 16, 1000}) {
            const std::vector<double> u = scores(kind, T, rng);
            const CausalSelection ref = causal_selection(u.data(), T, k, w);
            ChunkedSelectionStats st;
            const CausalSelection got = causal_selection_chunked(u.data(), T, k, w, L, &st);
            expect_identical(got, ref,
                             std::string(kind_name(kind)) + " T " + std::to_string(T) + " k " + std::to_string(k) +
                                 " w " + std::to_string(w) + " L " + std::to_string(L));
            ++cases;
            chunks += st.chunks;
            verified += st.verified;
          }
  std::printf("[ chunked selection ] %lld cases, %lld real chunk starts, %lld equal to the walked state\n",
              (long long)cases, (long long)chunks, (long long)verified);
}

// A long f32 sequence like the benchmark's: identical, and every chunk start verified (for these
// draws; where a start fails, the result is still identical through the fallback).
TEST(SparsekSelectionChunked, LongF32SequenceStartsVerify) {
  Rng rng(31);
  const int64_t T = 8192, k = 512, w = 512, L = 1024;
  const std::vector<double> u = scores(0, T, rng);
  ChunkedSelectionStats st;
  const CausalSelection got = causal_selection_chunked(u.data(), T, k, w, L, &st);
  expect_identical(got, causal_selection(u.data(), T, k, w), "long f32");
  EXPECT_EQ(st.chunks, 6) << "chunk starts 2048 .. 7168 lie past the first k prefix keys";
  EXPECT_EQ(st.verified, st.chunks) << "first mismatch at query " << st.first_mismatch;
}

TEST(SparsekSelectionChunked, DISABLED_prints_stats) {
  Rng rng(77);
  for (int64_t T : {16384, 65536})
    for (int kind : {0, 1, 2, 4}) {
      const std::vector<double> u = scores(kind, T, rng);
      ChunkedSelectionStats st;
      const CausalSelection got = causal_selection_chunked(u.data(), T, 512, 512, 1024, &st);
      const CausalSelection ref = causal_selection(u.data(), T, 512, 512);
      expect_identical(got, ref, kind_name(kind));
      std::printf("[ chunked selection ] %s T %lld k 512 w 512 L 1024: %lld chunk starts, %lld verified, first "
                  "mismatch at query %lld\n",
                  kind_name(kind), (long long)T, (long long)st.chunks, (long long)st.verified,
                  (long long)st.first_mismatch);
    }
}

}  // namespace
}  // namespace sk::attention::sparsek
