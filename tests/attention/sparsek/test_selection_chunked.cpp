// Chunked causal selection with verified canonical starts (selection_chunked.h): the result must be
// BITWISE identical to causal_selection (tau by bit pattern, every key's five range indices) for any
// chunk length, whatever the scores; the statistics say how often a chunk's canonical start equalled
// the walked state (the chunk-parallel GPU pass is only fast when it does).
// Score kinds: f32 values N(0, 1) + 1e-3 j (what the GPU pass gets), integers (ties, roots exactly
// on breakpoints), f64 N(0, 1) + 1e-3 j, all equal, f32 near zero (tiny ulps).
// SparsekSelectionChunked.DISABLED_prints_stats prints them on long sequences (not CI).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "attention/sparsek/selection.h"
#include "attention/sparsek/selection_chunked.h"
#include "kernels/attention/sparsek/selection_chunked_common.h"
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


// ---- the CPU model of the GPU chunked pass (selection_chunked_common.h + causal_selection_chunked_gpu_model) ----

// f32 scores: 0 N(0,1) + 1e-3 j, 1 integers in {0, 1, 2}, 2 bf16-rounded N(0,1) + 1e-3 j (the timing
// test's), 3 all equal, 4 0.01 N(0,1), 5 mixed magnitudes (10% of 10^-U(0, 8), else -U(0, 2): sums
// of the fractional scores are not exact in fp64, the walked and the canonical sums can differ), 6 kind 0 with one
// tiny score (1e-12: the compact keys cannot order it; the row must fall back).
std::vector<float> f32_scores(int kind, int64_t T, Rng& rng) {
  std::vector<float> u(static_cast<size_t>(T));
  for (int64_t j = 0; j < T; ++j) {
    double x = 0;
    switch (kind) {
      case 0: case 6: x = rng.normal() + 1e-3 * double(j); break;
      case 1: x = double(rng.below(3)); break;
      case 2: {
        float f = float(rng.normal() + 1e-3 * double(j));
        uint32_t b;
        std::memcpy(&b, &f, 4);
        b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;  // round to bf16
        std::memcpy(&f, &b, 4);
        x = f;
        break;
      }
      case 3: x = 0.5; break;
      case 4: x = 0.01 * rng.normal(); break;
      default:  // 10% positive 10^-U(0, 8), else -U(0, 2): tau < 0 keeps tiny and large values fractional
        x = rng.uniform() < 0.1 ? std::pow(10.0, -8.0 * rng.uniform()) : -2.0 * rng.uniform();
        break;
    }
    u[j] = float(x);
  }
  if (kind == 6 && T > 3) u[size_t(T / 3)] = 1e-12f;
  return u;
}

TEST(SparsekSelectionGpuModel, CompactKeysOrderLikeTheCpu) {
  using namespace sk_selchunk;
  const float vals[] = {-3.5f, -1.0f, -0.0f, 0.0f, 1e-8f, 0.25f, 1.0f, 2.0f, 1e30f};
  for (float a : vals)
    for (float b : vals) {
      EXPECT_EQ(make_key(a, 5) < make_key(b, 5), double(a) < double(b)) << a << " " << b;
      EXPECT_EQ(key_u(make_key(a, 7)), double(a));
      EXPECT_EQ(key_pos(make_key(a, 7)), 7);
      if (score_compact_ok(a) && score_compact_ok(b) && a != b)  // the saturated heap's order
        EXPECT_EQ(breakpoint(double(a)) < breakpoint(double(b)), double(a) < double(b)) << a << " " << b;
    }
  EXPECT_TRUE(make_key(0.0f, 3) < make_key(-0.0f, 4));  // -0 == +0: position decides
  EXPECT_FALSE(score_compact_ok(1e-12f));
  EXPECT_FALSE(score_compact_ok(std::numeric_limits<float>::infinity()));
  EXPECT_FALSE(score_compact_ok(std::numeric_limits<float>::quiet_NaN()));
}

// The kernel's canonical start (model) equals TauWalker::canonical: tau bit for bit, every key's
// state, the fractional sum (key order), for f32 scores.
TEST(SparsekSelectionGpuModel, CanonicalStartEqualsTauWalkerCanonical) {
  Rng rng(404);
  int64_t compared = 0;
  for (int kind : {0, 1, 2, 3, 4, 5})
    for (int64_t n0 : {1, 5, 64, 300, 2000})
      for (int64_t k : {1, 3, 8, 70, 512}) {
        const std::vector<float> uf = f32_scores(kind, n0, rng);
        std::vector<double> ud(uf.begin(), uf.end());
        const CanonicalStartModel m = canonical_start_gpu_model(uf.data(), n0, k, 1 << 20);
        ASSERT_EQ(m.fail, 0) << "kind " << kind << " n0 " << n0 << " k " << k;
        std::vector<EntryState> states;
        const TauWalker w = TauWalker::canonical(ud.data(), n0, k, &states);
        const std::string what = std::string("kind ") + std::to_string(kind) + " n0 " + std::to_string(n0) + " k " +
                                 std::to_string(k);
        const double tw = w.tau();
        ASSERT_EQ(std::memcmp(&tw, &m.tau, 8), 0) << what << ": tau " << tw << " vs model " << m.tau;
        double sum = 0;
        int n_sat = 0, n_frac = 0;
        for (int64_t j = 0; j < n0; ++j) {
          ASSERT_EQ(int(states[size_t(j)]), int(m.state[size_t(j)])) << what << ": state of key " << j;
          if (states[size_t(j)] == EntryState::Fractional) sum += ud[size_t(j)], ++n_frac;
          if (states[size_t(j)] == EntryState::Saturated) ++n_sat;
        }
        if (n0 <= k) sum = 0;
        ASSERT_EQ(std::memcmp(&sum, &m.sum_frac, 8), 0) << what << ": sum " << sum << " vs model " << m.sum_frac;
        ASSERT_EQ(n_sat, m.n_sat) << what;
        ASSERT_EQ(n_frac, m.n_frac) << what;
        ASSERT_EQ(int64_t(m.top.size()), std::min(n0, k)) << what;
        ++compared;
      }
  std::printf("[ gpu model ] %lld canonical starts equal TauWalker::canonical\n", (long long)compared);
}

// KeyHeapT (the walk's heaps), binary and 4-ary: random pushes, pops and top replacements always
// expose the minimum of the keys held (against a std::multiset), and a sorted array is a valid heap.
template <int A>
void check_key_heap(Rng& rng) {
  std::vector<uint64_t> store(300);
  sk_selchunk::KeyHeapT<A> h{store.data(), 0, int(store.size())};
  std::multiset<uint64_t> want;
  for (int step = 0; step < 20000; ++step) {
    const int op = int(rng.uniform() * 3);
    const uint64_t key = (uint64_t(rng.uniform() * 1e6) << 32) | uint64_t(step);  // distinct
    if (op == 0 || want.empty()) {
      if (h.push(key)) want.insert(key);
      else ASSERT_EQ(int64_t(want.size()), int64_t(store.size())) << "push refused below capacity";
    } else if (op == 1) {
      h.pop();
      want.erase(want.begin());
    } else {
      h.replace_top(key);
      want.erase(want.begin());
      want.insert(key);
    }
    ASSERT_EQ(h.n, int64_t(want.size()));
    if (h.n > 0) ASSERT_EQ(h.a[0], *want.begin()) << "arity " << A << " step " << step;
  }
  std::vector<uint64_t> sorted(store.begin(), store.begin() + h.n);
  std::sort(sorted.begin(), sorted.end());
  sk_selchunk::KeyHeapT<A> s{sorted.data(), int(sorted.size()), int(sorted.size())};
  for (auto it = want.begin(); it != want.end(); ++it, s.pop()) ASSERT_EQ(s.a[0], *it) << "arity " << A;
}

TEST(SparsekSelectionGpuModel, KeyHeapsKeepTheMinimum) {
  Rng rng(91);
  check_key_heap<2>(rng);
  check_key_heap<4>(rng);
}

// The whole chunked pass as the GPU runs it (model): bitwise equal to causal_selection in every case
// (verified rows through the chunk walks, the others through the fallback), and for f32 scores of
// kinds 0-4 every chunk start verifies.
TEST(SparsekSelectionGpuModel, BitwiseEqualToTheSequentialWalk) {
  Rng rng(2028);
  int64_t cases = 0, chunks = 0, verified = 0, fallback_rows = 0, verify_fail_rows = 0;
  for (int kind = 0; kind < 7; ++kind)
    for (int64_t T : {1, 7, 60, 300, 1000})
      for (int64_t k : {1, 3, 8, 70})
        for (int64_t w : {0, 3, 80})
          for (int64_t L : {1, 16, 64, 1000})
            for (int64_t fcap : {int64_t(1) << 20, int64_t(40)}) {
              const std::vector<float> uf = f32_scores(kind, T, rng);
              std::vector<double> ud(uf.begin(), uf.end());
              const CausalSelection ref = causal_selection(ud.data(), T, k, w);
              ChunkedGpuModelStats st;
              // Binary heaps for the first fcap, 4-ary for the second (SPARSEK_SELECTION_HEAP=4).
              const int arity = fcap == 40 ? 4 : 2;
              const CausalSelection got = causal_selection_chunked_gpu_model(uf.data(), T, k, w, L, fcap, &st, arity);
              const std::string what = std::string("kind ") + std::to_string(kind) + " T " + std::to_string(T) +
                                       " k " + std::to_string(k) + " w " + std::to_string(w) + " L " +
                                       std::to_string(L) + " fcap " + std::to_string(fcap) + " arity " +
                                       std::to_string(arity) + " fail " + std::to_string(st.fail);
              expect_identical(got, ref, what);
              if (kind <= 4 && fcap > T) EXPECT_EQ(st.fail, 0) << what << ", first mismatch " << st.first_mismatch;
              if (kind == 6 && fcap > T && T > 3 && T / 3 + w < T) EXPECT_NE(st.fail & sk_selchunk::kFailScores, 0) << what;
              ++cases;
              chunks += st.chunks;
              verified += st.verified;
              fallback_rows += st.fail != 0;
              verify_fail_rows += (st.fail & sk_selchunk::kFailVerify) != 0;
            }
  std::printf("[ gpu model ] %lld cases, %lld real chunk starts, %lld verified; %lld rows fell back (%lld on a "
              "verification mismatch)\n",
              (long long)cases, (long long)chunks, (long long)verified, (long long)fallback_rows,
              (long long)verify_fail_rows);
  EXPECT_GT(verify_fail_rows, 0) << "the mixed-magnitude scores should fail some verification";
}

// Balanced chunk boundaries (chunk_schedule.h; the kernel's SPARSEK_SELECTION_BALANCE): the same
// result bit for bit, and every start verifies for f32 scores, on short rows with many
// small chunks and on a long row like the benchmark's (4-ary heaps, as the balanced kernel has them).
TEST(SparsekSelectionGpuModel, BalancedChunksBitwiseEqualToTheSequentialWalk) {
  Rng rng(4242);
  int64_t cases = 0, chunks = 0, verified = 0;
  for (int kind : {0, 1, 2, 4})
    for (int64_t T : {60, 300, 1000})
      for (int64_t k : {3, 8, 70})
        for (int w : {0, 80})
          for (int q : {1, 4, 26})
            for (int max_chunks : {3, 12}) {
              const std::vector<float> uf = f32_scores(kind, T, rng);
              std::vector<double> ud(uf.begin(), uf.end());
              const SkChunkSchedule sched = sk_chunk_schedule_balanced(int(T), w, 8, q, max_chunks);
              ChunkedGpuModelStats st;
              const CausalSelection got = causal_selection_chunked_gpu_model(uf.data(), k, sched, 1 << 20, &st, 4);
              const std::string what = std::string("kind ") + std::to_string(kind) + " T " + std::to_string(T) +
                                       " k " + std::to_string(k) + " w " + std::to_string(w) + " q " +
                                       std::to_string(q) + " chunks " + std::to_string(sched.chunks);
              expect_identical(got, causal_selection(ud.data(), T, k, w), what);
              EXPECT_EQ(st.fail, 0) << what << ", first mismatch " << st.first_mismatch;
              ++cases;
              chunks += st.chunks;
              verified += st.verified;
            }
  std::printf("[ gpu model ] balanced: %lld cases, %lld real chunk starts, %lld verified\n", (long long)cases,
              (long long)chunks, (long long)verified);
  EXPECT_GT(chunks, 1000) << "too few real chunk starts to mean anything";
  const int64_t T = 8192, k = 512, w = 512;
  const std::vector<float> uf = f32_scores(0, T, rng);
  std::vector<double> ud(uf.begin(), uf.end());
  const SkChunkSchedule sched = sk_chunk_schedule_balanced(int(T), int(w), 64, 26, 12);
  ChunkedGpuModelStats st;
  const CausalSelection got = causal_selection_chunked_gpu_model(uf.data(), k, sched, 2048, &st, 4);
  expect_identical(got, causal_selection(ud.data(), T, k, w), "long balanced row");
  EXPECT_EQ(st.fail, 0) << "first mismatch " << st.first_mismatch;
  EXPECT_EQ(st.verified, st.chunks);
  EXPECT_GT(sk_chunk_next(sched, 0), T / sched.chunks + 100) << "not balanced: the first chunk no longer than uniform";
}

// Long rows like the timing test's: every chunk verifies for f32 / bf16 scores.
TEST(SparsekSelectionGpuModel, LongRowsVerify) {
  Rng rng(99);
  for (int kind : {0, 2}) {
    const int64_t T = 8192, k = 512, w = 512, L = 700;
    const std::vector<float> uf = f32_scores(kind, T, rng);
    std::vector<double> ud(uf.begin(), uf.end());
    ChunkedGpuModelStats st;
    const CausalSelection got = causal_selection_chunked_gpu_model(uf.data(), T, k, w, L, 4096, &st);
    expect_identical(got, causal_selection(ud.data(), T, k, w), "long kind " + std::to_string(kind));
    EXPECT_EQ(st.fail, 0) << "kind " << kind << " first mismatch " << st.first_mismatch;
    EXPECT_EQ(st.verified, st.chunks);
    std::printf("[ gpu model ] kind %d T 8192 k 512 w 512 L 700: %lld of %lld chunk starts verified\n", kind,
                (long long)st.verified, (long long)st.chunks);
  }
}

// Statistics of the GPU model on long rows (not CI): chunk starts verified and failure bits, for
// the kernel's automatic chunk length at 48 rows.
TEST(SparsekSelectionGpuModel, DISABLED_prints_stats) {
  Rng rng(7);
  for (int64_t T : {16384, 32768})
    for (int kind : {0, 2, 4}) {
      const std::vector<float> uf = f32_scores(kind, T, rng);
      ChunkedGpuModelStats st;
      const int64_t L = (T + 12) / 13;
      causal_selection_chunked_gpu_model(uf.data(), T, 512, 512, L, 4096, &st);
      std::printf("[ gpu model ] kind %d T %lld k 512 w 512 L %lld: fail bits %d, %lld of %lld chunk starts verified\n",
                  kind, (long long)T, (long long)L, st.fail, (long long)st.verified, (long long)st.chunks);
    }
}
}  // namespace
}  // namespace sk::attention::sparsek
