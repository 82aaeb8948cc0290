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
// chunks only (window keys have weight 1). m_ij = 1 on [sel_from, frac_from), sat(u_j - tau_i) on
// [frac_from, dead_from), 0 on [dead_from, sel_to), in fp32 (tau_i rounded to fp32).
// For a key that is uniform over the tile (sparsek_attention.h, cand_uniform): m_ij =
// sat(u_tile - tau_i) for every query of the tile with u_tile = +inf (saturated), u_j
// (fractional) or -inf (dead): the same values as the ranged formula, bit for bit; frac_tile = 1
// for the fractional ones (the backward's G_ij entries), else 0.
struct ChunkKeys {
  int key[kBN];
  int sel_from[kBN], sel_to[kBN], frac_from[kBN], dead_from[kBN];
  float u[kBN];
  float u_tile[kBN], frac_tile[kBN];
  float g[kBN];  // backward: sum over the tile's queries of G_ij (fractional selected entries)
};

// How many of a tile's candidate chunks hold uniform keys only (sparsek_attention.h,
// cand_uniform; 0 when p.cand_uniform is null): list entry `list` = srow * NT + tile.
__device__ __forceinline__ int uniform_chunk_count(const SkSparsekForwardParams& p, int64_t list, int n_cand) {
  return p.cand_uniform ? min(p.cand_uniform[list], n_cand) / kBN : 0;
}

// m_ij of a key slot for query `row` from its ranges (the general formula above).
__device__ __forceinline__ float ranged_mask(const ChunkKeys& m, int slot, int row, float tau_row) {
  if (row < m.frac_from[slot]) return 1.f;
  if (row < m.dead_from[slot]) return __saturatef(m.u[slot] - tau_row);
  return 0.f;
}

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
  // Into slot r of m (and m.g[r] = 0), with the key's uniform state over the tile's queries
  // [q0, q_last] (meaningful for uniform keys only).
  __device__ __forceinline__ void store(ChunkKeys& m, int r, int q0, int q_last) const {
    m.key[r] = key;
    m.g[r] = 0.f;
    m.sel_from[r] = sel_from;
    m.sel_to[r] = sel_to;
    m.frac_from[r] = frac_from;
    m.dead_from[r] = dead_from;
    m.u[r] = u;
    m.u_tile[r] = frac_from > q_last ? INFINITY : dead_from <= q0 ? -INFINITY : u;
    m.frac_tile[r] = frac_from <= q0 && dead_from > q_last ? 1.f : 0.f;
  }
};

// The gathers' 32-bit row offsets (gather_kv_tiles): K and V row strides below 2^31 elements.
__host__ __device__ inline bool gather_strides_ok(const SkFlashParams& a) {
  return a.k_stride.row < (int64_t(1) << 31) && a.v_stride.row < (int64_t(1) << 31);
}

// Padding of a staged candidate list: entries [n_cand, round_up(n_cand, kBN)) hold -1, so that a
// chunk's key slots need no bounds test. Ints of shared memory for a list of `cap` entries.
__host__ __device__ constexpr int staged_cand_ints(int cap) { return (cap + kBN - 1) / kBN * kBN; }

// Gathers rows key_of(r) (r < kBN; key < 0 zero-fills) of K and V ((T, D) bf16, row strides
// k_stride / v_stride elements, < 2^31: checked by the launchers) into swizzled tiles with
// cp.async. All kThreads threads take part; each keeps one 16-byte column of rows r0, r0 +
// kRowsPerPass, ..., so its shared-memory offsets are fixed (the swizzle depends on r & 7 only),
// looks each key up once for both tiles, and forms each source address with one 32 x 32 -> 64-bit
// multiply (the general int64 arithmetic cost ~25 instructions per 16-byte copy).
template <int D, int kThreads, class KeyOf>
__device__ __forceinline__ void gather_kv_tiles(uint32_t k_tile, uint32_t v_tile, const __nv_bfloat16* k_base,
                                                int64_t k_stride, const __nv_bfloat16* v_base, int64_t v_stride,
                                                KeyOf key_of) {
  constexpr int kChunks = D / 8;
  constexpr int kRowsPerPass = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kRowsPerPass % 8 == 0 && kBN % kRowsPerPass == 0,
                "each thread keeps one column of every (kRowsPerPass)-th row");
  const int cc = static_cast<int>(threadIdx.x) % kChunks, r0 = static_cast<int>(threadIdx.x) / kChunks;
  const uint32_t dst0 = sk_flash::swz<D>(r0, cc * 8);
  const char* kb = reinterpret_cast<const char*>(k_base + cc * 8);
  const char* vb = reinterpret_cast<const char*>(v_base + cc * 8);
  const uint32_t k_bytes = static_cast<uint32_t>(k_stride) * 2u, v_bytes = static_cast<uint32_t>(v_stride) * 2u;
#pragma unroll
  for (int i = 0; i < kBN / kRowsPerPass; ++i) {
    const int key = key_of(r0 + i * kRowsPerPass);
    const bool valid = key >= 0;
    const uint32_t row = valid ? static_cast<uint32_t>(key) : 0u;
    const uint32_t dst = dst0 + static_cast<uint32_t>(i * kRowsPerPass * D * 2);
    sk_flash::cp_async_16(k_tile + dst, kb + static_cast<uint64_t>(row) * k_bytes, valid);
    sk_flash::cp_async_16(v_tile + dst, vb + static_cast<uint64_t>(row) * v_bytes, valid);
  }
}

}  // namespace sk_sparsek
