// SparseK selection pass on CUDA (attention-spec.md 4.3; declared in sparsek_attention.h):
//   sk_cuda_sparsek_select:     tau_i and the per-key query ranges of every score row.
//   sk_cuda_sparsek_candidates: per query tile of SK_SPARSEK_TILE_Q queries, the ascending list of
//                               keys selected by any query of the tile (<= k + BQ - 1 keys).
// Selection is the CPU's incremental heap walk (src/attention/sparsek/selection.cpp,
// PrefixSelector) run by ONE THREAD PER SCORE ROW over three binary min-heaps of key positions in
// global scratch (saturated keys by (u - 1, pos), fractional keys by (u, pos), the top-k by
// (u, pos)); every comparison and every sum is done in fp64 in the CPU's order with explicit
// round-to-nearest intrinsics (no FMA contraction), so tau and the ranges equal the CPU's exactly.
// The fractional set's maximum (needed for the "flat after nb" test) is tracked as the largest
// score inserted since the set was last empty: keys only ever leave from the minimum side.
// Scaling: O(T log T) sequential work per row, parallel over rows only (B x Hu threads); with
// few rows a long sequence is latency bound (the heaps' upper levels stay in L1). Parallelism
// within a row (e.g. a per-chunk tau search) is future work.
// Candidates: one block per (tile, row) scans the keys of the tile's prefix [0, q1 - w) and
// compacts the matching ones in order (warp ballots): O(T / BQ * T) work per row, parallel over
// tiles, deterministic (ascending keys).
// Tested in tests/attention/sparsek/test_sparsek_cuda.cpp against causal_selection.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/sparsek/sparsek_attention.h"

namespace sk_sparsek {

struct Row {
  const float* u;
  __device__ double score(int pos) const { return static_cast<double>(u[pos]); }
  __device__ double breakpoint(int pos) const { return __dsub_rn(static_cast<double>(u[pos]), 1.0); }
};

// Orders of the three heaps: strict and total (positions are unique).
struct ByScore {  // (u, pos)
  Row r;
  __device__ bool operator()(int a, int b) const {
    const double ua = r.score(a), ub = r.score(b);
    return ua < ub || (ua == ub && a < b);
  }
};
struct ByBreakpoint {  // (fl(u - 1), pos)
  Row r;
  __device__ bool operator()(int a, int b) const {
    const double ba = r.breakpoint(a), bb = r.breakpoint(b);
    return ba < bb || (ba == bb && a < b);
  }
};

template <class Less>
__device__ void sift_down(int* h, int n, int i, int x, Less less) {
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && less(h[c + 1], h[c])) ++c;
    if (!less(h[c], x)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}
template <class Less>
__device__ void heap_push(int* h, int& n, int x, Less less) {
  int i = n++;
  while (i > 0) {
    const int p = (i - 1) / 2;
    if (!less(x, h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}
template <class Less>
__device__ int heap_pop(int* h, int& n, Less less) {
  const int top = h[0];
  --n;
  if (n > 0) sift_down(h, n, 0, h[n], less);
  return top;
}

__global__ void select_kernel(const SkSparsekSelectParams p, double* __restrict__ tau_out,
                              SkKeyRange* __restrict__ ranges_out, int32_t* __restrict__ scratch) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= p.rows) return;
  const int T = p.seq_len, K = p.k, W = p.window;
  const int kcap = min(K, T);
  const Row r{p.u + static_cast<int64_t>(row) * T};
  double* tau_row = tau_out + static_cast<int64_t>(row) * T;
  SkKeyRange* rg = ranges_out + static_cast<int64_t>(row) * T;
  int* sat = scratch + static_cast<int64_t>(row) * (2 * T + kcap);
  int* frac = sat + T;
  int* top = frac + T;
  const ByScore by_score{r};
  const ByBreakpoint by_bp{r};

  for (int j = 0; j < T; ++j) {
    const int enter = min(j + W, T);
    rg[j] = SkKeyRange{enter, T, T, enter, enter};  // saturated to the end, never selected
  }
  int n_sat = 0, n_frac = 0, n_top = 0, n_prefix = 0;
  double sum_frac = 0.0, tau = -INFINITY, frac_max = -INFINITY;
  for (int i = 0; i < T; ++i) {
    const int j = i - W;
    if (j < 0) {
      tau_row[i] = -INFINITY;
      continue;
    }
    const double u = r.score(j);
    ++n_prefix;
    // Top-k: one insertion and at most one eviction (equal scores: the more recent key wins).
    if (n_top < K) {
      heap_push(top, n_top, j, by_score);
      rg[j].sel_to = T;
    } else if (u >= r.score(top[0])) {
      rg[top[0]].sel_to = i;
      sift_down(top, n_top, 0, j, by_score);
      rg[j].sel_to = T;
    }
    // Classify the new key against the old tau.
    if (__dsub_rn(u, 1.0) >= tau) {
      heap_push(sat, n_sat, j, by_bp);
    } else if (u > tau) {
      heap_push(frac, n_frac, j, by_score);
      sum_frac = __dadd_rn(sum_frac, u);
      frac_max = fmax(frac_max, u);
      rg[j].frac_from = i;
    } else {
      rg[j].frac_from = i;
      rg[j].dead_from = i;
    }
    if (n_prefix <= K) {
      tau_row[i] = tau;
      continue;
    }
    // Walk tau up over the breakpoints while f stays >= k there.
    double nb = INFINITY;
    for (;;) {
      if (n_frac == 0) sum_frac = 0.0, frac_max = -INFINITY;
      nb = INFINITY;
      if (n_sat > 0) nb = r.breakpoint(sat[0]);
      if (n_frac > 0) nb = fmin(nb, r.score(frac[0]));
      if (nb == INFINITY) break;
      const bool flat_after = (n_sat == 0 || r.breakpoint(sat[0]) > nb) && (n_frac == 0 || frac_max <= nb);
      const double f_nb = flat_after ? static_cast<double>(n_sat)
                                     : __dadd_rn(static_cast<double>(n_sat),
                                                 __dsub_rn(sum_frac, __dmul_rn(static_cast<double>(n_frac), nb)));
      if (f_nb < static_cast<double>(K)) break;
      tau = nb;
      while (n_sat > 0 && r.breakpoint(sat[0]) <= nb) {  // saturated -> fractional
        const int e = heap_pop(sat, n_sat, by_bp);
        const double ue = r.score(e);
        heap_push(frac, n_frac, e, by_score);
        sum_frac = __dadd_rn(sum_frac, ue);
        frac_max = fmax(frac_max, ue);
        rg[e].frac_from = i;
      }
      while (n_frac > 0 && r.score(frac[0]) <= nb) {  // fractional -> dead (never returns)
        const int d = heap_pop(frac, n_frac, by_score);
        sum_frac = __dsub_rn(sum_frac, r.score(d));
        rg[d].dead_from = i;
      }
      if (n_frac == 0) frac_max = -INFINITY;
    }
    if (n_frac > 0) {
      const double t = __ddiv_rn(__dsub_rn(__dadd_rn(static_cast<double>(n_sat), sum_frac), static_cast<double>(K)),
                                 static_cast<double>(n_frac));
      tau = t < tau ? tau : (nb < t ? nb : t);  // std::clamp(t, tau, nb)
    }
    tau_row[i] = tau;
  }
}

constexpr int kCandThreads = 256;

__global__ void __launch_bounds__(kCandThreads) candidates_kernel(const SkKeyRange* __restrict__ ranges, int T, int cap,
                                                                  int32_t* __restrict__ cand,
                                                                  int32_t* __restrict__ cand_n) {
  const int tile = blockIdx.x, row = blockIdx.y, n_tiles = gridDim.x;
  const int q0 = tile * SK_SPARSEK_TILE_Q, q1 = min(q0 + SK_SPARSEK_TILE_Q, T);
  const SkKeyRange* rg = ranges + static_cast<int64_t>(row) * T;
  int32_t* out = cand + (static_cast<int64_t>(row) * n_tiles + tile) * cap;
  __shared__ int warp_count[kCandThreads / 32];
  __shared__ int base;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) base = 0;
  __syncthreads();
  for (int j0 = 0; j0 < q1; j0 += kCandThreads) {  // a key selected by query i is <= i
    const int j = j0 + static_cast<int>(threadIdx.x);
    bool take = false;
    if (j < q1) {
      const SkKeyRange e = rg[j];
      take = e.sel_from < e.sel_to && e.sel_from < q1 && e.sel_to > q0;
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, take);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    int offset = base;
    for (int w = 0; w < warp; ++w) offset += warp_count[w];
    if (take) {
      const int pos = offset + __popc(ballot & ((1u << lane) - 1u));
      if (pos < cap) out[pos] = j;
    }
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 0; w < kCandThreads / 32; ++w) base += warp_count[w];
    __syncthreads();
  }
  if (threadIdx.x == 0) cand_n[static_cast<int64_t>(row) * n_tiles + tile] = base;
}

}  // namespace sk_sparsek

extern "C" int sk_sparsek_candidate_cap(int k, int seq_len) {
  const int cap = k + SK_SPARSEK_TILE_Q - 1 < seq_len ? k + SK_SPARSEK_TILE_Q - 1 : seq_len;
  return cap > 1 ? cap : 1;
}

extern "C" int sk_cuda_sparsek_select(const SkSparsekSelectParams* p, double* tau, SkKeyRange* ranges,
                                      int32_t* scratch, cudaStream_t s) {
  if (!p || p->rows < 0 || p->seq_len < 0 || p->k < 1 || p->window < 0) return SK_KERNEL_BAD_ARG;
  if (p->rows == 0 || p->seq_len == 0) return SK_KERNEL_OK;
  if (!p->u || !tau || !ranges || !scratch) return SK_KERNEL_BAD_ARG;
  constexpr int threads = 32;
  sk_sparsek::select_kernel<<<(p->rows + threads - 1) / threads, threads, 0, s>>>(*p, tau, ranges, scratch);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

extern "C" int sk_cuda_sparsek_candidates(const SkKeyRange* ranges, int rows, int seq_len, int cap, int32_t* cand,
                                          int32_t* cand_n, cudaStream_t s) {
  if (rows < 0 || seq_len < 0 || cap < 1) return SK_KERNEL_BAD_ARG;
  if (rows == 0 || seq_len == 0) return SK_KERNEL_OK;
  if (!ranges || !cand || !cand_n) return SK_KERNEL_BAD_ARG;
  const int n_tiles = (seq_len + SK_SPARSEK_TILE_Q - 1) / SK_SPARSEK_TILE_Q;
  if (rows > 65535) return SK_KERNEL_BAD_ARG;
  sk_sparsek::candidates_kernel<<<dim3(n_tiles, rows), sk_sparsek::kCandThreads, 0, s>>>(ranges, seq_len, cap, cand,
                                                                                         cand_n);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
