// Shared pieces of the fused SparseK kernels (forward.cu, backward.cu): block shapes, the per-chunk
// key metadata staged in shared memory, and the gather of K/V rows by key position into swizzled
// shared-memory tiles (flash_tile.cuh conventions).
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/sparsek/sparsek_attention.h"

namespace sk_sparsek {

// Query rows per block: BQ = the candidate lists' tile height (SkSparsekForwardParams::tile_q,
// SK_SPARSEK_TILE_Q or SK_SPARSEK_TILE_Q_WIDE), one warp per 16 query rows.
template <int BQ>
constexpr int warps_of() {
  return BQ / 16;
}
template <int BQ>
constexpr int threads_of() {
  return BQ / 16 * 32;
}
constexpr int kBN = 64;  // keys per chunk

// The longest candidate list the staged-metadata variants (forward kStaged, backward kPipelined)
// copy to shared memory (32 KB); longer lists (k near T at long T) run the default kernels.
constexpr int kMaxStagedCand = 8192;

// Key metadata of one chunk. key < 0: padding slot. The ranges and u are set for candidate
// chunks only (window keys have weight 1).
struct ChunkKeys {
  int key[kBN];
  int sel_from[kBN], sel_to[kBN], frac_from[kBN], dead_from[kBN];
  double u[kBN];
  float g[kBN];  // backward: sum over the tile's queries of G_ij (fractional selected entries)
};

// One key slot's metadata in registers between its global loads and its store to a ChunkKeys set
// (so that the loads can be issued a chunk ahead of the store).
struct PendingKey {
  int key = -1, sel_from = 0, sel_to = 0, frac_from = 0, dead_from = 0;
  float u = 0.f;

  // The slot's key and, for a candidate key (key >= 0 and candidate), its ranges and score.
  __device__ __forceinline__ void load(int k, bool candidate, const SkKeyRange* ranges, const float* scores) {
    key = k;
    if (candidate && k >= 0) {
      const SkKeyRange e = ranges[k];
      sel_from = e.sel_from;
      sel_to = e.sel_to;
      frac_from = e.frac_from;
      dead_from = e.dead_from;
      u = scores[k];
    }
  }
  // Into slot r of m (and m.g[r] = 0).
  __device__ __forceinline__ void store(ChunkKeys& m, int r) const {
    m.key[r] = key;
    m.g[r] = 0.f;
    m.sel_from[r] = sel_from;
    m.sel_to[r] = sel_to;
    m.frac_from[r] = frac_from;
    m.dead_from[r] = dead_from;
    m.u[r] = static_cast<double>(u);
  }
};

// Gathers rows key_of(r) (r < kBN; key < 0 zero-fills) of a (T, D) bf16 matrix (row stride
// `stride`) into a swizzled tile with cp.async. All kThreads threads of the block take part.
template <int D, int kThreads, class KeyOf>
__device__ __forceinline__ void gather_tile(uint32_t tile, const __nv_bfloat16* base, int64_t stride, KeyOf key_of) {
  constexpr int kChunks = D / 8;
  constexpr int kTotal = kBN * kChunks;
  static_assert(kTotal % kThreads == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kTotal / kThreads; ++i) {
    const int c = i * kThreads + static_cast<int>(threadIdx.x);
    const int r = c / kChunks, cc = c % kChunks;
    const int key = key_of(r);
    const bool valid = key >= 0;
    const __nv_bfloat16* src = base + (valid ? static_cast<int64_t>(key) * stride : 0) + cc * 8;
    sk_flash::cp_async_16(tile + sk_flash::swz<D>(r, cc * 8), src, valid);
  }
}

}  // namespace sk_sparsek
