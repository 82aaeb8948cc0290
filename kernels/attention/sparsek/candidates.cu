// SparseK candidate lists on CUDA (declared in sparsek_attention.h): per score row and query tile
// of tile_q queries (64 or 128), the keys selected by any query of the tile (<= k + tile_q - 1 of
// them, spec 4.3 property 3), the tile's uniform keys first (in Sel_i for every query of a full
// tile and in one state for all of them; sparsek_attention.h, cand_uniform), each part ascending.
// Key j is a candidate of the tiles its selected range [sel_from, sel_to) meets, so the lists come
// from the keys rather than from a scan of every tile's prefix (O(T^2 / BQ) per row, which took
// 0.33 ms at T 16k and twice that at 32k on an H100):
//   1. scatter: one block per 32 tiles of a row; a thread per key (those that can be selected in
//      these tiles) computes its tiles among them and its class per tile; each warp spreads its
//      keys' (key, tile) pairs over its 32 lanes and appends them to the tiles' lists in any order
//      (a slot from a counter in shared memory; the counts go to cand_n), the class in bit 30 of
//      the entry;
//   2. order: one block per (tile, row) sets one bit per entry in two bit sets over the keys
//      (uniform, others) in shared memory and writes each set's keys ascending in place (block
//      scans of the 32-key words' bit counts give the offsets).
// Work O(T / 32 + list length) per tile plus O(T) range reads per 32 tiles; the lists, counts and
// uniform counts are deterministic.
// Tested in tests/attention/sparsek/test_sparsek_cuda.cpp against a brute force over the ranges.
#include <cuda_runtime.h>

#include "kernels/attention/sparsek/sparsek_attention.h"

namespace sk_sparsek {

constexpr int kCandThreads = 256;
constexpr int32_t kOtherBit = 1 << 30;  // entry = key | kOtherBit for a key that is not uniform

// Shared memory of order_kernel for rows of T keys: two bit sets over the keys [0, T)
// (200 KB at SK_SPARSEK_CANDIDATES_MAX_T).
inline int64_t order_smem_bytes(int T) { return 2 * ((static_cast<int64_t>(T) + 31) / 32) * 4; }

constexpr int kTilesPerScatter = 32;  // tiles whose lists one scatter block fills
// Threads of a scatter block: its key loop (the whole prefix for the last tiles of a row) is a
// chain of dependent rounds, so as wide as a block goes (256 threads: 0.12 ms at 32k, H200).
constexpr int kScatterThreads = 1024;

// Grid (ceil(n_tiles / kTilesPerScatter), rows): block g fills the lists of tiles [t_lo, t_hi) (a
// slot per pair from a counter in shared memory) and writes their counts to cand_n. It reads the
// ranges of the keys j < t_hi * tile_q (a key selected by query i is <= i).
__global__ void __launch_bounds__(kScatterThreads) scatter_kernel(const SkKeyRange* __restrict__ ranges, int T,
                                                               int tile_q, int cap, int n_tiles,
                                                               int32_t* __restrict__ cand,
                                                               int32_t* __restrict__ cand_n) {
  __shared__ int s_count[kTilesPerScatter];
  const int row = blockIdx.y, lane = threadIdx.x & 31;
  const int t_lo = blockIdx.x * kTilesPerScatter, t_hi = min(t_lo + kTilesPerScatter, n_tiles);
  const int key_end = min(T, t_hi * tile_q);
  if (threadIdx.x < kTilesPerScatter) s_count[threadIdx.x] = 0;
  __syncthreads();
  const SkKeyRange* rg = ranges + static_cast<int64_t>(row) * T;
  for (int j0 = 0; j0 < key_end; j0 += kScatterThreads) {  // the whole block: uniform trip count
    const int j = j0 + static_cast<int>(threadIdx.x);
    SkKeyRange e{0, 0, 0, 0, 0};
    if (j < key_end) e = rg[j];
    const bool any = j < key_end && e.sel_from < e.sel_to;
    const int t_first = any ? max(e.sel_from / tile_q, t_lo) : 0;
    const int t_last = any ? min((e.sel_to - 1) / tile_q, t_hi - 1) : -1;
    const int count = max(0, t_last - t_first + 1);
    int incl = count;  // inclusive scan of the lanes' pair counts
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, incl, off);
      if (lane >= off) incl += y;
    }
    const int total = __shfl_sync(0xffffffffu, incl, 31);
    // The warp's (key, tile) pairs spread over its lanes, 32 at a time.
    for (int base = 0; base < total; base += 32) {
      const int pair = base + lane;
      int lo = 0, hi = 31;  // the lane that owns `pair`: the first whose inclusive count exceeds it
#pragma unroll
      for (int step = 0; step < 5; ++step) {
        const int mid = (lo + hi) >> 1;
        if (pair < __shfl_sync(0xffffffffu, incl, mid)) hi = mid;
        else lo = mid + 1;
      }
      const int owner = lo;
      const int o_incl = __shfl_sync(0xffffffffu, incl, owner), o_count = __shfl_sync(0xffffffffu, count, owner);
      const int o_first = __shfl_sync(0xffffffffu, t_first, owner);
      const int key = __shfl_sync(0xffffffffu, j, owner);
      const int sel_from = __shfl_sync(0xffffffffu, e.sel_from, owner), sel_to = __shfl_sync(0xffffffffu, e.sel_to, owner);
      const int frac_from = __shfl_sync(0xffffffffu, e.frac_from, owner);
      const int dead_from = __shfl_sync(0xffffffffu, e.dead_from, owner);
      if (pair >= total) continue;
      const int tile = o_first + pair - (o_incl - o_count);
      const int q0 = tile * tile_q, q1 = min(q0 + tile_q, T), q_last = q1 - 1;
      const bool uniform = q1 - q0 == tile_q && sel_from <= q0 && sel_to > q_last &&
                           (frac_from <= q0 || frac_from > q_last) && (dead_from <= q0 || dead_from > q_last);
      const int slot = atomicAdd(&s_count[tile - t_lo], 1);
      if (slot < cap) cand[(static_cast<int64_t>(row) * n_tiles + tile) * cap + slot] = uniform ? key : key | kOtherBit;
    }
  }
  __syncthreads();
  if (t_lo + static_cast<int>(threadIdx.x) < t_hi)
    cand_n[static_cast<int64_t>(row) * n_tiles + t_lo + threadIdx.x] = s_count[threadIdx.x];
}

// Grid (n_tiles, rows): the tile's min(cand_n, cap) entries into the bit sets, then back ascending.
__global__ void __launch_bounds__(kCandThreads) order_kernel(int T, int tile_q, int cap, int32_t* __restrict__ cand,
                                                             const int32_t* __restrict__ cand_n,
                                                             int32_t* __restrict__ cand_uniform) {
  extern __shared__ uint32_t s_bits[];  // [0, n_words): uniform keys; [n_words, 2 n_words): others
  __shared__ int warp_sum[kCandThreads / 32];
  __shared__ int n_uniform;  // the uniform keys' count: the end offset of the last uniform word
  const int tile = blockIdx.x, row = blockIdx.y, n_tiles = gridDim.x;
  const int q1 = min((tile + 1) * tile_q, T);
  const int n_words = (q1 + 31) / 32;  // a key selected by query i is <= i
  const int64_t list = static_cast<int64_t>(row) * n_tiles + tile;
  int32_t* out = cand + list * cap;
  const int n = min(cand_n[list], cap);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int w = static_cast<int>(threadIdx.x); w < 2 * n_words; w += kCandThreads) s_bits[w] = 0u;
  if (threadIdx.x == 0) n_uniform = 0;
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kCandThreads) {
    const int entry = out[i], key = entry & (kOtherBit - 1);
    atomicOr(&s_bits[(entry & kOtherBit ? n_words : 0) + (key >> 5)], 1u << (key & 31));
  }
  __syncthreads();  // every entry read: the list is rewritten in place below
  int base = 0;
  for (int w0 = 0; w0 < 2 * n_words; w0 += kCandThreads) {
    const int w = w0 + static_cast<int>(threadIdx.x);
    unsigned bits = w < 2 * n_words ? s_bits[w] : 0u;
    const int count = __popc(bits);
    int incl = count;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, incl, off);
      if (lane >= off) incl += y;
    }
    if (lane == 31) warp_sum[warp] = incl;
    __syncthreads();
    int pos = base + incl - count, total = 0;
    for (int x = 0; x < kCandThreads / 32; ++x) {
      if (x < warp) pos += warp_sum[x];
      total += warp_sum[x];
    }
    const int key0 = (w < n_words ? w : w - n_words) * 32;
    while (bits) {
      const int bit = __ffs(bits) - 1;
      out[pos] = key0 + bit;  // pos < n <= cap: the bits are the entries
      ++pos;
      bits &= bits - 1u;
    }
    if (w == n_words - 1) n_uniform = pos;  // read after the loop's last barrier
    base += total;
    __syncthreads();  // warp_sum is rewritten by the next round
  }
  if (threadIdx.x == 0) cand_uniform[list] = n_uniform;
}

}  // namespace sk_sparsek

extern "C" int sk_sparsek_candidate_cap(int k, int seq_len, int tile_q) {
  const int cap = k + tile_q - 1 < seq_len ? k + tile_q - 1 : seq_len;
  return cap > 1 ? cap : 1;
}

extern "C" int sk_cuda_sparsek_candidates(const SkKeyRange* ranges, int rows, int seq_len, int tile_q, int cap,
                                          int32_t* cand, int32_t* cand_n, int32_t* cand_uniform, cudaStream_t s) {
  if (rows < 0 || seq_len < 0 || cap < 1 || tile_q < 1) return SK_KERNEL_BAD_ARG;
  if (rows == 0 || seq_len == 0) return SK_KERNEL_OK;
  if (!ranges || !cand || !cand_n || !cand_uniform) return SK_KERNEL_BAD_ARG;
  const int n_tiles = (seq_len + tile_q - 1) / tile_q;
  if (rows > 65535 || seq_len > SK_SPARSEK_CANDIDATES_MAX_T) return SK_KERNEL_BAD_ARG;
  const int64_t smem = sk_sparsek::order_smem_bytes(seq_len);
  if (cudaFuncSetAttribute(sk_sparsek::order_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem)) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  const int groups = (n_tiles + sk_sparsek::kTilesPerScatter - 1) / sk_sparsek::kTilesPerScatter;
  sk_sparsek::scatter_kernel<<<dim3(groups, rows), sk_sparsek::kScatterThreads, 0, s>>>(ranges, seq_len, tile_q, cap,
                                                                                        n_tiles, cand, cand_n);
  sk_sparsek::order_kernel<<<dim3(n_tiles, rows), sk_sparsek::kCandThreads, static_cast<size_t>(smem), s>>>(
      seq_len, tile_q, cap, cand, cand_n, cand_uniform);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
