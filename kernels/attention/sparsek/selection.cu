// SparseK selection pass on CUDA (attention-spec.md 4.3; declared in sparsek_attention.h):
//   sk_cuda_sparsek_select:     tau_i and the per-key query ranges of every score row.
// Selection is the CPU's incremental heap walk (src/attention/sparsek/selection.cpp,
// PrefixSelector) run by TWO THREADS PER SCORE ROW (one block per row; thread 0 the tau walk over the
// saturated and fractional heaps, thread 32 the top-k heap, concurrently in two warps; the block's
// other threads only initialise the ranges) over three binary min-heaps of (key, pos) entries: saturated keys by
// (fl(u - 1), pos) (at most k + 1 of them), fractional keys by (u, pos) (up to T), the top-k by
// (u, pos). The heaps live in shared memory when they fit in 200 KB (all three; else the top-k
// and saturated heaps, the fractional one in global scratch; else all in global scratch).
// Every comparison and every sum is done in fp64 in the CPU's order with explicit
// round-to-nearest intrinsics (no FMA contraction), so tau and the ranges equal the CPU's exactly.
// The fractional set's maximum (needed for the "flat after nb" test) is tracked as the largest
// score inserted since the set was last empty: keys only ever leave from the minimum side.
// Scaling: O(T log T) SEQUENTIAL work per row, parallel over rows only (B x Hu blocks), so the
// pass is latency bound: its time grows with T whatever the batch (measured on an H200, B x Hu = 8,
// k = 512, w = 512, selection + candidate lists: 6.2 ms at T = 4096, 28 ms at T = 16384 with one
// thread per row, 4.8 ms and 22.0 ms with the top-k in its own thread; with all heaps in global
// memory it was 43 ms and 266 ms).
// Parallelism within a row: selection_chunked.cu (chunks from verified canonical starts; this
// kernel is its fallback for the rows that do not verify, through only_rows).
// The candidate lists built from the ranges: candidates.cu.
// Tested in tests/attention/sparsek/test_sparsek_cuda.cpp against causal_selection.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/attention/sparsek/sparsek_attention.h"

namespace sk_sparsek {

struct Row {
  const float* u;
  __device__ double score(int pos) const { return static_cast<double>(u[pos]); }
};

// Binary min-heap of (key, pos) entries ordered lexicographically (strict and total: positions are
// unique), in shared or global memory (generic pointers).
struct Heap {
  double* key;
  int* pos;
  int n;
  __device__ static bool less(double ka, int pa, double kb, int pb) { return ka < kb || (ka == kb && pa < pb); }
  __device__ void push(double k, int p) {
    int i = n++;
    while (i > 0) {
      const int par = (i - 1) >> 1;
      const double kp = key[par];
      const int pp = pos[par];
      if (!less(k, p, kp, pp)) break;
      key[i] = kp;
      pos[i] = pp;
      i = par;
    }
    key[i] = k;
    pos[i] = p;
  }
  // Places (k, p) at slot i and restores the order below it.
  __device__ void sift_down(int i, double k, int p) {
    for (;;) {
      int c = 2 * i + 1;
      if (c >= n) break;
      double kc = key[c];
      int pc = pos[c];
      if (c + 1 < n) {
        const double k2 = key[c + 1];
        const int p2 = pos[c + 1];
        if (less(k2, p2, kc, pc)) ++c, kc = k2, pc = p2;
      }
      if (!less(kc, pc, k, p)) break;
      key[i] = kc;
      pos[i] = pc;
      i = c;
    }
    key[i] = k;
    pos[i] = p;
  }
  __device__ void pop() {
    --n;
    if (n > 0) sift_down(0, key[n], pos[n]);
  }
  __device__ void replace_top(double k, int p) { sift_down(0, k, p); }
};

// Heap capacities of one row: fractional T, top-k min(k, T), saturated min(k + 1, T) (f = k and
// every saturated key has m = 1, so at most k + 1 keys are saturated at any time).
struct HeapSizes {
  int frac, top, sat;
  __host__ __device__ HeapSizes(int k, int T) : frac(T), top(k < T ? k : T), sat(k + 1 < T ? k + 1 : T) {}
  __host__ __device__ int64_t entries() const { return static_cast<int64_t>(frac) + top + sat; }
  // Bytes of one row's storage: keys (fp64) then positions (int32), rounded up to 16.
  __host__ __device__ int64_t bytes() const { return (entries() * 12 + 15) / 16 * 16; }
  __host__ __device__ int64_t small_bytes() const { return ((static_cast<int64_t>(top) + sat) * 12 + 15) / 16 * 16; }
};

// Largest dynamic shared memory the selection asks for (one block per row).
constexpr int kSelectMaxSmem = 200 * 1024;
// Where the heaps live: 0 all in global scratch, 1 top-k and saturated in shared memory,
// 2 all in shared memory.
__host__ __device__ inline int select_mode(const HeapSizes& hs) {
  if (hs.bytes() <= kSelectMaxSmem) return 2;
  if (hs.small_bytes() <= kSelectMaxSmem) return 1;
  return 0;
}

// only_rows (optional): run only the rows with only_rows[row] != 0 (the chunked pass's fallback).
__global__ void select_kernel(const SkSparsekSelectParams p, int mode, double* __restrict__ tau_out,
                              SkKeyRange* __restrict__ ranges_out, unsigned char* __restrict__ scratch,
                              const int* __restrict__ only_rows) {
  extern __shared__ __align__(16) unsigned char heap_smem[];
  const int row = blockIdx.x;
  if (only_rows && only_rows[row] == 0) return;
  const int T = p.seq_len, K = p.k, W = p.window;
  const Row r{p.u + static_cast<int64_t>(row) * T};
  double* tau_row = tau_out + static_cast<int64_t>(row) * T;
  SkKeyRange* rg = ranges_out + static_cast<int64_t>(row) * T;
  for (int j = threadIdx.x; j < T; j += blockDim.x) {
    const int enter = min(j + W, T);
    rg[j] = SkKeyRange{enter, T, T, enter, enter};  // saturated to the end, never selected
  }
  __syncthreads();
  // Two independent walks over the same keys, in different warps so that they overlap: thread 32
  // keeps the top-k (sel_to), thread 0 the saturated / fractional sets and tau (frac_from,
  // dead_from, tau). They write different fields of the ranges.
  if (threadIdx.x != 0 && threadIdx.x != 32) return;

  // Heap storage: [frac | top | sat] keys, then positions, in global scratch or shared memory.
  const HeapSizes hs(K, T);
  unsigned char* gbase = scratch + static_cast<int64_t>(row) * hs.bytes();
  double* gkey = reinterpret_cast<double*>(gbase);
  int* gpos = reinterpret_cast<int*>(gkey + hs.entries());
  Heap frac{gkey, gpos, 0}, top{gkey + hs.frac, gpos + hs.frac, 0}, sat{gkey + hs.frac + hs.top, gpos + hs.frac + hs.top, 0};
  if (mode == 2) {
    double* skey = reinterpret_cast<double*>(heap_smem);
    int* spos = reinterpret_cast<int*>(skey + hs.entries());
    frac = Heap{skey, spos, 0};
    top = Heap{skey + hs.frac, spos + hs.frac, 0};
    sat = Heap{skey + hs.frac + hs.top, spos + hs.frac + hs.top, 0};
  } else if (mode == 1) {
    double* skey = reinterpret_cast<double*>(heap_smem);
    int* spos = reinterpret_cast<int*>(skey + hs.top + hs.sat);
    top = Heap{skey, spos, 0};
    sat = Heap{skey + hs.top, spos + hs.top, 0};
  }

  if (threadIdx.x == 32) {
    // Top-k: one insertion and at most one eviction per query (equal scores: the more recent key wins).
    for (int i = W; i < T; ++i) {
      const int j = i - W;
      const double u = r.score(j);
      if (top.n < K) {
        top.push(u, j);
        rg[j].sel_to = T;
      } else if (u >= top.key[0]) {
        rg[top.pos[0]].sel_to = i;
        top.replace_top(u, j);
        rg[j].sel_to = T;
      }
    }
    return;
  }

  int n_prefix = 0;
  double sum_frac = 0.0, tau = -INFINITY, frac_max = -INFINITY;
  for (int i = 0; i < T; ++i) {
    const int j = i - W;
    if (j < 0) {
      tau_row[i] = -INFINITY;
      continue;
    }
    const double u = r.score(j);
    ++n_prefix;
    // Classify the new key against the old tau.
    const double bp = __dsub_rn(u, 1.0);
    if (bp >= tau) {
      sat.push(bp, j);
    } else if (u > tau) {
      frac.push(u, j);
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
      if (frac.n == 0) sum_frac = 0.0, frac_max = -INFINITY;
      nb = INFINITY;
      if (sat.n > 0) nb = sat.key[0];
      if (frac.n > 0) nb = fmin(nb, frac.key[0]);
      if (nb == INFINITY) break;
      const bool flat_after = (sat.n == 0 || sat.key[0] > nb) && (frac.n == 0 || frac_max <= nb);
      const double f_nb = flat_after ? static_cast<double>(sat.n)
                                     : __dadd_rn(static_cast<double>(sat.n),
                                                 __dsub_rn(sum_frac, __dmul_rn(static_cast<double>(frac.n), nb)));
      if (f_nb < static_cast<double>(K)) break;
      tau = nb;
      while (sat.n > 0 && sat.key[0] <= nb) {  // saturated -> fractional
        const int e = sat.pos[0];
        sat.pop();
        const double ue = r.score(e);
        frac.push(ue, e);
        sum_frac = __dadd_rn(sum_frac, ue);
        frac_max = fmax(frac_max, ue);
        rg[e].frac_from = i;
      }
      while (frac.n > 0 && frac.key[0] <= nb) {  // fractional -> dead (never returns)
        const int d = frac.pos[0];
        sum_frac = __dsub_rn(sum_frac, frac.key[0]);
        frac.pop();
        rg[d].dead_from = i;
      }
      if (frac.n == 0) frac_max = -INFINITY;
    }
    if (frac.n > 0) {
      const double t = __ddiv_rn(__dsub_rn(__dadd_rn(static_cast<double>(sat.n), sum_frac), static_cast<double>(K)),
                                 static_cast<double>(frac.n));
      tau = t < tau ? tau : (nb < t ? nb : t);  // std::clamp(t, tau, nb)
    }
    tau_row[i] = tau;
  }
}

}  // namespace sk_sparsek

extern "C" int64_t sk_sparsek_select_scratch_bytes(int k, int seq_len) {
  if (k < 1 || seq_len < 0) return 0;
  const sk_sparsek::HeapSizes hs(k, seq_len);
  return sk_sparsek::select_mode(hs) == 2 ? 0 : hs.bytes();  // all in shared memory: none
}

extern "C" int sk_cuda_sparsek_select(const SkSparsekSelectParams* p, double* tau, SkKeyRange* ranges, void* scratch,
                                      cudaStream_t s) {
  return sk_cuda_sparsek_select_rows(p, nullptr, tau, ranges, scratch, s);
}

extern "C" int sk_cuda_sparsek_select_rows(const SkSparsekSelectParams* p, const int* only_rows, double* tau,
                                           SkKeyRange* ranges, void* scratch, cudaStream_t s) {
  if (!p || p->rows < 0 || p->seq_len < 0 || p->k < 1 || p->window < 0) return SK_KERNEL_BAD_ARG;
  if (p->rows == 0 || p->seq_len == 0) return SK_KERNEL_OK;
  const sk_sparsek::HeapSizes hs(p->k, p->seq_len);
  const int mode = sk_sparsek::select_mode(hs);
  if (!p->u || !tau || !ranges) return SK_KERNEL_BAD_ARG;
  if (mode != 2 && (!scratch || reinterpret_cast<uintptr_t>(scratch) % 16)) return SK_KERNEL_BAD_ARG;
  const int64_t smem = mode == 2 ? hs.bytes() : mode == 1 ? hs.small_bytes() : 0;
  if (cudaFuncSetAttribute(sk_sparsek::select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem)) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  sk_sparsek::select_kernel<<<p->rows, 128, static_cast<size_t>(smem), s>>>(
      *p, mode, tau, ranges, static_cast<unsigned char*>(scratch), only_rows);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
