// What the two main kernels of the attention backward (flash_backward.cu on mma.sync,
// flash_backward_sm90.cu on wgmma) share: a block's view of its (batch, head) inputs with the
// query tiles that see its keys, and the double-buffered load of one query tile (Q, dO and their
// row statistics) into shared memory.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/flash_tile.cuh"

namespace sk_flash {

// Rows of one (batch, head): q, k, v (row strides in p), dO (row stride ds.row), lse and delta
// ((T) floats); the tiles of BR queries [m_first, m_end) that see keys [n0, n0 + block_n): from
// the diagonal to the end of the sequence or the window's reach.
struct BwdBlock {
  const __nv_bfloat16 *q, *k, *v, *dO;
  const float *lse, *delta;
  int m_first, m_end;
};

template <int BR>
__device__ __forceinline__ BwdBlock bwd_block(const SkFlashParams& p, const __nv_bfloat16* dout, SkFlashStrides ds,
                                              const float* lse, const float* delta, int b, int h, int n0, int block_n) {
  const int T = p.seq_len, W = p.window;
  BwdBlock blk;
  blk.q = static_cast<const __nv_bfloat16*>(p.q) + b * p.q_stride.batch + h * p.q_stride.head;
  blk.k = static_cast<const __nv_bfloat16*>(p.k) + b * p.k_stride.batch + h * p.k_stride.head;
  blk.v = static_cast<const __nv_bfloat16*>(p.v) + b * p.v_stride.batch + h * p.v_stride.head;
  blk.dO = dout + b * ds.batch + h * ds.head;
  blk.lse = lse + (static_cast<int64_t>(b) * p.heads + h) * T;
  blk.delta = delta + (static_cast<int64_t>(b) * p.heads + h) * T;
  blk.m_first = n0 / BR;
  const int q_end = W > 0 ? min(T, n0 + block_n - 1 + W) : T;
  blk.m_end = (q_end + BR - 1) / BR;
  return blk;
}

// cp.async loads of query tile m (rows m * BR ...) of Q and dO into buffer `buf` of the swizzled
// tiles at sQ / sdO (BR x D each, buffer at + buf * BR * D * 2 bytes), and its lse (in log2 units;
// +inf past the end) and delta into s_lse / s_delta (BR floats per buffer). All THREADS take part.
// kPanels: the tiles in the wgmma kernels' swz_panel layout (flash_tile.cuh).
template <int BR, int D, int THREADS, bool kPanels = false>
__device__ __forceinline__ void load_query_tile(const BwdBlock& blk, const SkFlashParams& p, SkFlashStrides ds,
                                                uint32_t sQ, uint32_t sdO, float* s_lse, float* s_delta, int m,
                                                int buf) {
  static_assert(THREADS >= 2 * BR, "one thread per row statistic");
  const int T = p.seq_len;
  constexpr uint32_t kTile = BR * D * 2;
  load_tile<BR, D, THREADS, kPanels>(sQ + buf * kTile, blk.q, p.q_stride.row, m * BR, T);
  load_tile<BR, D, THREADS, kPanels>(sdO + buf * kTile, blk.dO, ds.row, m * BR, T);
  const int tid = static_cast<int>(threadIdx.x);
  if (tid < BR) {
    const int row = m * BR + tid;
    s_lse[buf * BR + tid] = row < T ? blk.lse[row] * kLog2e : INFINITY;
  } else if (tid < 2 * BR) {
    const int row = m * BR + tid - BR;
    s_delta[buf * BR + tid - BR] = row < T ? blk.delta[row] : 0.f;
  }
}

}  // namespace sk_flash
