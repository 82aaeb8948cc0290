// Chunk-parallel SparseK selection pass (declared in sparsek_attention.h; CPU blueprint
// src/attention/sparsek/selection_chunked.{h,cpp}; shared walk code selection_chunked_common.h).
// Results are BIT-IDENTICAL to the sequential select_kernel (selection.cu) by verification:
//   1. init_kernel: every key's ranges {enter, T, T, enter, T} (sel_to = T: see topk_walk_step),
//      failed[row] = 0.
//   2. chunk_kernel, grid (chunks, rows), 256 threads: chunk c (queries [b_c, b_{c+1}), the
//      boundaries of an SkChunkSchedule, chunk_schedule.h: uniform or balanced) builds the
//      CANONICAL state of its prefix [0, n0), n0 = max(0, b_c - w), block-parallel:
//        - the exact top-k by a radix select of the k-th largest compact key (8 histogram passes);
//        - the root segment [lo, hi) of tau by bisection over the breakpoints between u_(k) - 1
//          and u_(k) (one pass per step over the band of keys with breakpoints in that bracket,
//          kept in shared memory, evaluates f at the pivot and finds the next pivot for both
//          outcomes); every key's state against [lo, hi) (projection.cpp conventions);
//        - the fractional sum IN KEY ORDER by one thread over an ordered compaction, tau by the
//          operator's closed form (canonical_tau); the heaps as sorted arrays (valid min-heaps),
//          in shared memory (the fractional heap in global scratch when its bound, start set +
//          saturated keys + the chunk's keys, exceeds SK_SPARSEK_CHUNKED_FCAP entries).
//      It writes this start state (tau, sum bits, counts, one state byte per key), walks its L
//      queries with the sequential kernel's code (thread 0 tau walk, thread 32 top-k walk, shared
//      with the CPU model), writes tau_i and the range transitions, and its end state.
//   3. verify_kernel, one block per (chunk, row): start(c) == end(c - 1) bitwise for every c >= 1, else
//      failed[row] |= kFailVerify. Chunk 0 starts from the empty state, so by induction a row with
//      every start verified is the sequential walk.
//   4. select_kernel (selection.cu) recomputes the rows with failed[row] != 0 from scratch.
// Race freedom in a verified row: each key's frac_from, dead_from and sel_to change in exactly one
// chunk (the walk is the sequential one, cut at chunk boundaries); writes of failed rows are
// overwritten by step 4 (stream order).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/attention/sparsek/selection_chunked_common.h"
#include "kernels/attention/sparsek/sparsek_attention.h"

namespace sk_selchunk {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// chunk_kernel's modes: the canonical start and the walk in one block (kFused, the default), or
// split over two launches (SkSparsekSelectParams::chunked_dense 2, SPARSEK_SELECTION_BLOCKS=split):
// kStartOnly blocks of kStartThreads build the starts and store the sorted heaps (chunk_heaps), then
// kWalkOnly blocks of kWalkThreads load them and walk, so that no walk waits behind its chunk's
// O(prefix) start and the small walk blocks fit more walkers per SM. The same code, the same results.
enum ChunkMode { kFused = 0, kStartOnly = 1, kWalkOnly = 2 };
constexpr int kWalkThreads = 64;
// kStartOnly's threads per block (the start code takes any multiple of 32 up to 1,024; 1,024
// measured slower than 256 on an H100, 2026-12-06: start launch 0.46 -> 0.74 ms at 16k).
constexpr int kStartThreads = 256;
template <int kMode>
constexpr int block_threads() {
  return kMode == kWalkOnly ? kWalkThreads : kMode == kStartOnly ? kStartThreads : kThreads;
}
static_assert(kThreads % 32 == 0 && kWarps <= 32, "block shape");
constexpr int kMaxIter = 400;  // bisection steps before giving up (never seen: ~25 for f32)

struct ChunkScalars {
  double tau, sum_frac;
  int n_sat, n_frac;
};

// Scratch layout (bytes, each part 16-aligned): starts (R C), ends (R C), start states (R C T),
// end states (R C T) (end states of index c: the state after chunk c - 1), and per row the
// fractional heaps that do not fit in shared memory: chunk c's at offset b_1 + ... + b_c with
// room for ce = b_{c+1} keys (every fractional key lies in the prefix [0, ce)).
struct Scratch {
  ChunkScalars *start, *end;
  unsigned char *start_state, *end_state;
  uint64_t* gfrac;
  int64_t gfrac_row;  // keys per row
  __host__ __device__ static int64_t align16(int64_t x) { return (x + 15) / 16 * 16; }
  __host__ __device__ static int64_t bytes(int rows, const SkChunkSchedule& sched) {
    const int64_t rc = int64_t(rows) * sched.chunks, T = sched.seq_len;
    return 2 * align16(rc * int64_t(sizeof(ChunkScalars))) + 2 * align16(rc * T) +
           8 * int64_t(rows) * sched.frac_keys;
  }
  // frac_keys: SkChunkSchedule::frac_keys.
  __host__ __device__ Scratch(void* base, int rows, int chunks, int T, int64_t frac_keys) {
    unsigned char* b = static_cast<unsigned char*>(base);
    const int64_t rc = int64_t(rows) * chunks;
    start = reinterpret_cast<ChunkScalars*>(b);
    b += align16(rc * int64_t(sizeof(ChunkScalars)));
    end = reinterpret_cast<ChunkScalars*>(b);
    b += align16(rc * int64_t(sizeof(ChunkScalars)));
    start_state = b;
    b += align16(rc * T);
    end_state = b;
    b += align16(rc * T);
    gfrac = reinterpret_cast<uint64_t*>(b);
    gfrac_row = frac_keys;
  }
  // Chunk c's storage: at sk_chunk_frac_offset(sched, c) = b_1 + ... + b_c of its row.
  __device__ uint64_t* frac_of(int row, int64_t offset) const { return gfrac + int64_t(row) * gfrac_row + offset; }
};

// Dynamic shared memory: top (K) | sat (K + 1) | frac (fcap) compact keys.
__host__ __device__ inline int64_t chunk_smem_bytes(int K, int fcap) { return 8 * (int64_t(K) + K + 1 + fcap); }

// Whether a chunk's fractional heap walks in shared memory (fcap entries): it holds at most its start
// set, the saturated keys and the chunk_len keys entering in the chunk (else its global storage, room
// for ce keys). The start and the walk launch of the split pass must decide alike.
__host__ __device__ inline bool frac_heap_in_smem(int n_frac, int n_sat, int chunk_len, int fcap) {
  return int64_t(n_frac) + n_sat + chunk_len <= fcap;
}

// Split mode: the sorted top-k and saturated heaps of every chunk's start (K + K + 1 compact keys per
// (row, chunk)), after the Scratch layout (the fractional ones stay in Scratch::gfrac).
__host__ __device__ inline int64_t chunk_heaps_bytes(int rows, int chunks, int K) {
  return 8 * int64_t(rows) * chunks * (2 * int64_t(K) + 1);
}

struct GlobalSink {
  SkKeyRange* rg;
  __device__ void frac_from(int key, int i) { rg[key].frac_from = i; }
  __device__ void dead_from(int key, int i) { rg[key].dead_from = i; }
  __device__ void sel_to(int key, int i) { rg[key].sel_to = i; }
};

__device__ __forceinline__ int warp_id() { return threadIdx.x >> 5; }
__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }

// In-place ascending sort of a[0, n) (distinct keys) by the bitonic network without direction flips
// (all compare-exchanges put the smaller key first, so virtual +inf padding past n never moves).
template <int kBT = kThreads>
__device__ void block_sort(uint64_t* a, int n) {
  int np = 1;
  while (np < n) np <<= 1;
  for (int size = 2; size <= np; size <<= 1) {
    const int halfs = size >> 1;
    for (int t = threadIdx.x; t < np / 2; t += kBT) {
      const int blk = t / halfs, off = t % halfs;
      const int i = blk * size + off, j = blk * size + size - 1 - off;
      if (j < n) {
        const uint64_t x = a[i], y = a[j];
        if (y < x) a[i] = y, a[j] = x;
      }
    }
    __syncthreads();
    for (int half = size >> 2; half >= 1; half >>= 1) {
      for (int t = threadIdx.x; t < np / 2; t += kBT) {
        const int blk = t / half, off = t % half;
        const int i = blk * 2 * half + off, j = i + half;
        if (j < n) {
          const uint64_t x = a[i], y = a[j];
          if (y < x) a[i] = y, a[j] = x;
        }
      }
      __syncthreads();
    }
  }
}

struct BisRed {
  int cnt;
  double sum, ge_a, lt_a, ge_b, lt_b;
};

__device__ BisRed warp_reduce(BisRed v) {
  for (int o = 16; o >= 1; o >>= 1) {
    v.cnt += __shfl_xor_sync(0xffffffffu, v.cnt, o);
    v.sum = dadd(v.sum, __shfl_xor_sync(0xffffffffu, v.sum, o));
    v.ge_a = fmin(v.ge_a, __shfl_xor_sync(0xffffffffu, v.ge_a, o));
    v.lt_a = fmax(v.lt_a, __shfl_xor_sync(0xffffffffu, v.lt_a, o));
    v.ge_b = fmin(v.ge_b, __shfl_xor_sync(0xffffffffu, v.ge_b, o));
    v.lt_b = fmax(v.lt_b, __shfl_xor_sync(0xffffffffu, v.lt_b, o));
  }
  return v;
}

// Block-wide reduction (deterministic order); every thread gets the result.
template <int kBT = kThreads>
__device__ BisRed block_reduce(BisRed v, BisRed* part, BisRed* out) {
  v = warp_reduce(v);
  if (lane_id() == 0) part[warp_id()] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    BisRed r = part[0];
    for (int w = 1; w < kBT / 32; ++w) {
      const BisRed& x = part[w];
      r.cnt += x.cnt;
      r.sum = dadd(r.sum, x.sum);
      r.ge_a = fmin(r.ge_a, x.ge_a);
      r.lt_a = fmax(r.lt_a, x.lt_a);
      r.ge_b = fmin(r.ge_b, x.ge_b);
      r.lt_b = fmax(r.lt_b, x.lt_b);
    }
    *out = r;
  }
  __syncthreads();
  const BisRed r = *out;
  __syncthreads();  // `out` and `part` may be reused right away
  return r;
}

__global__ void init_kernel(int T, int W, SkKeyRange* __restrict__ ranges, int* __restrict__ failed) {
  const int row = blockIdx.y;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < T) {
    const int enter = min(j + W, T);
    ranges[int64_t(row) * T + j] = SkKeyRange{enter, T, T, enter, T};
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) failed[row] = 0;
}

// kArity: the walk's heaps (KeyHeapT: 2 or 4 children per node; the same results). kMinBlocks:
// resident blocks per SM the registers are budgeted for (0: unspecified, ptxas takes 48 registers,
// so 5 blocks per SM; 8: <= 32 registers, for the dense variant (the default), whose smaller fractional
// heap in shared memory lets 8 blocks fit: more walkers per SM, hence shorter chunks). kBalanced:
// the schedule's balanced chunks (chunk_schedule.h; compiled for the default 4-ary, 8-block kernel
// only), else uniform ones of L queries (chunks of them). L and chunks come first as they did before
// schedules, sched last: that keeps ptxas's register allocation of the uniform kernels as measured
// (the 8-block kernel: 32 registers, 32 bytes of spills; passing the schedule first doubled them).
// The same code and results.
template <int kArity, int kMinBlocks, bool kBalanced, int kMode = kFused>
__global__ void __launch_bounds__(block_threads<kMode>(), kMinBlocks) chunk_kernel(const SkSparsekSelectParams p, int L, int chunks, int fcap,
                                                         double* __restrict__ tau_out,
                                                         SkKeyRange* __restrict__ ranges_out, int* __restrict__ failed,
                                                         void* scratch_base, const SkChunkSchedule sched) {
  static_assert(kMode == kFused || !kBalanced, "split mode: uniform chunks only");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int hist[256];
  constexpr int kBT = block_threads<kMode>();  // this launch's threads per block
  __shared__ BisRed red_part[kBT / 32];
  __shared__ BisRed red_out;
  __shared__ int warp_cnt[kBT / 32];
  __shared__ int s_flag, s_digit, s_need, s_base, s_band, s_n_top, s_n_sat, s_n_frac;
  __shared__ double s_sum;
  __shared__ ChunkScalars s_end;

  const int c = blockIdx.x, row = blockIdx.y;
  const int T = p.seq_len, K = p.k, W = p.window;
  const float* u = p.u + int64_t(row) * T;
  // This chunk's queries [cs, ce). Uniform chunks as closed forms the compiler can recompute instead
  // of holding (a loop's result held through the start costs the 8-block kernel spills).
  const int cs = kBalanced ? sk_chunk_start(sched, c) : c * L;
  const int ce = kBalanced ? sk_chunk_next(sched, cs) : min(cs + L, T);
  const int n0 = max(0, cs - W);
  const int tid = threadIdx.x;
  // (sched.frac_keys of uniform chunks as its closed form, as the kernel had it before schedules)
  Scratch sc(scratch_base, p.rows, chunks, T,
             kBalanced ? sched.frac_keys : int64_t(L) * chunks * (chunks - 1) / 2 + T);
  const int64_t rc = int64_t(row) * chunks + c;
  uint64_t* top = reinterpret_cast<uint64_t*>(smem_raw);
  uint64_t* sat = top + K;
  uint64_t* frac = sat + (K + 1);

  if (tid == 0) s_flag = 0, s_base = 0, s_band = 0, s_n_top = 0, s_n_sat = 0, s_n_frac = failed[row];
  __syncthreads();
  if (s_n_frac != 0) return;  // the row already failed in another chunk (read once: block-uniform)
  // The start's results the walk needs.
  int n_top = 0, n_sat = 0, n_frac = 0, fr_cap = 0;
  uint64_t* fr = nullptr;
  double sum0 = 0.0, tau0 = -INFINITY;
  // This chunk's global fractional-heap storage (a closed form, recomputed where used).
  auto frac_storage = [&] {
    return sc.frac_of(row, kBalanced ? sk_chunk_frac_offset(sched, c) : int64_t(L) * c * (c + 1) / 2);
  };
  // kStartOnly / kWalkOnly: this chunk's sorted top-k and saturated heaps in global memory.
  uint64_t* const heaps = kMode == kFused ? nullptr : sc.gfrac + int64_t(p.rows) * sc.gfrac_row + rc * (2 * int64_t(K) + 1);
  if constexpr (kMode == kWalkOnly) {
    const ChunkScalars st = sc.start[rc];
    n_top = min(K, n0), n_sat = st.n_sat, n_frac = st.n_frac, sum0 = st.sum_frac, tau0 = st.tau;
    uint64_t* gfrac = frac_storage();
    const bool frac_smem = frac_heap_in_smem(n_frac, n_sat, ce - cs, fcap);
    fr = frac_smem ? frac : gfrac;
    fr_cap = frac_smem ? fcap : ce;
    for (int x = tid; x < n_top; x += kBT) top[x] = heaps[x];
    for (int x = tid; x < n_sat; x += kBT) sat[x] = heaps[K + x];
    if (frac_smem)
      for (int x = tid; x < n_frac; x += kBT) frac[x] = gfrac[x];
    __syncthreads();
  } else {
  // ---- canonical start of the prefix [0, n0) ----
  uint64_t thr = 0;  // top-k: keys >= thr
  double lo = -INFINITY, hi = INFINITY;
  const bool walked = n0 > K;  // tau > -inf at the start
  if (walked) {
    // Radix select of the K-th largest compact key (distinct keys: exactly K keys are >= it).
    uint64_t prefix = 0, mask = 0;
    int need = K;
    for (int shift = 56; shift >= 0; shift -= 8) {
      // Position bytes above the largest position are 0 in every key: digit 0, nothing to count.
      if (shift < 32 && (uint64_t(n0 - 1) >> shift) == 0) continue;
      for (int b = tid; b < 256; b += kBT) hist[b] = 0;
      __syncthreads();
      bool bad = false;
      for (int j0 = 0; j0 < n0; j0 += kBT) {
        const int j = j0 + tid;
        int bin = 256;
        if (j < n0) {
          const float x = u[j];
          if (shift == 56 && !score_compact_ok(x)) bad = true;
          const uint64_t key = make_key(x, j);
          if ((key & mask) == prefix) bin = int((key >> shift) & 255u);
        }
        const unsigned peers = __match_any_sync(0xffffffffu, bin);
        if (bin < 256 && lane_id() == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
      }
      if (bad) s_flag = kFailScores;
      __syncthreads();
      if (warp_id() == 0) {
        // Lane l holds bins 255 - 8l .. 248 - 8l (descending); find the bin holding rank `need`.
        int cnt[8], lane_sum = 0;
        for (int x = 0; x < 8; ++x) cnt[x] = hist[255 - 8 * lane_id() - x], lane_sum += cnt[x];
        int incl = lane_sum;
        for (int o = 1; o < 32; o <<= 1) {
          const int y = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane_id() >= o) incl += y;
        }
        const int excl = incl - lane_sum;
        if (excl < need && need <= incl) {
          int r = need - excl;
          for (int x = 0; x < 8; ++x) {
            if (r <= cnt[x]) {
              s_digit = 255 - 8 * lane_id() - x;
              s_need = r;
              break;
            }
            r -= cnt[x];
          }
        }
      }
      __syncthreads();
      if (s_flag) break;
      prefix |= uint64_t(s_digit) << shift;
      mask |= uint64_t(255) << shift;
      need = s_need;
      __syncthreads();  // s_digit / s_need / hist reused by the next digit
    }
    if (s_flag) {
      if (tid == 0) atomicOr(&failed[row], s_flag);
      return;
    }
    thr = prefix;
    // Root segment: f(u_(k) - 1) >= K > f(u_(k)); bisection over the breakpoints inside.
    const double vk = key_u(thr);
    lo = breakpoint(vk);
    hi = vk;
    double m = 0;
    {
      // One pass over the prefix: the first pivot, the keys saturated on the whole bracket
      // (fl(u - 1) >= hi) and the band of keys whose breakpoints can lie inside it (u > lo,
      // fl(u - 1) < hi), compacted in key order into shared memory (the fractional heap's storage,
      // unused until the classification pass) when it fits. The bisection then reads the band only.
      float* band = reinterpret_cast<float*>(frac);
      const int band_cap = 2 * fcap;
      const double mid = bisect_mid(lo, hi);
      BisRed v{0, 0.0, INFINITY, -INFINITY, INFINITY, -INFINITY};
      for (int j0 = 0; j0 < n0; j0 += kBT) {
        const int j = j0 + tid;
        bool in = false;
        float xf = 0.f;
        if (j < n0) {
          xf = u[j];
          const double x = double(xf);
          if (breakpoint(x) >= hi) ++v.cnt;
          else if (x > lo) in = true;
          bisect_fold(x, lo, hi, mid, v.ge_a, v.lt_a);
        }
        const unsigned ballot = __ballot_sync(0xffffffffu, in);
        if (lane_id() == 0) warp_cnt[warp_id()] = __popc(ballot);
        __syncthreads();
        int off = s_band;
        for (int w = 0; w < warp_id(); ++w) off += warp_cnt[w];
        if (in) {
          const int slot = off + __popc(ballot & ((1u << lane_id()) - 1u));
          if (slot < band_cap) band[slot] = xf;
        }
        __syncthreads();
        if (tid == 0)
          for (int w = 0; w < kBT / 32; ++w) s_band += warp_cnt[w];
        __syncthreads();
      }
      v = block_reduce<kBT>(v, red_part, &red_out);
      const int band_n = s_band;
      const bool in_smem = band_n <= band_cap;
      const float* src = in_smem ? band : u;
      const int n_src = in_smem ? band_n : n0;
      const int base_sat = in_smem ? v.cnt : 0;
      bool have = bisect_pivot(v.ge_a, v.lt_a, m);
      int iter = 0;
      while (have) {
        if (++iter > kMaxIter) {
          if (tid == 0) atomicOr(&failed[row], kFailInternal);
          return;
        }
        const double mid_a = bisect_mid(lo, m), mid_b = bisect_mid(m, hi);
        BisRed w{0, 0.0, INFINITY, -INFINITY, INFINITY, -INFINITY};
        for (int j = tid; j < n_src; j += kBT) {
          const double x = double(src[j]);
          if (breakpoint(x) >= m) ++w.cnt;
          else if (x > m) w.sum = dadd(w.sum, dsub(x, m));
          bisect_fold(x, lo, m, mid_a, w.ge_a, w.lt_a);
          bisect_fold(x, m, hi, mid_b, w.ge_b, w.lt_b);
        }
        w = block_reduce<kBT>(w, red_part, &red_out);
        if (dadd(double(base_sat + w.cnt), w.sum) >= double(K)) {
          lo = m;
          have = bisect_pivot(w.ge_b, w.lt_b, m);
        } else {
          hi = m;
          have = bisect_pivot(w.ge_a, w.lt_a, m);
        }
      }
    }
  }
  // Classification pass: states, top-k keys, saturated keys (any order), fractional keys in key
  // order (ordered compaction per tile of kBT keys) into this chunk's global heap storage
  // (room for ce >= n0 keys); copied to shared memory below when the heap cannot outgrow it.
  unsigned char* st_out = sc.start_state + rc * T;
  uint64_t* gfrac = frac_storage();
  for (int j0 = 0; j0 < n0; j0 += kBT) {
    const int j = j0 + tid;
    bool is_frac = false;
    if (j < n0) {
      const float xf = u[j];
      const double x = double(xf);
      if (!score_compact_ok(xf)) s_flag = kFailScores;
      const uint64_t key = make_key(xf, j);
      unsigned char state = 2;
      if (walked) {
        if (breakpoint(x) >= hi) state = 2;
        else if (x <= lo) state = 0;
        else state = 1;
      }
      st_out[j] = state;
      if (state == 2) {
        const int slot = atomicAdd(&s_n_sat, 1);
        if (slot < K + 1) sat[slot] = key;
      }
      is_frac = state == 1;
      if (!walked || key >= thr) {
        const int slot = atomicAdd(&s_n_top, 1);
        if (slot < K) top[slot] = key;
      }
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, is_frac);
    if (lane_id() == 0) warp_cnt[warp_id()] = __popc(ballot);
    __syncthreads();
    int off = s_base;
    for (int w = 0; w < warp_id(); ++w) off += warp_cnt[w];
    if (is_frac) {
      const int slot = off + __popc(ballot & ((1u << lane_id()) - 1u));
      gfrac[slot] = make_key(u[j], j);
    }
    __syncthreads();
    if (tid == 0)
      for (int w = 0; w < kBT / 32; ++w) s_base += warp_cnt[w];
    __syncthreads();  // warp_cnt is rewritten by the next tile
  }
  // Scores of the keys entering in this chunk.
  for (int j = max(0, cs - W) + tid; j < max(0, ce - W); j += kBT)
    if (!score_compact_ok(u[j])) s_flag = kFailScores;
  __syncthreads();
  n_top = s_n_top, n_sat = s_n_sat, n_frac = s_base;
  if (tid == 0) {
    if (n_sat > K + 1) s_flag |= kFailCapacity;
    if ((walked && n_frac == 0) || n_top != min(K, n0)) s_flag |= kFailInternal;
  }
  __syncthreads();
  if (s_flag) {
    if (tid == 0) atomicOr(&failed[row], s_flag);
    return;
  }
  const bool frac_smem = frac_heap_in_smem(n_frac, n_sat, ce - cs, fcap);
  fr = frac_smem ? frac : gfrac;
  fr_cap = frac_smem ? fcap : ce;
  if (frac_smem)
    for (int x = tid; x < n_frac; x += kBT) frac[x] = gfrac[x];
  __syncthreads();
  // Fractional sum in key order (CPU canonical order), then the heaps as sorted arrays.
  if (tid == 0) {
    double sum = 0.0;
    for (int x = 0; x < n_frac; ++x) sum = dadd(sum, key_u(fr[x]));
    s_sum = sum;
  }
  __syncthreads();
  block_sort<kBT>(top, n_top);
  block_sort<kBT>(sat, n_sat);
  block_sort<kBT>(fr, n_frac);
  sum0 = s_sum;
  tau0 = walked ? canonical_tau(sum0, n_sat, n_frac, K, lo, hi) : -INFINITY;
  if (tid == 0) sc.start[rc] = ChunkScalars{tau0, sum0, n_sat, n_frac};
  __syncthreads();
  if constexpr (kMode == kStartOnly) {
    // The sorted heaps for the walk launch (a sorted fractional heap in shared memory back to its
    // global storage), and the zeros of this chunk's end state (the walk writes its marks).
    for (int x = tid; x < n_top; x += kBT) heaps[x] = top[x];
    for (int x = tid; x < n_sat; x += kBT) heaps[K + x] = sat[x];
    if (frac_smem)
      for (int x = tid; x < n_frac; x += kBT) gfrac[x] = frac[x];
    if (c + 1 < chunks) {
      const int n1 = max(0, ce - W);
      unsigned char* e = sc.end_state + (rc + 1) * T;
      for (int j = tid; j < n1; j += kBT) e[j] = 0;
    }
    return;
  }
  }  // the start (kFused, kStartOnly)

  // ---- the walk of queries [cs, ce) ----
  GlobalSink sink{ranges_out + int64_t(row) * T};
  if (tid == 32) {
    KeyHeapT<kArity> th{top, n_top, K};
    int i = max(cs, W);
    float un = i < ce ? u[i - W] : 0.f;
    for (; i < ce; ++i) {
      const float uj = un;
      if (i + 1 < ce) un = u[i + 1 - W];  // prefetch
      topk_walk_step(th, uj, i - W, i, K, sink);
    }
  }
  if (tid == 0) {
    double* tau_row = tau_out + int64_t(row) * T;
    // The tau walk over the fractional heap's keys fh_keys: instantiated for the shared-memory heap
    // and for the global one, so that the first compiles to shared-memory loads (one pointer for
    // both compiled to generic loads, slower on the sift-downs' critical path).
    auto tau_walk = [&](uint64_t* fh_keys) {
      KeyHeapT<kArity> sh{sat, n_sat, K + 1}, fh{fh_keys, n_frac, fr_cap};
      TauState s{tau0, sum0, n_frac > 0 ? key_u(fh_keys[n_frac - 1]) : -INFINITY, n0};
      bool ok = true;
      int i = cs;
      for (; i < min(ce, W); ++i) tau_row[i] = -INFINITY;
      float un = i < ce ? u[i - W] : 0.f;
      for (; i < ce; ++i) {
        const float uj = un;
        if (i + 1 < ce) un = u[i + 1 - W];  // prefetch
        if (!tau_walk_step(s, sh, fh, uj, i - W, i, K, sink)) {
          ok = false;
          break;
        }
        tau_row[i] = s.tau;
      }
      if (!ok) s_flag = kFailCapacity;
      s_end = ChunkScalars{s.tau, s.sum_frac, sh.n, fh.n};
    };
    if (fr == frac) tau_walk(frac);
    else tau_walk(fr);
  }
  __syncthreads();
  if (s_flag) {
    if (tid == 0) atomicOr(&failed[row], s_flag);
    return;
  }
  // ---- end state (the start the next chunk must have) ----
  if (c + 1 < chunks) {
    const int n1 = max(0, ce - W);
    unsigned char* e = sc.end_state + (rc + 1) * T;
    if constexpr (kMode == kFused) {  // (kWalkOnly: zeroed by the start launch)
      for (int j = tid; j < n1; j += kBT) e[j] = 0;
      __syncthreads();
    }
    for (int x = tid; x < s_end.n_sat; x += kBT) e[key_pos(sat[x])] = 2;
    for (int x = tid; x < s_end.n_frac; x += kBT) e[key_pos(fr[x])] = 1;
    if (tid == 0) sc.end[rc + 1] = s_end;
  }
}

// Grid (chunks, rows): block (c, row) compares chunk c's canonical start with chunk c - 1's walked
// end (16 bytes a load where both are aligned, as they are when T % 16 == 0).
__global__ void __launch_bounds__(kThreads) verify_kernel(const SkChunkSchedule sched, int* __restrict__ failed,
                                                          void* scratch_base, int rows) {
  const int c = blockIdx.x, row = blockIdx.y, T = sched.seq_len, W = sched.window, chunks = sched.chunks;
  // failed[row] is read once for the block: other blocks of the row may set kFailVerify meanwhile,
  // and every thread must take the same branch before the barrier below.
  __shared__ int s_failed;
  if (threadIdx.x == 0) s_failed = failed[row];
  __syncthreads();
  if (c == 0 || s_failed != 0) return;
  const int n0 = max(0, sk_chunk_start(sched, c) - W);
  if (n0 == 0) return;
  Scratch sc(scratch_base, rows, chunks, T, sched.frac_keys);
  const int64_t rc = int64_t(row) * chunks + c;
  bool bad = false;
  if (threadIdx.x == 0) {
    const ChunkScalars a = sc.start[rc], b = sc.end[rc];
    bad = __double_as_longlong(a.tau) != __double_as_longlong(b.tau) ||
          __double_as_longlong(a.sum_frac) != __double_as_longlong(b.sum_frac) || a.n_sat != b.n_sat ||
          a.n_frac != b.n_frac;
  }
  const unsigned char* x = sc.start_state + rc * T;
  const unsigned char* y = sc.end_state + rc * T;
  int j0 = 0;
  if (((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y)) & 15) == 0) {
    const uint4* x4 = reinterpret_cast<const uint4*>(x);
    const uint4* y4 = reinterpret_cast<const uint4*>(y);
    for (int v = threadIdx.x; v < n0 / 16; v += kThreads) {
      const uint4 p = x4[v], q = y4[v];
      bad |= p.x != q.x || p.y != q.y || p.z != q.z || p.w != q.w;
    }
    j0 = n0 / 16 * 16;
  }
  for (int j = j0 + threadIdx.x; j < n0; j += kThreads) bad |= x[j] != y[j];
  if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(&failed[row], kFailVerify);
}

// The chunk kernel of a call: arity 4 or 2; dense (the default): compiled for 8 blocks per SM.
using ChunkKernelFn = void (*)(const SkSparsekSelectParams, int, int, int, double*, SkKeyRange*, int*, void*,
                               const SkChunkSchedule);
// balanced: balanced chunks (only with arity 4 and dense 1; else null). dense 2 (split): the start
// launch's kernel; walk_kernel_of: the walk launch's.
ChunkKernelFn chunk_kernel_of(int arity, int dense, bool balanced) {
  if (balanced) return arity == 4 && dense == 1 ? chunk_kernel<4, 8, true> : nullptr;
  if (dense == 2) return arity == 2 ? chunk_kernel<2, 8, false, kStartOnly> : chunk_kernel<4, 8, false, kStartOnly>;
  if (arity == 2) return dense ? chunk_kernel<2, 8, false> : chunk_kernel<2, 0, false>;
  return dense ? chunk_kernel<4, 8, false> : chunk_kernel<4, 0, false>;
}
ChunkKernelFn walk_kernel_of(int arity) {
  return arity == 2 ? chunk_kernel<2, 0, false, kWalkOnly> : chunk_kernel<4, 0, false, kWalkOnly>;
}
int fcap_of(int fcap, int dense) {
  return fcap > 0 ? fcap : dense ? SK_SPARSEK_CHUNKED_FCAP_DENSE : SK_SPARSEK_CHUNKED_FCAP;
}

}  // namespace sk_selchunk

extern "C" int sk_sparsek_select_chunked_plan(int rows, int k, int seq_len, int window, int chunk_len, int balance,
                                              int fcap, int dense, int* out_chunk_len, SkChunkSchedule* out_schedule,
                                              int64_t* out_scratch_bytes) {
  using namespace sk_selchunk;
  if (rows < 1 || k < 1 || seq_len < 1 || window < 0 || balance < 0 || !out_chunk_len || !out_schedule ||
      !out_scratch_bytes)
    return SK_KERNEL_BAD_ARG;
  if (k > SK_SPARSEK_CHUNKED_MAX_K) return SK_KERNEL_BAD_ARG;
  int L = chunk_len;
  int per_row = 0;
  if (L <= 0) {
    // Enough chunks to fill the resident blocks once (the walk is latency bound: one wave).
    int dev = 0, sms = 132, per_sm = 4;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    // (split: the walk launch's blocks set the walkers per SM)
    const int64_t smem = chunk_smem_bytes(k, fcap_of(fcap, dense));
    ChunkKernelFn kernel = dense == 2 ? walk_kernel_of(4) : chunk_kernel_of(4, dense, false);
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) == cudaSuccess)
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, dense == 2 ? kWalkThreads : kThreads, size_t(smem));
    if (per_sm < 1) per_sm = 1;
    per_row = int(int64_t(per_sm) * sms / rows);
    if (per_row < 1) per_row = 1;
    L = (seq_len + per_row - 1) / per_row;
    if (L < SK_SPARSEK_CHUNKED_MIN_LEN) L = SK_SPARSEK_CHUNKED_MIN_LEN;
  }
  if (L > seq_len) L = seq_len;
  *out_chunk_len = L;
  // Balanced chunks only where the length is automatic (an explicit chunk_len stays uniform).
  *out_schedule = balance > 0 && per_row > 0
                      ? sk_chunk_schedule_balanced(seq_len, window, SK_SPARSEK_CHUNKED_MIN_LEN_BALANCED, balance, per_row)
                      : sk_chunk_schedule_uniform(seq_len, window, L);
  *out_scratch_bytes = Scratch::bytes(rows, *out_schedule) +
                       (dense == 2 ? chunk_heaps_bytes(rows, out_schedule->chunks, k) : 0);
  return SK_KERNEL_OK;
}

extern "C" int sk_cuda_sparsek_select_chunked(const SkSparsekSelectParams* p, const SkChunkSchedule* sched, double* tau,
                                              SkKeyRange* ranges, int* failed, void* chunk_scratch,
                                              void* seq_scratch, cudaStream_t s) {
  using namespace sk_selchunk;
  if (!p || !sched || p->rows < 0 || p->seq_len < 0 || p->k < 1 || p->window < 0) return SK_KERNEL_BAD_ARG;
  if (p->rows == 0 || p->seq_len == 0) return SK_KERNEL_OK;
  if (!p->u || !tau || !ranges || !failed || !chunk_scratch || sched->seq_len != p->seq_len ||
      sched->window != p->window || sched->len < 1 || sched->balance < 0 || sched->chunks < 1 ||
      sched->chunks != sk_chunk_count(*sched) || sched->frac_keys != sk_chunk_frac_offset(*sched, sched->chunks) ||
      p->k > SK_SPARSEK_CHUNKED_MAX_K ||
      reinterpret_cast<uintptr_t>(chunk_scratch) % 16 || p->rows > 65535)
    return SK_KERNEL_BAD_ARG;
  const int T = p->seq_len;
  init_kernel<<<dim3((T + 255) / 256, p->rows), 256, 0, s>>>(T, p->window, ranges, failed);
  if (cudaGetLastError() != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
  const int fcap = fcap_of(p->chunked_fcap, p->chunked_dense);
  const int64_t smem = chunk_smem_bytes(p->k, fcap);
  ChunkKernelFn kernel = chunk_kernel_of(p->chunked_heap_arity, p->chunked_dense, sched->balance > 0);
  if (!kernel) return SK_KERNEL_BAD_ARG;  // balanced chunks with binary heaps or 5 blocks per SM
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  const int start_threads = p->chunked_dense == 2 ? kStartThreads : kThreads;
  kernel<<<dim3(sched->chunks, p->rows), start_threads, size_t(smem), s>>>(*p, sched->len, sched->chunks, fcap, tau,
                                                                      ranges, failed, chunk_scratch, *sched);
  if (cudaGetLastError() != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
  if (p->chunked_dense == 2) {  // split: the walks, after every start
    ChunkKernelFn walk = walk_kernel_of(p->chunked_heap_arity);
    if (cudaFuncSetAttribute(walk, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess)
      return SK_KERNEL_LAUNCH_FAILED;
    walk<<<dim3(sched->chunks, p->rows), kWalkThreads, size_t(smem), s>>>(*p, sched->len, sched->chunks, fcap, tau,
                                                                        ranges, failed, chunk_scratch, *sched);
    if (cudaGetLastError() != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
  }
  verify_kernel<<<dim3(sched->chunks, p->rows), kThreads, 0, s>>>(*sched, failed, chunk_scratch, p->rows);
  if (cudaGetLastError() != cudaSuccess) return SK_KERNEL_LAUNCH_FAILED;
  // Rows that failed: the sequential kernel from scratch (it returns at once for the others).
  return sk_cuda_sparsek_select_rows(p, failed, tau, ranges, seq_scratch, s);
}
