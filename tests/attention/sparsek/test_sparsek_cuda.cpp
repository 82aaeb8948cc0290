// SparseK attention on CUDA (src/attention/sparsek/sparsek_cuda.h, kernels/attention/sparsek/)
// against the CPU reference on fresh random inputs. Skipped without a CUDA device.
//  - Selection: tau and the per-key ranges equal causal_selection (selection.h) EXACTLY (the GPU
//    runs the same fp64 heap walk in the same order) on random scores with and without ties, T in
//    {1, 17, 1000, 4096}, k in {1, 8, 64, T + 3}, w in {0, 3, T + 1}, and T = 20000 with k 8 and
//    9000 (the heaps partly / wholly outside shared memory); the candidate list of every
//    64-query (and 128-query) tile equals the set of keys selected by any of its queries, within
//    the cap min(k + 63, T) (spec 4.3 property 3): first the keys uniform over the tile (selected
//    by every query in one state, checked query by query; their count is cand_uniform), then the
//    others, each ascending. The chunked pass with binary heaps (SPARSEK_SELECTION_HEAP=2) and the
//    chunk kernel at 5 blocks per SM (SPARSEK_SELECTION_BLOCKS=5), the split pass (starts and walks
//    in two launches, SPARSEK_SELECTION_BLOCKS=split) and balanced chunks (SPARSEK_SELECTION_BALANCE=26)
//    equal the default bit for bit.
//  - Forward: out and lse vs sparsek_attention_forward in f64 on the same bf16-rounded q, k, v and
//    scores, both mask modes, T in {1, 17, 1000, 4096}, cases with k >= T, w >= T and w = 0, head
//    dims 64 and 128, q/k/v as strided views of a fused (B, T, 3, H, D) buffer, per-head and shared
//    (Hu = 1) scores. Tolerances as the flash tests: out relative L2 <= 1e-2 (P and the outputs
//    are bf16), lse max abs <= 1e-2, at both tile heights (64, 128). The sync forward
//    (SPARSEK_SPARSEK_FWD=sync: metadata loads right before each chunk) and the staged one at 2
//    blocks per SM equal the default (staged3: 3 blocks per SM at hd 64) out and lse bit for bit on every
//    case, and so does the forward with the uniform chunks' fast path off (SPARSEK_SPARSEK_UNIFORM=off).
//    Every backward variant (pipelined3, pipelined, gsum, sync, keysplit, with uniform
//    chunks off, with the mma.sync window part) against the reference as below.
//  - Backward (same cases): dq, dk, dv relative L2 <= 2e-2 (bf16 P and dS in the products, as the
//    flash tests); du relative L2 <= 1e-2 and max abs <= 1e-2 max|du_ref| (why: at the check), or
//    exactly 0 where the reference's is (k >= T, w >= T: no fractional keys).
// Outputs come from a poisoned (NaN-filled) allocator, so an unwritten element fails the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <set>
#include <string>

#include "attention/flash_attention.h"
#include "attention/sparsek/selection.h"
#include "attention/sparsek/sparsek_cuda.h"
#include "attention/sparsek/sparsek_reference.h"
#include "backend/cuda_device.h"
#include "tensor/random.h"
#include "testing/parity.h"
#include "testing/scoped_env.h"
#include "util/check.h"

using namespace sk;
using namespace sk::attention::sparsek;

namespace {


// Scores exactly representable in f32: kind 0 normal, 1 integers in {0, 1, 2} (ties, roots on
// breakpoints), 2 "recent" init plus noise, 3 mixed magnitudes (10% of 10^-U(0, 8), else -U(0, 2):
// fp64 sums of the fractional scores round, so chunk starts of the chunked pass can fail to verify),
// 4 normal with one tiny score 1e-12 at T / 3 (the chunked pass's compact keys cannot order it: that
// row falls back), 5 all equal (every key fractional: the chunked pass's fractional heap leaves
// shared memory for its global storage once the prefix has more than ~4096 keys).
std::vector<double> draw_scores(Rng& rng, int64_t T, int kind) {
  std::vector<double> u(static_cast<size_t>(T));
  for (int64_t j = 0; j < T; ++j) {
    double x = 0;
    if (kind == 0 || kind == 4) x = rng.normal();
    else if (kind == 1) x = double(rng.below(3));
    else if (kind == 2) x = 0.05 * rng.normal() + 1e-3 * double(j);
    else if (kind == 3) x = rng.uniform() < 0.1 ? std::pow(10.0, -8.0 * rng.uniform()) : -2.0 * rng.uniform();
    else x = 0.5;
    u[j] = double(float(x));
  }
  if (kind == 4 && T > 3) u[size_t(T / 3)] = double(1e-12f);
  return u;
}

// Selection variants: the sequential kernel, the chunked pass with its automatic chunk length, and
// the chunked pass with short chunks (many chunk starts to verify even at T 1000).
enum SelVariant { kSequential = 0, kChunkedAuto = 1, kChunkedShort = 2 };
const char* variant_name(int v) { return v == kSequential ? "seq" : v == kChunkedAuto ? "chunked" : "chunked64"; }
SelectionOptions variant_options(int v) {
  if (v == kSequential) return SelectionOptions{SelectionPass::Sequential, 0};
  return SelectionOptions{SelectionPass::Chunked, v == kChunkedShort ? 64 : 0};
}

struct SelCase {
  int64_t T, k, w;
  int variant = kSequential;
};

// The chunked pass's per-row fallback flags (printed; every row's results are compared exactly).
int count_fallback(const SparsekCudaSelection& s, int64_t rows, std::string* detail) {
  if (!s.fallback.defined()) return 0;
  const std::vector<double> f = s.fallback.cpu().to_vector();
  int n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    n += f[r] != 0;
    if (detail) *detail += " " + std::to_string(int(f[r]));
  }
  return n;
}

class CudaSparsekSelection : public ::testing::TestWithParam<SelCase> {
 protected:
  void SetUp() override { cuda::set_poison_on_alloc(true); }
  void TearDown() override { cuda::set_poison_on_alloc(false); }
};

TEST_P(CudaSparsekSelection, MatchesCpuSelection) {
  SK_REQUIRE_CUDA();
  const SelCase c = GetParam();
  constexpr int kRows = 5;  // score kinds 0-4 (rows 0-2 as before the chunked pass existed)
  Rng rng(77 + c.T * 13 + c.k * 5 + c.w);
  std::vector<std::vector<double>> rows;
  std::vector<double> all;
  for (int r = 0; r < kRows; ++r) {
    rows.push_back(draw_scores(rng, c.T, r));
    all.insert(all.end(), rows.back().begin(), rows.back().end());
  }
  Tensor u = Tensor::from_vector(all, {1, kRows, c.T}, DType::F32).to(Device::cuda(0));
  SparsekCudaSelection s = sparsek_cuda_selection(u, c.k, c.w, variant_options(c.variant));
  std::string flags;
  const int n_fallback = count_fallback(s, kRows, &flags);
  // Rows 0-2 (f32 normal, integers, recent init) verify in the CPU model of this pass: a fallback
  // there is not wrong (the results are compared below) but means the chunked path went unused.
  auto expect_rows_verified = [&](const SparsekCudaSelection& sel, const char* what) {
    const std::vector<double> fb = sel.fallback.cpu().to_vector();
    if (c.k <= 2048)
      for (int r = 0; r < 3; ++r) EXPECT_EQ(fb[r], 0.0) << what << "row " << r << " fell back (flags " << fb[r] << ")";
  };
  if (c.variant != kSequential) {
    ASSERT_TRUE(s.fallback.defined());
    std::printf("[ chunked selection ] T %lld k %lld w %lld chunk %lld: %d of %d rows fell back, flags%s\n",
                (long long)c.T, (long long)c.k, (long long)c.w, (long long)s.chunk_len, n_fallback, kRows,
                flags.c_str());
    // Row 4 holds a score the compact keys cannot order: it must have been recomputed.
    const std::vector<double> fb = s.fallback.cpu().to_vector();
    if (c.T > 3 && c.T / 3 + c.w < c.T) EXPECT_NE(fb[4], 0.0) << "row 4 (tiny score)";
    expect_rows_verified(s, "");
  } else {
    EXPECT_FALSE(s.fallback.defined());
  }
  // The candidate lists of tiles of 64 queries (the default), and of 128 (SPARSEK_SPARSEK_TILE=128)
  // for the chunked pass's cases.
  std::vector<SparsekCudaSelection> tiled{s};
  if (c.variant == kChunkedAuto) {
    sk::testing::ScopedEnv env("SPARSEK_SPARSEK_TILE", "128");
    tiled.push_back(sparsek_cuda_selection(u, c.k, c.w, variant_options(c.variant)));
    ASSERT_EQ(tiled.back().tile_q, 128);
  }
  ASSERT_EQ(s.tile_q, 64);
  const std::vector<double> tau = s.tau.cpu().to_vector(), rg = s.ranges.cpu().to_vector();
  // The chunked walk with binary heaps (SPARSEK_SELECTION_HEAP=2; the default is 4-ary) gives the
  // same tau and ranges bit for bit (only the heaps' minima are ever read).
  if (c.variant == kChunkedAuto) {
    sk::testing::ScopedEnv env("SPARSEK_SELECTION_HEAP", "2");
    const SparsekCudaSelection s2 = sparsek_cuda_selection(u, c.k, c.w, variant_options(c.variant));
    EXPECT_EQ(s2.tau.cpu().to_vector(), tau) << "binary heaps: tau differs";
    EXPECT_EQ(s2.ranges.cpu().to_vector(), rg) << "binary heaps: ranges differ";
  }
  // So does the chunk kernel at 5 blocks per SM (SPARSEK_SELECTION_BLOCKS=5; the default is 8, with
  // a smaller fractional heap in shared memory, hence more chunks and more heaps in global memory).
  if (c.variant == kChunkedAuto) {
    sk::testing::ScopedEnv env("SPARSEK_SELECTION_BLOCKS", "5");
    const SparsekCudaSelection s5 = sparsek_cuda_selection(u, c.k, c.w, variant_options(c.variant));
    EXPECT_EQ(s5.tau.cpu().to_vector(), tau) << "chunk kernel at 5 blocks per SM: tau differs";
    EXPECT_EQ(s5.ranges.cpu().to_vector(), rg) << "chunk kernel at 5 blocks per SM: ranges differ";
  }
  // So does the split pass (SPARSEK_SELECTION_BLOCKS=split: the canonical starts in one launch, the
  // walks in another from the stored heaps), with the same rows verified (none of rows 0-2 falls back
  // to the sequential kernel, so the split kernels produced them), for every chunked variant.
  if (c.variant != kSequential) {
    sk::testing::ScopedEnv env("SPARSEK_SELECTION_BLOCKS", "split");
    const SparsekCudaSelection ss = sparsek_cuda_selection(u, c.k, c.w, variant_options(c.variant));
    EXPECT_EQ(ss.tau.cpu().to_vector(), tau) << "split pass: tau differs";
    EXPECT_EQ(ss.ranges.cpu().to_vector(), rg) << "split pass: ranges differ";
    expect_rows_verified(ss, "split pass: ");
  }
  // So do balanced chunks (SPARSEK_SELECTION_BALANCE=26: long chunks early, short ones late; an
  // automatic chunk length only, so the variant with explicit 64-query chunks is skipped).
  if (c.variant == kChunkedAuto) {
    sk::testing::ScopedEnv env("SPARSEK_SELECTION_BALANCE", "26");
    const SparsekCudaSelection sb = sparsek_cuda_selection(u, c.k, c.w, variant_options(c.variant));
    EXPECT_EQ(sb.tau.cpu().to_vector(), tau) << "balanced chunks: tau differs";
    EXPECT_EQ(sb.ranges.cpu().to_vector(), rg) << "balanced chunks: ranges differ";
  }
  for (int r = 0; r < kRows; ++r) {
    const CausalSelection ref = causal_selection(rows[r].data(), c.T, c.k, c.w);
    int tau_bad = 0, range_bad = 0;
    for (int64_t i = 0; i < c.T; ++i) {
      const double got = tau[r * c.T + i];
      if (!(got == ref.tau[i])) {
        if (tau_bad++ < 3) ADD_FAILURE() << "row " << r << " tau[" << i << "] = " << got << ", CPU " << ref.tau[i];
      }
      const KeyRanges& e = ref.keys[i];
      const double* g = &rg[(r * c.T + i) * 5];
      if (g[0] != e.enter || g[1] != e.frac_from || g[2] != e.dead_from || g[3] != e.sel_from || g[4] != e.sel_to) {
        if (range_bad++ < 3)
          ADD_FAILURE() << "row " << r << " key " << i << ": GPU (" << g[0] << ", " << g[1] << ", " << g[2] << ", "
                        << g[3] << ", " << g[4] << "), CPU (" << e.enter << ", " << e.frac_from << ", " << e.dead_from
                        << ", " << e.sel_from << ", " << e.sel_to << ")";
      }
    }
    EXPECT_EQ(tau_bad, 0) << "row " << r;
    EXPECT_EQ(range_bad, 0) << "row " << r;
    for (const SparsekCudaSelection& st : tiled) {
      const int64_t tq = st.tile_q, NT = (c.T + tq - 1) / tq;
      ASSERT_EQ(st.cap, std::max<int64_t>(1, std::min(c.k + tq - 1, c.T)));
      const std::vector<double> cand = st.cand.cpu().to_vector(), cand_n = st.cand_n.cpu().to_vector();
      const std::vector<double> cand_uniform = st.cand_uniform.cpu().to_vector();
      int64_t n_uniform_total = 0, n_total = 0;
      for (int64_t t = 0; t < NT; ++t) {
        const int64_t q0 = t * tq, q1 = std::min(q0 + tq, c.T);
        // The tile's keys: uniform ones (a full tile, every query i selects j, and j's state,
        // saturated / fractional / dead, is the same for every i; checked query by query) first,
        // then the others, each ascending.
        std::vector<int64_t> want, others;
        for (int64_t j = 0; j < c.T; ++j) {
          if (!(ref.keys[j].sel_from < ref.keys[j].sel_to && ref.keys[j].sel_from < q1 && ref.keys[j].sel_to > q0))
            continue;
          bool uniform = q1 - q0 == tq;
          for (int64_t i = q0; i < q1 && uniform; ++i)
            uniform = ref.selected(i, j) && ref.saturated(i, j) == ref.saturated(q0, j) &&
                      ref.fractional(i, j) == ref.fractional(q0, j);
          (uniform ? want : others).push_back(j);
        }
        const int64_t n_uniform = int64_t(want.size());
        want.insert(want.end(), others.begin(), others.end());
        const int64_t n = int64_t(cand_n[r * NT + t]);
        ASSERT_EQ(n, int64_t(want.size())) << "row " << r << " tile " << t << " of " << tq;
        ASSERT_EQ(int64_t(cand_uniform[r * NT + t]), n_uniform) << "row " << r << " tile " << t << " of " << tq;
        n_uniform_total += n_uniform;
        n_total += n;
        ASSERT_LE(n, st.cap) << "row " << r << " tile " << t << " of " << tq;
        ASSERT_LE(n, c.k + (q1 - q0) - 1) << "row " << r << " tile " << t << " of " << tq;
        for (int64_t x = 0; x < n; ++x)
          ASSERT_EQ(int64_t(cand[(r * NT + t) * st.cap + x]), want[x])
              << "row " << r << " tile " << t << " of " << tq << " slot " << x;
      }
      if (r == 0 && c.T == 20000 && c.k == 512)
        std::printf("[ candidates ] T %lld k 512 w %lld tile %lld: %lld of %lld candidates uniform\n",
                    (long long)c.T, (long long)c.w, (long long)tq, (long long)n_uniform_total, (long long)n_total);
    }
  }
}

std::vector<SelCase> sel_cases() {
  std::vector<SelCase> v;
  for (int variant : {kSequential, kChunkedAuto, kChunkedShort}) {
    for (int64_t T : {1, 17, 1000, 4096})
      for (int64_t k : {int64_t(1), int64_t(8), int64_t(64), T + 3})
        for (int64_t w : {int64_t(0), int64_t(3), T + 1}) v.push_back({T, k, w, variant});
    // Heaps too large for shared memory: the fractional heap in global scratch (k 8), and all three
    // there (k 9000: the top-k and saturated heaps alone exceed 200 KB; the chunked pass does not
    // take k > 2048 and runs the sequential kernel for every row).
    v.push_back({20000, 8, 0, variant});
    v.push_back({20000, 9000, 3, variant});
    v.push_back({20000, 512, 512, variant});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaSparsekSelection, ::testing::ValuesIn(sel_cases()),
                         [](const ::testing::TestParamInfo<SelCase>& i) {
                           return "T" + std::to_string(i.param.T) + "_k" + std::to_string(i.param.k) + "_w" +
                                  std::to_string(i.param.w) + "_" + variant_name(i.param.variant);
                         });

// The chunked pass's paths, each compared exactly with the CPU: a row of normal scores (verifies),
// all-equal scores (fractional heap in global memory), a tiny score (compact keys: falls back),
// mixed magnitudes (may fail verification), recent-init scores; at least one row recomputed.
TEST(CudaSparsekSelectionChunked, FallbackRowsEqualTheCpu) {
  SK_REQUIRE_CUDA();
  cuda::set_poison_on_alloc(true);
  const int64_t T = 9000, k = 64, w = 3;
  const int kinds[] = {0, 5, 4, 3, 2};
  const int R = 5;
  for (int64_t L : {0, 256}) {
    Rng rng(515 + L);
    std::vector<std::vector<double>> rows;
    std::vector<double> all;
    for (int r = 0; r < R; ++r) {
      rows.push_back(draw_scores(rng, T, kinds[r]));
      all.insert(all.end(), rows.back().begin(), rows.back().end());
    }
    Tensor u = Tensor::from_vector(all, {1, R, T}, DType::F32).to(Device::cuda(0));
    SparsekCudaSelection s = sparsek_cuda_selection(u, k, w, SelectionOptions{SelectionPass::Chunked, L});
    ASSERT_TRUE(s.fallback.defined());
    const std::vector<double> tau = s.tau.cpu().to_vector(), rg = s.ranges.cpu().to_vector();
    const std::vector<double> fb = s.fallback.cpu().to_vector();
    std::string flags;
    const int n_fallback = count_fallback(s, R, &flags);
    std::printf("[ chunked selection ] fallback test T %lld k %lld w %lld chunk %lld: %d of %d rows fell back, flags%s "
                "(1 verify, 2 capacity, 4 scores, 8 internal, 16 unsupported k)\n",
                (long long)T, (long long)k, (long long)w, (long long)s.chunk_len, n_fallback, R, flags.c_str());
    for (int r = 0; r < R; ++r) {
      const CausalSelection ref = causal_selection(rows[r].data(), T, k, w);
      for (int64_t i = 0; i < T; ++i) {
        ASSERT_TRUE(tau[r * T + i] == ref.tau[i])
            << "row " << r << " (fallback flags " << fb[r] << ") tau[" << i << "] = " << tau[r * T + i] << ", CPU "
            << ref.tau[i];
        const KeyRanges& e = ref.keys[i];
        const double* g = &rg[(r * T + i) * 5];
        ASSERT_TRUE(g[0] == e.enter && g[1] == e.frac_from && g[2] == e.dead_from && g[3] == e.sel_from &&
                    g[4] == e.sel_to)
            << "row " << r << " (fallback flags " << fb[r] << ") key " << i << ": GPU (" << g[0] << ", " << g[1]
            << ", " << g[2] << ", " << g[3] << ", " << g[4] << "), CPU (" << e.enter << ", " << e.frac_from << ", "
            << e.dead_from << ", " << e.sel_from << ", " << e.sel_to << ")";
      }
    }
    EXPECT_EQ(fb[0], 0.0) << "normal scores should verify";
    EXPECT_EQ(fb[4], 0.0) << "recent-init scores should verify";
    EXPECT_EQ(fb[1], 0.0) << "all-equal scores (fractional heap in global memory) should verify";
    EXPECT_NE(fb[2], 0.0) << "tiny score";
    EXPECT_GE(n_fallback, 1);
  }
  cuda::set_poison_on_alloc(false);
}

struct FwdCase {
  int64_t B, H, Hu, T, D, k, w;
  MaskMode mode;
};

std::string fwd_name(const FwdCase& c) {
  return "B" + std::to_string(c.B) + "_H" + std::to_string(c.H) + "_Hu" + std::to_string(c.Hu) + "_T" +
         std::to_string(c.T) + "_D" + std::to_string(c.D) + "_k" + std::to_string(c.k) + "_w" + std::to_string(c.w) +
         "_" + mask_mode_name(c.mode);
}

// (B, H, T, D) view of slot `which` of a (B, T, 3, H, D) buffer.
Tensor head_view(const Tensor& qkv, int64_t which) {
  const int64_t B = qkv.size(0), T = qkv.size(1), H = qkv.size(3), D = qkv.size(4);
  return make_view(qkv, {B, H, T, D}, {T * 3 * H * D, D, 3 * H * D, 1}, which * H * D);
}

class CudaSparsekForward : public ::testing::TestWithParam<FwdCase> {
 protected:
  void SetUp() override { cuda::set_poison_on_alloc(true); }
  void TearDown() override { cuda::set_poison_on_alloc(false); }
};

TEST_P(CudaSparsekForward, MatchesCpuReference) {
  SK_REQUIRE_CUDA();
  const FwdCase c = GetParam();
  Rng rng(4000 + c.T * 7 + c.D + c.k * 3 + c.w + int(c.mode));
  const Device gpu = Device::cuda(0);
  Tensor qkv = Tensor::randn({c.B, c.T, 3, c.H, c.D}, rng, DType::F32).to(DType::BF16).to(gpu);
  // Scores like the scorer's: O(1) spread plus a small position slope, rounded to bf16 (ties).
  std::vector<double> uv;
  for (int64_t r = 0; r < c.B * c.Hu; ++r)
    for (int64_t j = 0; j < c.T; ++j) uv.push_back(rng.normal() + 1e-3 * double(j));
  Tensor u = Tensor::from_vector(uv, {c.B, c.Hu, c.T}, DType::F32).to(DType::BF16).to(gpu);
  Tensor q = head_view(qkv, 0), k = head_view(qkv, 1), v = head_view(qkv, 2);
  const SparsekParams params{c.k, c.w, c.mode};

  Tensor dout = Tensor::randn({c.B, c.H, c.T, c.D}, rng, DType::F32).to(DType::BF16).to(gpu);

  auto f64 = [](const Tensor& x) { return x.cpu().to(DType::F64).contiguous(); };
  Tensor rq = f64(q), rk = f64(k), rv = f64(v), ru = f64(u);
  SparsekForward ref = sparsek_attention_forward(rq, rk, rv, ru, params);
  SparsekGrads rg = sparsek_attention_backward(f64(dout), rq, rk, rv, ru, ref, params);
  double du_ref_max = 0;
  for (double x : rg.du.to_vector()) du_ref_max = std::max(du_ref_max, std::abs(x));
  std::cout << fwd_name(c) << "\n";
  // Both block heights (SPARSEK_SPARSEK_TILE: candidate tiles of 64 or 128 queries).
  for (const char* tile : {"64", "128"}) {
    sk::testing::ScopedEnv tile_env("SPARSEK_SPARSEK_TILE", tile);
    SparsekCudaForward fwd = sparsek_cuda_forward(q, k, v, u, params);
    ASSERT_EQ(fwd.selection.tile_q, std::stoll(tile));
    // The sync forward (SPARSEK_SPARSEK_FWD=sync: the same arithmetic, its loads scheduled a
    // chunk later than the staged ones') gives the default's out and lse bit for bit. So does
    // staged (the default staged3 kernel compiled for 2 blocks per SM: more registers).
    for (const char* variant : {"sync", "staged"}) {
      sk::testing::ScopedEnv env("SPARSEK_SPARSEK_FWD", variant);
      const SparsekCudaForward other = sparsek_cuda_forward(q, k, v, u, params);
      EXPECT_EQ(f64(other.out).to_vector(), f64(fwd.out).to_vector()) << "tile " << tile << " " << variant << " forward: out differs";
      EXPECT_EQ(f64(other.lse).to_vector(), f64(fwd.lse).to_vector()) << "tile " << tile << " " << variant << " forward: lse differs";
    }
    // Chunks of uniform keys (cand_uniform; m from one saturated add, no per-element tests) give the
    // general path's values bit for bit: the forward with them switched off is identical.
    {
      sk::testing::ScopedEnv env("SPARSEK_SPARSEK_UNIFORM", "off");
      const SparsekCudaForward general = sparsek_cuda_forward(q, k, v, u, params);
      EXPECT_EQ(f64(general.out).to_vector(), f64(fwd.out).to_vector()) << "tile " << tile << " uniform off: out differs";
      EXPECT_EQ(f64(general.lse).to_vector(), f64(fwd.lse).to_vector()) << "tile " << tile << " uniform off: lse differs";
    }
    const auto out = sk::testing::compare(f64(fwd.out), ref.out);
    const auto lse = sk::testing::compare(f64(fwd.lse), ref.lse);
    std::cout << "  tile " << tile << ": out " << out.str() << "\n  lse " << lse.str() << "\n";
    for (const sk::testing::ParityReport* r : {&out, &lse}) EXPECT_FALSE(r->non_finite) << tile << " " << r->str();
    EXPECT_LE(out.rel_l2, 1e-2) << "tile " << tile << " out " << out.str();
    EXPECT_LE(lse.max_abs, 1e-2) << "tile " << tile << " lse " << lse.str();
    // Every backward variant (SPARSEK_SPARSEK_BWD; backward.cu) against the reference.
    // "/uniform off": every chunk through the general per-element path; "/flash mma": the window
    // part through the mma.sync flash backward (its fp32 dK / dV output) instead of the device's default.
    for (const char* variant : {"sync", "gsum", "pipelined", "pipelined3", "pipelined3/uniform off", "keysplit", "keysplit/uniform off",
                                "keysplit/flash mma"}) {
      const std::string name(variant);
      sk::testing::ScopedEnv env("SPARSEK_SPARSEK_BWD", name.substr(0, name.find('/')).c_str());
      sk::testing::ScopedEnv uniform_env("SPARSEK_SPARSEK_UNIFORM", name.find("uniform off") == std::string::npos ? "on" : "off");
      sk::testing::ScopedEnv flash_env("SPARSEK_FLASH_BWD", name.find("flash mma") == std::string::npos ? "auto" : "mma");
      const SparsekCudaGrads gv = sparsek_cuda_backward(dout, q, k, v, fwd, params);
      const auto dq = sk::testing::compare(f64(gv.dq), rg.dq);
      const auto dk = sk::testing::compare(f64(gv.dk), rg.dk);
      const auto dv = sk::testing::compare(f64(gv.dv), rg.dv);
      const auto du = sk::testing::compare(f64(gv.du), rg.du);
      const std::string what = std::string("tile ") + tile + " backward " + variant;
      std::cout << "  " << what << ":\n  dq " << dq.str() << "\n  dk " << dk.str() << "\n  dv " << dv.str()
                << "\n  du " << du.str() << " (max |du_ref| " << du_ref_max << ")\n";
      for (const sk::testing::ParityReport* r : {&dq, &dk, &dv, &du}) EXPECT_FALSE(r->non_finite) << what << " " << r->str();
      EXPECT_LE(dq.rel_l2, 2e-2) << what << " dq " << dq.str();
      EXPECT_LE(dk.rel_l2, 2e-2) << what << " dk " << dk.str();
      EXPECT_LE(dv.rel_l2, 2e-2) << what << " dv " << dv.str();
      // du: with k >= T or w >= T no key is ever fractional and du is exactly 0 on both sides.
      // Otherwise du_j = sum_i (G_ij - c_i) is a difference of sums of fp32 terms built from P (fp32)
      // and, in log_mask mode, D_i = dO_i . O_i with the bf16-rounded O (relative error 2^-9 per
      // element), so single entries can be off relatively (max_rel up to ~0.4 was seen where du_j is
      // near 0): bound the relative L2 error (<= 1e-2; 1.1e-3 was the largest seen on an H200) and the
      // max abs error against the largest |du| (<= 1e-2 of it; 1.2e-3 seen).
      if (du_ref_max == 0) {
        EXPECT_EQ(du.max_abs, 0.0) << what << " du " << du.str();
      } else {
        EXPECT_LE(du.rel_l2, 1e-2) << what << " du " << du.str();
        EXPECT_LE(du.max_abs, 1e-2 * du_ref_max) << what << " du " << du.str();
      }
    }
  }
}

std::vector<FwdCase> fwd_cases() {
  const MaskMode G = MaskMode::GateValues, L = MaskMode::LogMask;
  return {
      {1, 2, 2, 1, 64, 1, 0, G},        {1, 1, 1, 1, 128, 4, 3, L},        // T = 1
      {2, 2, 2, 17, 64, 8, 3, G},       {2, 2, 2, 17, 64, 8, 0, L},        //
      {1, 2, 1, 17, 128, 20, 0, G},     {1, 2, 2, 17, 64, 4, 20, L},       // k >= T; w >= T
      {1, 2, 2, 1000, 64, 64, 0, G},    {1, 2, 2, 1000, 128, 100, 37, L},  //
      {1, 2, 1, 1000, 64, 1003, 0, L},  {1, 2, 2, 1000, 128, 16, 1001, G},  // k >= T; w >= T
      {1, 2, 2, 1000, 64, 8, 200, G},   {1, 2, 2, 1000, 64, 200, 5, L},    //
      {1, 2, 2, 4096, 64, 256, 128, G}, {1, 1, 1, 4096, 128, 64, 0, L},    //
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaSparsekForward, ::testing::ValuesIn(fwd_cases()),
                         [](const ::testing::TestParamInfo<FwdCase>& i) { return fwd_name(i.param); });

// The differentiable op (one autograd node of q, k, v, u) returns the fused backward's gradients
// (dq, dk, dv, du use atomics (dq in the window part's flash backward), so equal up to summation
// order: relative L2 <= 1e-2).
TEST(CudaSparsekAutograd, op_gradients_equal_the_fused_backward) {
  SK_REQUIRE_CUDA();
  Rng rng(91);
  const Device gpu = Device::cuda(0);
  const SparsekParams params{16, 8, MaskMode::LogMask};
  auto leaf = [&](const Shape& s) { return Tensor::randn(s, rng, DType::F32).to(DType::BF16).to(gpu).set_requires_grad(); };
  Tensor q = leaf({2, 2, 100, 64}), k = leaf({2, 2, 100, 64}), v = leaf({2, 2, 100, 64}), u = leaf({2, 2, 100});
  Tensor dout = Tensor::randn({2, 2, 100, 64}, rng, DType::F32).to(DType::BF16).to(gpu);
  Tensor out = sparsek_attention_cuda(q, k, v, u, params);
  out.backward(dout);
  SparsekCudaForward f = sparsek_cuda_forward(q.detach(), k.detach(), v.detach(), u.detach(), params);
  SparsekCudaGrads g = sparsek_cuda_backward(dout, q.detach(), k.detach(), v.detach(), f, params);
  auto f64 = [](const Tensor& x) { return x.cpu().to(DType::F64).contiguous(); };
  EXPECT_EQ(sk::testing::compare(f64(out), f64(f.out)).max_abs, 0.0);
  EXPECT_LE(sk::testing::compare(f64(q.grad()), f64(g.dq)).rel_l2, 1e-2);
  EXPECT_LE(sk::testing::compare(f64(k.grad()), f64(g.dk)).rel_l2, 1e-2);
  EXPECT_LE(sk::testing::compare(f64(v.grad()), f64(g.dv)).rel_l2, 1e-2);
  EXPECT_EQ(u.grad().dtype(), DType::BF16);
  EXPECT_LE(sk::testing::compare(f64(u.grad()), f64(g.du)).rel_l2, 1e-2);
}

// Timing (disabled by default; run with --gtest_also_run_disabled_tests): wall time of the
// selection pass (+ candidate lists), the fused forward (given the selection) and the fused
// backward (with its accumulator zeroing, dk/dv conversion and du pass), next to the flash
// kernels' full causal attention on the same shapes. B 1, H 8 (per-head scores), D 64, k 512,
// w 512; median of 5 after a warm-up, cuda::synchronize() around each call.
TEST(CudaSparsekTiming, DISABLED_prints_times) {
  SK_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  auto time_ms = [](auto&& fn) {
    fn();
    cuda::synchronize();
    std::vector<double> ms;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      cuda::synchronize();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[2];
  };
  for (int64_t T : {4096, 16384}) {
    Rng rng(5 + T);
    const int64_t B = 1, H = 8, D = 64;
    Tensor q = Tensor::randn({B, H, T, D}, rng, DType::F32).to(DType::BF16).to(gpu);
    Tensor k = Tensor::randn({B, H, T, D}, rng, DType::F32).to(DType::BF16).to(gpu);
    Tensor v = Tensor::randn({B, H, T, D}, rng, DType::F32).to(DType::BF16).to(gpu);
    Tensor dout = Tensor::randn({B, H, T, D}, rng, DType::F32).to(DType::BF16).to(gpu);
    std::vector<double> uv;
    for (int64_t r = 0; r < B * H; ++r)
      for (int64_t j = 0; j < T; ++j) uv.push_back(rng.normal() + 1e-3 * double(j));
    Tensor u = Tensor::from_vector(uv, {B, H, T}, DType::F32).to(DType::BF16).to(gpu);
    const SparsekParams params{512, 512, MaskMode::GateValues};
    const double sel = time_ms([&] { sparsek_cuda_selection(u, params.k, params.window); });
    SparsekCudaForward f = sparsek_cuda_forward(q, k, v, u, params);
    const double fwd = time_ms([&] { sparsek_cuda_forward(q, k, v, f.selection, H, params); });
    const double bwd = time_ms([&] { sparsek_cuda_backward(dout, q, k, v, f, params); });
    attention::AttentionForward ff = attention::flash_attention_forward(q, k, v, attention::CausalWindow{0});
    const double ffwd = time_ms([&] { attention::flash_attention_forward(q, k, v, attention::CausalWindow{0}); });
    const double fbwd =
        time_ms([&] { attention::flash_attention_backward(dout, q, k, v, ff, attention::CausalWindow{0}); });
    std::printf("[ sparsek timing ] T %lld: selection %.3f ms, forward kernel %.3f ms, backward %.3f ms; "
                "flash full causal forward %.3f ms, backward %.3f ms\n",
                (long long)T, sel, fwd, bwd, ffwd, fbwd);
  }
}

// Selection pass alone, sequential vs chunked (disabled by default): 48 score rows (B 6 x Hu 8),
// k 512, w 512, bf16-rounded N(0, 1) + 1e-3 j scores, T 4k-32k; wall time of
// sparsek_cuda_selection (selection + candidate lists), median of 5 after a warm-up; the results
// of both passes are compared exactly, and the chunked pass's fallback rows are counted.
TEST(CudaSparsekTiming, DISABLED_selection_sequential_vs_chunked) {
  SK_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  auto time_ms = [](auto&& fn) {
    fn();
    cuda::synchronize();
    std::vector<double> ms;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      cuda::synchronize();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[2];
  };
  for (int64_t T : {4096, 8192, 16384, 32768}) {
    Rng rng(11 + T);
    const int64_t B = 6, Hu = 8, k = 512, w = 512;
    std::vector<double> uv;
    for (int64_t r = 0; r < B * Hu; ++r)
      for (int64_t j = 0; j < T; ++j) uv.push_back(rng.normal() + 1e-3 * double(j));
    Tensor u = Tensor::from_vector(uv, {B, Hu, T}, DType::F32).to(DType::BF16).to(gpu);
    const SelectionOptions seq{SelectionPass::Sequential, 0}, chk{SelectionPass::Chunked, 0};
    const double t_seq = time_ms([&] { sparsek_cuda_selection(u, k, w, seq); });
    const double t_chk = time_ms([&] { sparsek_cuda_selection(u, k, w, chk); });
    SparsekCudaSelection a = sparsek_cuda_selection(u, k, w, seq), b = sparsek_cuda_selection(u, k, w, chk);
    const std::vector<double> ta = a.tau.cpu().to_vector(), tb = b.tau.cpu().to_vector();
    const std::vector<double> ra = a.ranges.cpu().to_vector(), rb = b.ranges.cpu().to_vector();
    int64_t tau_diff = 0, range_diff = 0;
    for (size_t x = 0; x < ta.size(); ++x) tau_diff += !(ta[x] == tb[x]);
    for (size_t x = 0; x < ra.size(); ++x) range_diff += ra[x] != rb[x];
    const int n_fallback = count_fallback(b, B * Hu, nullptr);
    std::printf("[ sparsek selection timing ] T %lld, %lld rows, k 512, w 512: sequential %.3f ms, chunked %.3f ms "
                "(chunk %lld, %d rows fell back) = %.2fx; differing tau %lld, range fields %lld\n",
                (long long)T, (long long)(B * Hu), t_seq, t_chk, (long long)b.chunk_len, n_fallback, t_seq / t_chk,
                (long long)tau_diff, (long long)range_diff);
    EXPECT_EQ(tau_diff, 0);
    EXPECT_EQ(range_diff, 0);
  }
}

TEST(CudaSparsekArgs, RejectsUnsupportedInputs) {
  SK_REQUIRE_CUDA();
  Rng rng(3);
  const Device gpu = Device::cuda(0);
  Tensor q32 = Tensor::randn({1, 2, 8, 64}, rng, DType::F32, gpu);
  Tensor u = Tensor::randn({1, 2, 8}, rng, DType::F32, gpu);
  const SparsekParams p{4, 0, MaskMode::GateValues};
  EXPECT_THROW(sparsek_cuda_forward(q32, q32, q32, u, p), sk::Error);  // f32
  Tensor q = Tensor::randn({1, 2, 8, 64}, rng, DType::F32).to(DType::BF16).to(gpu);
  Tensor u9 = Tensor::randn({1, 2, 9}, rng, DType::F32, gpu);
  EXPECT_THROW(sparsek_cuda_forward(q, q, q, u9, p), sk::Error);  // T mismatch
  EXPECT_FALSE(sparsek_attention_cuda_supported(q.cpu()));
  EXPECT_TRUE(sparsek_attention_cuda_supported(q));
}

}  // namespace
