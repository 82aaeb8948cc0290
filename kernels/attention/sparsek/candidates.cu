// SparseK candidate lists on CUDA (declared in sparsek_attention.h): per score row and query tile
// of tile_q queries (64 or 128), the keys selected by any query of the tile (<= k + tile_q - 1 of
// them, spec 4.3 property 3), the tile's uniform keys first (in Sel_i for every query of a full
// tile and in one state for all of them; sparsek_attention.h, cand_uniform), each part ascending.
// Key j is a candidate of the tiles its selected range [sel_from, sel_to) meets, so the lists come
// from the keys rather than from a scan of every tile's prefix (O(T^2 / BQ) per row, which took
// 0.33 ms at T 16k and twice that at 32k on an H100):
//   1. scatter: one thread per key computes its tiles and its class per tile; each warp spreads
//      its keys' (key, tile) pairs over its 32 lanes and appends them to the tiles' lists in any
//      order (a slot from an atomic counter, cand_n), the class in bit 30 of the entry;
//   2. order: one block per (tile, row) sets one bit per entry in two bit sets over the keys
//      (uniform, others) in shared memory and writes each set's keys ascending in place (block
//      scans of the 32-key words' bit counts give the offsets).
// Work O(T / 32 + list length) per tile; the lists, counts and uniform counts are deterministic.
// Tested in tests/attention/sparsek/test_sparsek_cuda.cpp against a brute force over the ranges.
#include <cuda_runtime.h>

#include "kernels/attention/sparsek/sparsek_attention.h"

namespace sk_sparsek {

constexpr int kCandThreads = 256;
constexpr int32_t kOtherBit = 1 << 30;  // entry = key | kOtherBit for a key that is not uniform

// Shared memory of order_kernel for rows of T keys: two bit sets over the keys [0, T)
// (200 KB at SK_SPARSEK_CANDIDATES_MAX_T).
inline int64_t order_smem_bytes(int T) { return 2 * ((static_cast<int64_t>(T) + 31) / 32) * 4; }

// Grid (ceil(T / kCandThreads), rows); cand_n zeroed beforehand.
__global__ void __launch_bounds__(kCandThreads) scatter_kernel(const SkKeyRange* __restrict__ ranges, int T,
                                                               int tile_q, int cap, int n_tiles,
                                                               int32_t* __restrict__ cand,
                                                               int32_t* __restrict__ cand_n) {
  const int row = blockIdx.y, lane = threadIdx.x & 31;
  const int j = blockIdx.x * kCandThreads + static_cast<int>(threadIdx.x);
  SkKeyRange e{0, 0, 0, 0, 0};
  if (j < T) e = ranges[static_cast<int64_t>(row) * T + j];
  const bool any = j < T && e.sel_from < e.sel_to;
  const int t_first = any ? e.sel_from / tile_q : 0;
  const int count = any ? (e.sel_to - 1) / tile_q - t_first + 1 : 0;
  int incl = count;  // inclusive scan of the lanes' pair counts
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += y;
  }
  const int total = __shfl_sync(0xffffffffu, incl, 31);
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
    const int64_t list = static_cast<int64_t>(row) * n_tiles + tile;
    const int slot = atomicAdd(cand_n + list, 1);
    if (slot < cap) cand[list * cap + slot] = uniform ? key : key | kOtherBit;
  }
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
  if (cudaMemsetAsync(cand_n, 0, static_cast<size_t>(rows) * n_tiles * sizeof(int32_t), s) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  const int key_blocks = (seq_len + sk_sparsek::kCandThreads - 1) / sk_sparsek::kCandThreads;
  sk_sparsek::scatter_kernel<<<dim3(key_blocks, rows), sk_sparsek::kCandThreads, 0, s>>>(ranges, seq_len, tile_q, cap,
                                                                                        n_tiles, cand, cand_n);
  sk_sparsek::order_kernel<<<dim3(n_tiles, rows), sk_sparsek::kCandThreads, static_cast<size_t>(smem), s>>>(
      seq_len, tile_q, cap, cand, cand_n, cand_uniform);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
